"""The follow-up event of a memory capture, with every field hostile in turn: it is reported only
as the command the responder recorded, never with a value the event wrote, and never raises."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.actions.ec2 import memory_document
from chalicelib.entry import captures
from chalicelib.executors.evidence import FolderEvidence
from chalicelib.notifiers import slack_message
from chalicelib.sources import registry
from tests.conftest import EVENTS, load_json
from tests.fuzzing.hostile import MALFORMED, TEXT

DOCUMENT = "eks-responder-local-memory-capture"
EVENT = load_json(EVENTS / "ssm" / "memory-capture-succeeded.json")
COMMAND, INSTANCE = EVENT["detail"]["command-id"], EVENT["detail"]["instance-id"]


@pytest.fixture
def evidence(tmp_path: Path) -> FolderEvidence:
    """The record `ec2:capture-memory` writes, and what the node uploaded."""
    store = FolderEvidence(tmp_path)
    found = registry.to_incident(load_json(EVENTS / "guardduty" / "execution-runtime-reverse-shell.json"))
    base = f"{found.account}/{found.region}/{found.id}/instances/{INSTANCE}/memory"
    record = memory_document.record(found, INSTANCE, COMMAND, DOCUMENT, base, datetime(2026, 11, 30, tzinfo=UTC))
    record["incident"]["account"] = EVENT["account"]
    store.put(f"{memory_document.CAPTURES_KEY}/{COMMAND}.json", json.dumps(record).encode(), "application/json")
    for name in ("memory.lime", "volatile.txt"):
        store.put(f"{base}/{name}", b"x", "application/octet-stream")
    store.put(f"{base}/SHA256SUMS", f"{'a' * 64}  memory.lime\n{'b' * 64}  volatile.txt\n".encode(), "text/plain")
    return store


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


def test_the_recorded_command_is_reported_with_the_nodes_hashes(evidence: FolderEvidence) -> None:
    told = captures.report_ended(copy.deepcopy(EVENT), DOCUMENT, evidence, [])
    (step,) = told["actions"]
    assert (step["status"], step["target"]) == ("succeeded", INSTANCE)
    assert "a" * 16 in step["detail"]
    manifest = list(Path(evidence.location("")).rglob("MANIFEST.json"))
    assert len(manifest) == 1
    assert json.loads(manifest[0].read_text())["files"]["memory.lime"]["sha256"] == "a" * 64


def test_every_field_hostile_in_turn_is_ignored_or_reported_as_recorded(evidence: FolderEvidence) -> None:
    reported = 0
    for path in _leaves(EVENT):
        for value in [*TEXT, *MALFORMED]:
            event = copy.deepcopy(EVENT)
            where = event
            for key in path[:-1]:
                where = where[key]
            where[path[-1]] = value
            told = captures.report_ended(event, DOCUMENT, evidence, [])
            if "ignored" in told:
                continue
            reported += 1
            (step,) = told["actions"]
            assert step["target"] == INSTANCE, (path, value)
            text = json.dumps(slack_message.build(told))
            assert "PWNED" not in text, (path, value)
            assert "evil.example" not in text, (path, value)
    # fields the report does not read (time, resources, ...) may be anything: it is still the record's
    assert reported > 0
