"""Key policy history: versions by first sight, distrusted writes, the version before a call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from chalicelib import key_policies

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
GOOD = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "admins"}]})
EVIL = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "outsider"}]})


def test_the_same_document_differently_written_is_one_version() -> None:
    record = key_policies.empty()
    assert key_policies.observe(record, GOOD, T0)
    respaced = json.dumps(json.loads(GOOD), indent=4, sort_keys=False)
    assert not key_policies.observe(record, respaced, T0 + timedelta(hours=1))
    (version,) = record["versions"]
    assert version["last_seen"] == (T0 + timedelta(hours=1)).isoformat()


def test_the_version_in_force_before_a_call_is_chosen_not_the_newest() -> None:
    record = key_policies.empty()
    key_policies.observe(record, GOOD, T0)
    key_policies.observe(record, EVIL, T0 + timedelta(hours=2))  # seen after the call at +1h
    chosen = key_policies.good_before(record, T0 + timedelta(hours=1))
    assert chosen is not None
    assert chosen["policy"] == GOOD
    newest = key_policies.good_before(record, None)
    assert newest is not None
    assert newest["policy"] == EVIL


def test_a_distrusted_version_is_never_chosen() -> None:
    record = key_policies.empty()
    key_policies.observe(record, GOOD, T0)
    key_policies.observe(record, EVIL, T0 + timedelta(hours=2))
    key_policies.distrust(record, key_policies.digest(EVIL), "arn:aws:iam::1:role/x", "", T0)
    chosen = key_policies.good_before(record, T0 + timedelta(days=1))
    assert chosen is not None
    assert chosen["policy"] == GOOD


def test_nothing_before_the_first_snapshot() -> None:
    record = key_policies.empty()
    key_policies.observe(record, GOOD, T0)
    assert key_policies.good_before(record, T0 - timedelta(seconds=1)) is None


def test_records_of_the_first_release_are_read() -> None:
    record = key_policies.upgrade({"policy": GOOD, "stored_at": T0.isoformat()})
    chosen = key_policies.good_before(record, T0 + timedelta(seconds=1))
    assert chosen is not None
    assert chosen["policy"] == GOOD


def test_history_is_bounded() -> None:
    record = key_policies.empty()
    for i in range(key_policies.MAX_VERSIONS + 20):
        key_policies.observe(record, json.dumps({"n": i}), T0 + timedelta(minutes=i))
    assert len(record["versions"]) == key_policies.MAX_VERSIONS
    assert record["versions"][-1]["policy"] == json.dumps({"n": key_policies.MAX_VERSIONS + 19})


def test_event_times() -> None:
    assert key_policies.event_time("2022-09-01T20:06:16Z") == datetime(2022, 9, 1, 20, 6, 16, tzinfo=UTC)
    assert key_policies.event_time("") is None
    assert key_policies.event_time("yesterday") is None
