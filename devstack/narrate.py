"""How `make demo` talks: a short block per event and a closing summary by default; the rendered
messages and every detail with `-v` (or `DEMO_VERBOSE=1`). Bold headings on a terminal only."""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path
from typing import Any

VERBOSE = os.environ.get("DEMO_VERBOSE") == "1" or "-v" in sys.argv[1:]
WIDTH = 118
MARKS = {"succeeded": "ok", "planned": "planned", "skipped": "skipped", "failed": "FAILED",
         "awaiting-approval": "waits"}  # fmt: skip


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m" if sys.stdout.isatty() else f"==> {message}", flush=True)


def cut(text: str, width: int = WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class Story:
    """The replay told briefly: one block per event, each note once, the outcomes counted."""

    def __init__(self) -> None:
        self.notes: collections.Counter[str] = collections.Counter()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.steps: collections.Counter[str] = collections.Counter()
        self.events = 0

    def tell(self, result: dict[str, Any]) -> None:
        self.events += 1
        name = Path(str(result.get("event", "?"))).name
        outcome = self._outcome(result)
        self.outcomes[outcome] += 1
        incident = result.get("incident") or {}
        capture = result.get("capture") or {}
        what = (incident.get("type") or (f"memory capture on {capture['instance']}: {capture['status']}" if capture
                else "") or result.get("ignored") or result.get("not_handled") or result.get("error")
                or result.get("reason") or "")  # fmt: skip
        rule = f" -> {result['rule']}" if result.get("rule") else ""
        print(cut(f"  {name}: {what}{rule} [{outcome}]"))
        actions = result.get("actions") or []
        if actions:
            # One entry per action and outcome, in plan order, with how many targets it had.
            grouped = collections.Counter(f"{a['action']} {MARKS.get(a['status'], a['status'])}" for a in actions)
            print(cut("      " + ", ".join(f"{k} x{n}" if n > 1 else k for k, n in grouped.items())))
        for action in actions:
            self.steps[action["status"]] += 1
        for note in result.get("notes") or []:
            self.notes[cut(note, WIDTH - 10)] += 1

    @staticmethod
    def _outcome(result: dict[str, Any]) -> str:
        for key, said in (("error", "error"), ("duplicate", "duplicate"), ("not_handled", "not handled")):
            if result.get(key):
                return said
        if "capture" in result:
            return "capture ended"
        if "incident" not in result:
            return "not handled"
        statuses = {a["status"] for a in result.get("actions") or []}
        for status, said in (("failed", "failed steps"), ("awaiting-approval", "waits for a human"),
                             ("succeeded", "acted"), ("planned", "planned only")):  # fmt: skip
            if status in statuses:
                return said
        return "nothing to do"

    def said_once(self) -> None:
        """Every note of the replay, each once, with how many events said it."""
        if not self.notes:
            return
        print("  notes (each said once):")
        for note, times in self.notes.most_common(8):
            print(cut(f"    {note}" + (f"  (x{times})" if times > 1 else "")))
        if len(self.notes) > 8:
            print(f"    ... {len(self.notes) - 8} more: run with -v (DEMO_VERBOSE=1) for every detail")

    def summary(self) -> list[str]:
        outcomes = ", ".join(f"{n} {k}" for k, n in self.outcomes.most_common())
        steps = ", ".join(f"{n} {k}" for k, n in self.steps.most_common())
        return [f"events replayed   {self.events}: {outcomes}", f"steps             {steps}"]
