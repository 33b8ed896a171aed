"""ServiceNow: one ticket per incident, found again by its correlation id, a work note per report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.notifiers.base import notify
from devstack import stand_ins
from tests import reports
from tests.integration.outputs import built, secret

pytestmark = pytest.mark.integration


@pytest.fixture
def servicenow() -> Iterator[tuple[stand_ins.StandIn, stand_ins.ServiceNowState]]:
    server, state = stand_ins.servicenow("eks-responder", "s3cret")
    yield server, state
    server.close()


def _env(aws_session: Any, url: str, password: str = "s3cret") -> dict[str, str]:
    credentials = json.dumps({"username": "eks-responder", "password": password})
    return {"SERVICENOW_INSTANCE_URL": url, "SERVICENOW_CREDENTIALS_SECRET": secret(aws_session, credentials)}


def test_one_ticket_per_incident_and_a_note_for_every_later_report(
    servicenow: tuple[stand_ins.StandIn, stand_ins.ServiceNowState], aws_session: Any
) -> None:
    server, state = servicenow
    env = _env(aws_session, server.url)
    incident = reports.live()
    # Each report through a notifier of its own, as separate invocations (an approval, a release) would.
    for report in (incident, reports.approved(), reports.released(), reports.planned()):
        (delivery,) = notify(report, built(env, aws_session))
        assert delivery.delivered, delivery.error
    assert server.refused == []
    (record,) = state.records.values()
    assert record["correlation_id"] == f"eks-responder:{incident['incident']['id']}"
    assert record["short_description"].startswith("eks-responder: HIGH Execution:Runtime/ReverseShell")
    assert record["urgency"] == "1"
    notes = state.notes[record["sys_id"]]
    assert len(notes) == 3
    assert "approved steps ran" in notes[1]
    assert "release: released" in notes[2]


def test_a_journal_code_tag_from_an_event_stays_text(
    servicenow: tuple[stand_ins.StandIn, stand_ins.ServiceNowState], aws_session: Any
) -> None:
    server, state = servicenow
    report = reports.live()
    report["incident"]["title"] = "[code]<img src=x onerror=alert(1)>[/code]"
    report["actions"][0]["detail"] = "[CODE]<script>x</script>[/ code]"
    assert notify(report, built(_env(aws_session, server.url), aws_session))[0].delivered
    (record,) = state.records.values()
    written = record["description"] + "".join(state.notes[record["sys_id"]])
    assert "[code]" not in written.lower()
    assert "<img src=x onerror=alert(1)>" in record["description"]  # shown as text, not dropped


def test_wrong_credentials_fail_the_delivery_not_the_incident(
    servicenow: tuple[stand_ins.StandIn, stand_ins.ServiceNowState], aws_session: Any
) -> None:
    server, state = servicenow
    (delivery,) = notify(reports.live(), built(_env(aws_session, server.url, "wrong"), aws_session))
    assert not delivery.delivered
    assert "ServiceNow (127.0.0.1) answered 401" in str(delivery.error)
    assert state.records == {}
