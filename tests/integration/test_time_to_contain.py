"""Time to contain: from the finding's last update to the first containment step that succeeded,
in the report, the audit record and the Slack message."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.notifiers import slack_message
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 30, 12, 0, 42, tzinfo=UTC)


def _found(cluster: Cluster, updated: datetime) -> Any:
    pod = cluster.pod("web", cluster.node("node-a", "i-0aaa"))
    return replace(incident(namespace=cluster.namespace, pods=(pod,)), observed_at=updated.isoformat())


def test_the_first_containment_that_succeeds_ends_it(cluster: Cluster, make_responder: Any) -> None:
    found = _found(cluster, NOW - timedelta(seconds=42))
    responder = make_responder(rules_with("k8s:label-pod", "k8s:isolate-pod"), clock=lambda: NOW)
    report = responder.handle(found, Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["succeeded", "succeeded"]
    assert report.time_to_contain == 42.0
    told = report.to_dict()
    assert told["time_to_contain_seconds"] == 42.0
    assert "*Contained*: `42 s after the finding's last update`" in slack_message.render_text(slack_message.build(told))


def test_evidence_alone_or_a_dry_run_contains_nothing(cluster: Cluster, make_responder: Any) -> None:
    found = _found(cluster, NOW - timedelta(seconds=5))
    labelled = make_responder(rules_with("k8s:label-pod"), clock=lambda: NOW).handle(found, Mode.LIVE)
    assert labelled.actions[0].status.value == "succeeded"
    assert labelled.time_to_contain is None  # a label is not containment
    assert "time_to_contain_seconds" not in labelled.to_dict()
    dry = make_responder(rules_with("k8s:isolate-pod"), clock=lambda: NOW).handle(found, Mode.DRY_RUN)
    assert dry.time_to_contain is None
    without_time = make_responder(rules_with("k8s:isolate-pod"), clock=lambda: NOW).handle(
        replace(found, observed_at=None), Mode.LIVE
    )
    assert without_time.contained_at == NOW
    assert without_time.time_to_contain is None  # nothing to measure from
