"""PagerDuty: the Events API v2 on a local stand-in that checks every event against the documented format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.notifiers.base import notify
from devstack import stand_ins
from tests import reports
from tests.integration.outputs import built, secret

pytestmark = pytest.mark.integration
ROUTING_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def pagerduty() -> Iterator[stand_ins.StandIn]:
    server = stand_ins.pagerduty()
    yield server
    server.close()


def _env(aws_session: Any, server: stand_ins.StandIn) -> dict[str, str]:
    return {"PAGERDUTY_ROUTING_KEY_SECRET": secret(aws_session, ROUTING_KEY),
            "PAGERDUTY_EVENTS_URL": f"{server.url}/v2/enqueue"}  # fmt: skip


def test_an_incident_pages_once_and_its_release_resolves_the_same_alert(
    pagerduty: stand_ins.StandIn, aws_session: Any
) -> None:
    (notifier,) = built(_env(aws_session, pagerduty), aws_session)
    contained, approved, released = reports.live(), reports.approved(), reports.released()
    for report in (contained, approved, released, reports.planned()):
        (delivery,) = notify(report, [notifier])
        assert delivery.delivered, delivery.error
    assert pagerduty.refused == []
    sent = pagerduty.bodies()
    assert [b["event_action"] for b in sent] == ["trigger", "trigger", "resolve"]  # the dry run pages nobody
    assert {b["dedup_key"] for b in sent} == {contained["incident"]["id"]}
    assert {b["routing_key"] for b in sent} == {ROUTING_KEY}  # read from Secrets Manager
    assert sent[0]["payload"]["summary"].startswith("HIGH Execution:Runtime/ReverseShell in ")
    assert len(sent[0]["payload"]["custom_details"]["steps"]) == len(contained["actions"])


def test_the_stand_in_refuses_what_pagerduty_would(pagerduty: stand_ins.StandIn, aws_session: Any) -> None:
    # A key of the wrong length is what PagerDuty answers 400 to: the stand-in checks as it does.
    env = {**_env(aws_session, pagerduty), "PAGERDUTY_ROUTING_KEY_SECRET": secret(aws_session, "short")}
    (notifier,) = built(env, aws_session)
    (delivery,) = notify(reports.live(), [notifier])
    assert not delivery.delivered
    assert "PagerDuty (127.0.0.1) answered 400" in str(delivery.error)
    assert "routing_key" in str(pagerduty.refused[0][1]["errors"])


def test_an_outage_is_retried_once_then_alerted_through_the_other_outputs(
    pagerduty: stand_ins.StandIn, aws_session: Any
) -> None:
    (notifier,) = built(_env(aws_session, pagerduty), aws_session)
    told: list[dict[str, Any]] = []

    class Channel:
        name = "slack"

        def send(self, report: dict[str, Any]) -> None:
            told.append(report)

    pagerduty.fail_next(2, status=503)
    deliveries = notify(reports.live(), [Channel(), notifier])
    assert [(d.notifier, d.delivered, d.attempts) for d in deliveries] == [("slack", True, 1), ("pagerduty", False, 2)]
    assert len(told) == 2
    assert told[1]["delivery_failure"] is True
    assert "PagerDuty (127.0.0.1) answered 503" in told[1]["error"]
    pagerduty.fail_next(1, status=503)
    (delivery,) = notify(reports.live(), [notifier])
    assert (delivery.delivered, delivery.attempts) == (True, 2)  # a passing outage costs one retry
