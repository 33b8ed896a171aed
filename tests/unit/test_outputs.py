"""The outputs' payloads, built from real reports and checked against each service's documented format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.errors import ConfigError
from chalicelib.notifiers import events_out, facts, pagerduty, servicenow, teams, webhook, writeback
from chalicelib.notifiers.base import Delivery, notify
from chalicelib.settings import Settings
from devstack.stand_ins import load_schema, schema_errors
from tests import reports

KEY = "R" * 32
EVENT_SCHEMA = load_schema("event-detail")


def test_facts_are_the_slack_messages_facts_as_plain_text() -> None:
    found = facts.of(reports.live())
    labels = [label for label, _ in found.fields]
    assert labels[:3] == ["Account", "Region", "Cluster"]
    assert (found.kind, found.status, found.severity) == ("incident", "contained", "high")
    assert found.summary().startswith("HIGH Execution:Runtime/ReverseShell in ")
    assert found.link is not None
    assert found.link.startswith("https://us-east-1.console.aws.amazon.com/guardduty/")


@pytest.mark.parametrize(
    ("report", "kind", "status"),
    [
        (reports.planned(), "incident", "planned"),
        (reports.live(status="failed"), "incident", "failed"),
        (reports.live(status="awaiting-approval"), "incident", "awaiting-approval"),
        (reports.released(), "release", "released"),
        (reports.approved(), "approval", "contained"),
        (reports.rejected(), "rejected", "failed"),
    ],
    ids=["planned", "failed", "awaiting", "released", "approved", "rejected"],
)
def test_each_report_has_its_kind_and_status(report: dict[str, Any], kind: str, status: str) -> None:
    assert (facts.kind(report), facts.status(report)) == (kind, status)


def test_pagerduty_triggers_on_containment_with_the_incident_as_dedup_key() -> None:
    report = reports.live()
    body = pagerduty.event(report, KEY)
    assert body is not None
    assert schema_errors(body, load_schema("pagerduty-events-v2")) == []
    assert (body["event_action"], body["dedup_key"], body["payload"]["severity"]) == (
        "trigger", report["incident"]["id"], "error")  # fmt: skip
    assert body["links"] == [{"href": facts.of(report).link, "text": "Open in the AWS console"}]


def test_pagerduty_resolves_on_release_and_pages_nobody_for_a_dry_run() -> None:
    resolve = pagerduty.event(reports.released(), KEY)
    assert resolve == {"routing_key": KEY, "event_action": "resolve", "dedup_key": reports.released()["incident"]["id"]}
    assert schema_errors(resolve, load_schema("pagerduty-events-v2")) == []
    assert pagerduty.event(reports.planned(), KEY) is None
    assert pagerduty.event(reports.rejected(), KEY) is None  # malformed input is for the channels


def test_a_failed_step_pages_at_least_as_an_error() -> None:
    report = reports.live(status="failed")
    report["incident"]["severity"] = "low"
    body = pagerduty.event(report, KEY)
    assert body is not None
    assert body["payload"]["severity"] == "error"


def test_the_teams_card_conforms_and_carries_every_fact() -> None:
    report = reports.live()
    message = teams.message(report)
    assert schema_errors(message, load_schema("teams-workflows-card")) == []
    text = json.dumps(message)
    for label, value in facts.of(report).fields:
        assert json.dumps(f"{label}: ")[1:-1] in text
        assert json.dumps(teams.inert(value))[1:-1] in text
    assert message["attachments"][0]["content"]["actions"][0]["url"] == facts.of(report).link


def test_the_event_detail_conforms_to_the_published_schema() -> None:
    for report in (reports.live(), reports.planned(), reports.released(), reports.approved(), reports.rejected()):
        entries = events_out.entries(report, "bus")
        details = [json.loads(e["Detail"]) for e in entries]
        assert [schema_errors(d, EVENT_SCHEMA) for d in details] == [[]] * len(details)
        assert {e["Source"] for e in entries} == {"eks-responder"}
        assert len(entries) == 1 + len(report.get("actions") or [])  # the report, then one per step


def test_the_schema_refuses_what_it_does_not_define() -> None:
    detail = events_out.detail(reports.live())
    assert schema_errors({**detail, "kind": "other"}, EVENT_SCHEMA)
    assert schema_errors({**detail, "link": "https://evil.example/"}, EVENT_SCHEMA)


def test_the_webhook_signature_holds_only_for_its_body_key_and_time() -> None:
    payload = webhook.body(reports.live())
    signed = webhook.headers(b"k", payload, 1_700_000_000)
    stamp, signature = signed[webhook.TIMESTAMP_HEADER], signed[webhook.SIGNATURE_HEADER]
    assert webhook.verify(b"k", stamp, payload, signature, now=1_700_000_100)
    assert not webhook.verify(b"other", stamp, payload, signature, now=1_700_000_100)
    assert not webhook.verify(b"k", stamp, payload + b" ", signature, now=1_700_000_100)
    assert not webhook.verify(b"k", stamp, payload, signature, now=1_700_000_000 + 301)  # a replay
    assert not webhook.verify(b"k", "soon", payload, signature, now=1_700_000_000)


def test_a_servicenow_ticket_conforms_and_is_keyed_by_the_incident() -> None:
    found = servicenow.wanted(reports.live())
    assert found is not None
    schema = load_schema("servicenow-incident")
    ticket = servicenow.ticket(found)
    assert schema_errors(ticket, schema, "create") == []
    assert ticket["correlation_id"] == f"eks-responder:{found.incident_id}"
    assert servicenow.correlation_id("x^y=z") .startswith("eks-responder:sha256:")  # fmt: skip
    assert servicenow.wanted(reports.planned()) is None


def test_writeback_notifies_then_resolves_the_incidents_own_finding() -> None:
    report = reports.live()
    (notified,) = writeback.calls(report, ("guardduty",), archive=True)
    arn = report["incident"]["finding_arn"]
    assert notified.params["FindingIdentifiers"] == [
        {"Id": arn, "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty"}]  # fmt: skip
    assert notified.params["Workflow"] == {"Status": "NOTIFIED"}
    assert report["incident"]["id"] in notified.params["Note"]["Text"]
    resolved, archived = writeback.calls(reports.released(), ("guardduty",), archive=True)
    assert resolved.params["Workflow"] == {"Status": "RESOLVED"}
    assert (archived.operation, archived.params) == ("ArchiveFindings", {"FindingIds": [arn.rsplit("/", 1)[1]]})
    assert len(writeback.calls(reports.released(), ("guardduty",), archive=False)) == 1


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:guardduty:us-east-1:999999999999:detector/4ab1f0c2d3e4f5a6b7c8d9e0f1a2b3c4/finding/0f58ba0fda05c4a3253c92dd408cff48",
        "arn:aws:guardduty:eu-west-1:123456789012:detector/4ab1f0c2d3e4f5a6b7c8d9e0f1a2b3c4/finding/0f58ba0fda05c4a3253c92dd408cff48",
        "arn:aws:guardduty:us-east-1:123456789012:detector/x/finding/../../other",
        None,
    ],
    ids=["another account", "another region", "malformed", "none"],
)
def test_writeback_never_aims_at_a_finding_the_incident_does_not_own(arn: str | None) -> None:
    report = reports.live()
    report["incident"]["finding_arn"] = arn
    assert writeback.calls(report, ("guardduty",), archive=True) == []


def test_writeback_skips_dry_runs_and_unconfigured_sources() -> None:
    assert writeback.calls(reports.planned(), ("guardduty",), archive=True) == []
    assert writeback.calls(reports.live(), ("inspector",), archive=True) == []


class _Recording:
    def __init__(self, name: str, fails: bool = False) -> None:
        self.name, self.fails, self.sent = name, fails, []  # type: ignore[var-annotated]

    def send(self, report: dict[str, Any]) -> None:
        if self.fails:
            raise ConnectionError("refused")
        self.sent.append(report)


def test_a_failed_output_is_alerted_once_through_the_others() -> None:
    slack, down, bus = _Recording("slack"), _Recording("pagerduty", fails=True), _Recording("eventbridge")
    deliveries = notify(reports.live(), [slack, down, bus])
    assert [d.delivered for d in deliveries] == [True, False, True]
    for working in (slack, bus):
        assert len(working.sent) == 2  # the report, then one alert
        alert = working.sent[1]
        assert alert["delivery_failure"] is True
        assert "pagerduty: ConnectionError: refused" in alert["error"]
    assert facts.kind(slack.sent[1]) == "delivery-failure"
    assert isinstance(deliveries[1], Delivery)
    assert deliveries[1].attempts == 2


def test_an_alert_that_fails_too_is_only_logged() -> None:
    down = _Recording("teams", fails=True)
    (delivery,) = notify(reports.live(), [down])
    assert not delivery.delivered  # and nothing raised


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"WEBHOOK_URL": "https://hooks.example/x"}, "go together"),
        ({"WEBHOOK_SIGNING_SECRET": "s"}, "go together"),
        ({"WEBHOOK_URL": "http://hooks.example/x", "WEBHOOK_SIGNING_SECRET": "s"}, "https"),
        ({"SERVICENOW_INSTANCE_URL": "https://x.service-now.com"}, "go together"),
        ({"WRITEBACK_SOURCES": "kms"}, "not written back"),
        ({"SERVICENOW_TABLE": "incident?sysparm=x"}, "a table"),
    ],
)
def test_output_settings_are_checked_at_start_up(env: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        Settings.from_env(env)


def test_a_stored_plans_incident_keeps_its_finding_for_the_release_write_back() -> None:
    # A release runs from the plan kept in the table: the finding's ARN must survive the round trip.
    from chalicelib.identifiers import incident_from_state
    from chalicelib.incident import incident_state
    from chalicelib.sources import guardduty
    from tests.conftest import load_event

    incident = guardduty.to_incident(load_event(reports.EVENT), raw_ref="events/guardduty/x.json")
    kept = incident_from_state(json.loads(json.dumps(incident_state(incident))))
    assert kept.finding_arn == incident.finding_arn
    assert kept.finding_arn is not None
    assert kept.finding_arn.startswith("arn:aws:guardduty:")


def test_a_delivery_failure_pages_on_its_incidents_alert() -> None:
    from chalicelib.notifiers.base import failure_alert

    report = reports.live()
    alert = failure_alert(report, [Delivery("teams", delivered=False, error="RuntimeError: down", attempts=2)])
    body = pagerduty.event(alert, KEY)
    assert body is not None
    assert (body["event_action"], body["dedup_key"]) == ("trigger", report["incident"]["id"])
    assert schema_errors(body, load_schema("pagerduty-events-v2")) == []


def test_an_events_resources_are_only_the_incidents_own_well_formed_finding() -> None:
    report = reports.live()
    (first, *_) = events_out.entries(report, "bus")
    assert first["Resources"] == [report["incident"]["finding_arn"]]
    for hostile in ("arn:aws:guardduty:us-east-1:999999999999:detector/x/finding/y", "arn:<!channel>", None):
        report["incident"]["finding_arn"] = hostile
        assert {tuple(e["Resources"]) for e in events_out.entries(report, "bus")} == {()}
