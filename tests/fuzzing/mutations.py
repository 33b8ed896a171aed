"""Mutations of real events, and the harness that runs them through every source's intake.

Used by the property-based test in `make test` (a fixed budget and seed) and by the longer
campaign, `make fuzz`. The harness is the Lambda path in plan mode: parse, decide, describe —
nothing is contacted, so a mutated event that names any cluster or account is safe to run.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib import identifiers
from tests.conftest import EVENTS, SAMPLES

DEEP = 1200  # deeper than the JSON nesting Python's recursion allows by default
HUGE = 300_000
WIDE = 10_000


def seed_events() -> list[dict[str, Any]]:
    """Every event and sample the project holds, as EventBridge (or CloudWatch Logs) delivers them."""
    from chalicelib.sources.envelope import split_document

    found: list[dict[str, Any]] = []
    for path in sorted([*EVENTS.rglob("*.json"), *SAMPLES.rglob("*.json")]):
        try:
            found.extend(e for e in split_document(json.loads(path.read_text())) if isinstance(e, dict))
        except Exception:  # noqa: BLE001 - a sample that is not an event is not a seed
            continue
    lines = (EVENTS / "flowlogs" / "vpc-flow-logs-demo.log").read_text().splitlines()[1:40]
    records = [{"id": str(i), "timestamp": 0, "message": line} for i, line in enumerate(lines)]
    payload = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/vpc/flow-logs",
               "logStream": "eni-0", "subscriptionFilters": ["f"], "logEvents": records}  # fmt: skip
    found.append({"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}})
    found.append({"awslogs": payload})  # decoded: encoded by the harness after mutation, so edits reach its fields
    key = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/28/123456789012_vpcflowlogs_us-east-1_fl-1_x.log.gz"
    found.append({"version": "0", "id": "s3-1", "source": "aws.s3", "detail-type": "Object Created",
                  "account": "123456789012", "region": "us-east-1", "resources": ["arn:aws:s3:::flow-logs"],
                  "detail": {"bucket": {"name": "flow-logs"}, "object": {"key": key, "size": 1024}}})  # fmt: skip
    return found


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if len(prefix) > 30:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:20]):
            yield from _paths(item, (*prefix, index))


def _nested(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def _replacement(rng: random.Random, old: Any) -> Any:
    choices = [
        None, True, 1, -1, 0, 1e999, -1e999, math.nan, -8.5, "8", "true", "yes", "", "x" * HUGE,
        ["x"] * WIDE, {}, [], [old], {"k": old}, _nested(DEEP), "<!channel> <http://evil.example|x>",
        "x/../kube-system", "arn:aws:iam::999999999999:role/Break-Glass-Admin", "\u0000\u202e",
    ]  # fmt: skip
    return rng.choice(choices)


@dataclass(frozen=True)
class Mutated:
    event: Any
    changes: tuple[str, ...]


def mutate(event: dict[str, Any], rng: random.Random, count: int = 2) -> Mutated:
    """`count` random edits: keys dropped, values of other types, huge, deep or wide values."""
    mutated: Any = copy.deepcopy(event)
    changes = []
    for _ in range(count):
        paths = list(_paths(mutated))
        path = rng.choice(paths)
        if not path:
            mutated = _replacement(rng, mutated)
            changes.append("<root> replaced")
            continue
        parent = mutated
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if isinstance(parent, dict) and rng.random() < 0.25:
            del parent[last]
            changes.append(f"{'.'.join(map(str, path))} dropped")
        else:
            parent[last] = _replacement(rng, parent[last])
            changes.append(f"{'.'.join(map(str, path))} = {type(parent[last]).__name__}")
    return Mutated(mutated, tuple(changes))


def _get(value: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


def hostile_identifiers(event: Any) -> list[str]:
    """Identifying fields of a GuardDuty event that are present but do not fit their syntax."""
    if not isinstance(event, dict) or event.get("source") != "aws.guardduty":
        return []
    detail = event.get("detail")
    found = []
    fields = {
        "region": (event.get("region"), identifiers.REGION),
        "detail.region": (_get(detail, "region"), identifiers.REGION),
        "cluster": (_get(detail, "resource", "eksClusterDetails", "name"), identifiers.CLUSTER),
        "namespace": (_get(detail, "resource", "kubernetesDetails", "kubernetesWorkloadDetails", "namespace"),
                      identifiers.LABEL),
    }  # fmt: skip
    for name, (value, syntax) in fields.items():
        if value is not None and (not isinstance(value, str) or (value and not syntax.match(value))):
            found.append(name)
    sample = _get(detail, "service", "additionalInfo", "sample")
    if sample is not None and not isinstance(sample, bool):
        found.append("sample")
    severity = _get(detail, "severity")
    if severity is not None and (
        isinstance(severity, bool) or not isinstance(severity, int | float) or not math.isfinite(severity)
    ):
        found.append("severity")
    return found


class Harness:
    """Every source's intake in plan mode, as the Lambda handlers reach it."""

    def __init__(self) -> None:
        from chalicelib.policy.loader import load_rules
        from chalicelib.response.execute import Responder
        from chalicelib.response.report import Mode
        from chalicelib.settings import DEFAULT_RULES_FILE, Settings

        self.settings = Settings(clusters=("demo",))
        self.responder = Responder(load_rules(DEFAULT_RULES_FILE), self.settings)
        self.mode = Mode.PLAN

    def run(self, event: Any) -> list[dict[str, Any]]:
        """The outputs the functions would return for this event (one per delivery or incident)."""
        from chalicelib.entry import flow_logs as batch
        from chalicelib.entry import intake, wiring

        if isinstance(event, dict) and isinstance(event.get("awslogs"), dict) and "data" not in event["awslogs"]:
            try:
                encoded = json.dumps(event["awslogs"]).encode()
            except (RecursionError, ValueError):
                return []  # CloudWatch Logs cannot deliver what JSON cannot encode
            event = {"awslogs": {"data": base64.b64encode(gzip.compress(encoded)).decode()}}
        if isinstance(event, dict) and "awslogs" in event:
            layout, scanner = wiring.flow_layout(self.settings), wiring.scanner(self.settings)
            flows = wiring.flow_intake(self.responder, self.mode, "us-east-1")
            try:
                delivery = batch.scan_payload(event, layout, scanner, batch.now(), "us-east-1")
            except Exception as exc:
                from chalicelib.errors import ResponderError

                if not isinstance(exc, ResponderError):
                    raise
                return [batch.rejected("cloudwatch-logs-payload", exc, [])]
            return [batch.respond(delivery, flows)]
        if isinstance(event, dict) and (event.get("source") == "aws.s3" or "Records" in event):
            objects = batch.s3_objects(event)
            return [{"objects": [list(o) for o in objects]}]
        return [intake.handle(event, self.responder, self.mode)]


