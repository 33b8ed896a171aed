"""What the exactly-once ledger stores: bounded, whatever the report."""

from __future__ import annotations

import json

from chalicelib.executors.ledger import MAX_RECORD_BYTES, bounded, summary

REPORT = {
    "event_id": "e-1",
    "incident": {"id": "inc-1", "details": {"huge": "x" * (MAX_RECORD_BYTES + 10)}},
    "rule": "compromised-pod",
    "mode": "live",
    "actions": [{"action": "k8s:label-pod", "target": "ns/pod", "status": "succeeded", "prior": {"a": "b"}}] * 80,
}


def test_a_report_too_large_for_an_item_is_stored_as_its_summary() -> None:
    stored = json.loads(bounded(REPORT))
    assert stored["truncated"].startswith("the full report was")
    assert stored["incident_id"] == "inc-1"
    assert stored["rule"] == "compromised-pod"
    assert len(stored["actions"]) == 50
    assert len(bounded(REPORT).encode()) < MAX_RECORD_BYTES


def test_a_report_that_fits_is_stored_whole() -> None:
    small = {**REPORT, "incident": {"id": "inc-1"}, "actions": REPORT["actions"][:2]}
    assert json.loads(bounded(small)) == small


def test_the_idempotency_summary_never_carries_the_report() -> None:
    kept = summary(REPORT)
    assert set(kept) == {"event_id", "incident_id", "rule", "mode", "actions"}
    assert "prior" not in kept["actions"][0]


def test_a_record_without_its_mode_is_read_from_its_report_and_else_counts_as_live() -> None:
    from chalicelib.executors.ledger import _mode

    assert _mode({"mode": {"S": "dry-run"}, "report": {"S": "{}"}}) == "dry-run"
    assert _mode({"report": {"S": json.dumps({"mode": "dry-run"})}}) == "dry-run"
    assert _mode({"report": {"S": "not json"}}) == "live"  # unknown: never acted on twice
    assert _mode({}) == "live"
