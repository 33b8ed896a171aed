"""Each benchmark's figures beside the goals they are held to; `make bench` prints them together at the end.

The benchmarks append one JSON line per figure to `.bench/results.jsonl`; `python bench/goals.py`
prints the table and exits 1 when a goal is not met.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / ".bench" / "results.jsonl"


def record(figure: str, measured: str, goal: str, met: bool | None) -> None:
    """One figure; `met` is None for a figure printed for information, with no goal."""
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"figure": figure, "measured": measured, "goal": goal, "met": met}) + "\n")


def main() -> int:
    if not RESULTS.exists():
        print("no results: run `make bench`")
        return 1
    rows = [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line]
    width = max(len(r["figure"]) for r in rows)
    measured = max(len(r["measured"]) for r in rows)
    print(f"\n{'figure':<{width}}  {'measured':<{measured}}  goal")
    for row in rows:
        verdict = {True: "met", False: "NOT MET", None: ""}[row["met"]]
        goal = f"{row['goal']}: {verdict}" if row["goal"] else ""
        print(f"{row['figure']:<{width}}  {row['measured']:<{measured}}  {goal}")
    held = [r for r in rows if r["met"] is not None]
    missed = [r for r in held if not r["met"]]
    print(f"\n{len(held) - len(missed)} of {len(held)} goals met" if missed else f"\nall {len(held)} goals met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