def containment(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The actions the outputs would carry out. A GuardDuty sample finding's plan is never run (it
    says "sample finding, planned only"), so it is not containment."""
    return [
        a
        for o in outputs
        if not (o.get("incident") or {}).get("sample")
        for a in o.get("actions", [])
        if a.get("status") == "planned"
    ]


def check(outputs: list[dict[str, Any]]) -> None:
    """Every output is one JSON object that strict parsers accept (no NaN, no Infinity)."""
    for output in outputs:
        assert isinstance(output, dict), output
        json.loads(json.dumps(output, allow_nan=False))


def campaign(events: int, seed: int) -> dict[str, Any]:
    """Run `events` mutated events; count what escaped."""
    import sys
    import traceback

    rng = random.Random(seed)
    seeds = seed_events()
    harness = Harness()
    crashes: dict[str, int] = {}
    invalid_json = 0
    acted_on_hostile = 0
    for _ in range(events):
        mutated = mutate(rng.choice(seeds), rng, rng.randint(1, 3))
        try:
            outputs = harness.run(mutated.event)
        except Exception as exc:  # noqa: BLE001 - counted: the campaign's subject
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            crashes[where] = crashes.get(where, 0) + 1
            continue
        try:
            check(outputs)
        except (AssertionError, ValueError):
            invalid_json += 1
        if hostile_identifiers(mutated.event) and containment(outputs):
            acted_on_hostile += 1
    sys.setrecursionlimit(sys.getrecursionlimit())
    return {"events": events, "seed": seed, "uncaught": sum(crashes.values()), "invalid_output": invalid_json,
            "hostile_identifiers_with_actions": acted_on_hostile, "crashes": crashes}  # fmt: skip


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="mutation fuzzing of every source's intake")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    print(json.dumps(campaign(args.events, args.seed), indent=2))
