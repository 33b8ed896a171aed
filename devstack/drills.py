"""Crash drills: a Lambda invocation killed with SIGKILL at a step boundary, as an out-of-memory
kill or a runtime crash would end it, then the same event delivered again as Lambda does.

The child is a new process that handles one event through the Lambda path
(`wiring.handle_event`, with an invocation context of the function's timeout) and kills itself
at the chosen boundary, after everything before it was sent:

- `start`: the exactly-once record taken, no step run;
- `step:N`: after step N finished (its audit line written, its progress kept);
- `recorded`: after the incident's record, before its audit line and message;
- `told`: after the message went out and was marked so, before the exactly-once record completes.

Its output is unbuffered (as Lambda's runtime writes each log line as it is made), so what a
killed process logged before it died is all there.

    python -m devstack.drills child EVENT.json BOUNDARY     # used by the tests and bench/drills.py
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KILLED = -signal.SIGKILL


POD_EVENT = ROOT / "events" / "guardduty" / "execution-runtime-reverse-shell.json"


def pod_event(namespace: str, pod: str, tag: str) -> dict[str, Any]:
    """The reverse-shell finding about one pod (no instance named), with ids of its own (`tag`)."""
    event: dict[str, Any] = json.loads(POD_EVENT.read_text())
    workload = event["detail"]["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]
    workload.update({"name": pod, "namespace": namespace})
    event["detail"]["id"] = f"{tag}-{namespace}-{pod}"
    event["id"] = f"{tag}-{pod}-0000-4000-8000-000000000000"
    del event["detail"]["resource"]["instanceDetails"]
    return event


def boundaries(steps: int) -> list[str]:
    """Every boundary of a response of `steps` steps, in the order they are reached."""
    return ["start", *(f"step:{n}" for n in range(1, steps + 1)), "recorded", "told"]


def crash(
    event: Mapping[str, Any], boundary: str, env: Mapping[str, str], workdir: Path
) -> tuple[int, list[dict[str, Any]]]:
    """Handle `event` in a new process killed at `boundary`: (its exit code, the JSON lines it logged)."""
    path = workdir / f"event-{os.getpid()}-{boundary.replace(':', '-')}.json"
    path.write_text(json.dumps(event))
    child = subprocess.run(
        [sys.executable, "-m", "devstack.drills", "child", str(path), boundary],
        cwd=ROOT, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    return child.returncode, json_lines(child.stdout)


@dataclass
class Drill:
    """What one killed delivery and its redeliveries did."""

    boundary: str
    code: int  # the killed process's exit code (KILLED when it died at the boundary)
    killed_lines: list[dict[str, Any]]  # what it logged before it died
    retry: dict[str, Any] | str  # the redelivery a minute later: its result, or the error it raised
    final: dict[str, Any]  # the redelivery three minutes later
    lines: list[dict[str, Any]] = field(default_factory=list)  # every line of the three, in order

    def steps_logged(self, incident_id: str) -> list[int]:
        return sorted(int(line["step"]) for line in self.lines
                      if line.get("message") == "action" and line.get("incident_id") == incident_id)  # fmt: skip

    def incident_lines(self, incident_id: str) -> int:
        return sum(
            1 for line in self.lines if line.get("message") == "incident" and line.get("incident_id") == incident_id
        )

    def done_by_the_dead(self) -> tuple[set[int], set[int]]:
        """(steps the killed delivery carried out, steps the final delivery reports done by an earlier one)."""
        carried = {int(line["step"]) for line in self.killed_lines
                   if line.get("message") == "action" and line.get("status") == "succeeded"}  # fmt: skip
        reported = {int(a["step"]) for a in self.final.get("actions") or []
                    if str(a.get("detail", "")).startswith("done by an earlier delivery")}  # fmt: skip
        return carried, reported


def kill_and_redeliver(
    event: Mapping[str, Any], boundary: str, env: Mapping[str, str], workdir: Path,
    captured: Callable[[], list[dict[str, Any]]],
) -> Drill:  # fmt: skip
    """The event handled by a process killed at `boundary`, then delivered again in this process
    (a warm container) as Lambda retries: 1 minute later, then 3 minutes later. `captured`: this
    process's log lines so far (each redelivery's are those it adds)."""
    code, killed = crash(event, boundary, env, workdir)
    before = len(captured())
    try:
        retry: dict[str, Any] | str = redeliver(event, timedelta(minutes=1))
    except Exception as exc:  # noqa: BLE001 - what Lambda sees as a failed invocation
        retry = f"{type(exc).__name__}: {exc}"
    final = redeliver(event, timedelta(minutes=3))
    return Drill(boundary, code, killed, retry, final, [*killed, *captured()[before:]])


def redeliver(event: Mapping[str, Any], after: timedelta) -> dict[str, Any]:
    """The event again, `after` the first delivery, through the handler (the clock moved, not waited)."""
    import time_machine

    from chalicelib.entry import wiring

    with time_machine.travel(datetime.now(UTC) + after, tick=True):
        wiring.reset()
        return deliver(copy.deepcopy(dict(event)))


def json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


class Context:
    """A Lambda context as the runtime passes it: the function, the request, the time left."""

    def __init__(self, function: str = "on_guardduty_finding", timeout_seconds: float = 120.0) -> None:
        import time
        import uuid

        self.function_name = f"eks-responder-local-{function}"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        import time

        return int((self._deadline - time.monotonic()) * 1000)


def deliver(event: Mapping[str, Any], function: str = "on_guardduty_finding") -> dict[str, Any]:
    """One delivery through the function's handler, as Lambda invokes it (middleware, logger, context)."""
    import app

    handler = getattr(app, function)
    result: dict[str, Any] = handler(dict(event), Context(function))
    return result


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(owner: Any, name: str, when: Callable[[], bool]) -> None:
    """Wrap `owner.name` so the process dies right after a call that returns, once `when()` holds."""
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when():
            _die()
        return result

    setattr(owner, name, wrapped)


def _arm(boundary: str) -> None:
    from chalicelib.entry import intake
    from chalicelib.executors.ledger import IncidentLedger
    from chalicelib.response import execute as responder

    if boundary == "start":
        original = responder.Responder._execute

        def killed(*args: Any, **kwargs: Any) -> Any:
            _die()
            return original(*args, **kwargs)  # never reached

        responder.Responder._execute = killed  # type: ignore[method-assign]
    elif boundary.startswith("step:"):
        wanted, seen = int(boundary.split(":", 1)[1]), [0]

        def counted() -> bool:
            seen[0] += 1
            return seen[0] == wanted

        _after(responder, "step_done", counted)
    elif boundary == "recorded":
        _after(IncidentLedger, "record", lambda: True)
    elif boundary == "told":
        _after(intake, "_mark_told", lambda: True)
    else:
        raise SystemExit(f"unknown boundary {boundary!r}: start, step:N, recorded or told")


def _child(event_path: str, boundary: str) -> int:
    _arm(boundary)
    result = deliver(json.loads(Path(event_path).read_text()))
    print(json.dumps({"message": "drill: not killed", "result": result}, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":  # child EVENT BOUNDARY
        raise SystemExit(_child(sys.argv[2], sys.argv[3]))
    raise SystemExit(__doc__)
