"""Write-back to Security Hub and GuardDuty. moto serves neither BatchUpdateFindings nor
ArchiveFindings, so these run against local stand-ins that parse every request back through
botocore's own service model and validate it against the operation's input shape (required and
unknown members, types, enums, lengths) before answering in its output shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config

from chalicelib import functions
from chalicelib.generate import permissions
from chalicelib.notifiers.base import notify
from devstack import stand_ins
from tests import reports
from tests.integration.outputs import built

pytestmark = pytest.mark.integration


@pytest.fixture
def hubs(
    monkeypatch: pytest.MonkeyPatch, aws_session: Any
) -> Iterator[tuple[stand_ins.ModelCalls, stand_ins.ModelCalls]]:
    hub, hub_calls = stand_ins.security_hub()
    detector, detector_calls = stand_ins.guardduty()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECURITYHUB", hub.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_GUARDDUTY", detector.url)
    yield hub_calls, detector_calls
    hub.close()
    detector.close()


def test_acted_on_is_notified_and_released_is_resolved_then_archived(
    hubs: tuple[stand_ins.ModelCalls, stand_ins.ModelCalls], aws_session: Any
) -> None:
    hub, detector = hubs
    env = {"WRITEBACK_SOURCES": "guardduty,securityhub", "ARCHIVE_GUARDDUTY_FINDINGS": "true"}
    (notifier,) = built(env, aws_session)
    contained, released = reports.live(), reports.released()
    for report in (contained, reports.planned(), released):
        (delivery,) = notify(report, [notifier])
        assert delivery.delivered, delivery.error
    arn = contained["incident"]["finding_arn"]
    identifiers = [{"Id": arn, "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty"}]
    updates = hub.of("BatchUpdateFindings")
    assert [u["FindingIdentifiers"] for u in updates] == [identifiers, identifiers]  # the dry run wrote nothing
    assert [u["Workflow"] for u in updates] == [{"Status": "NOTIFIED"}, {"Status": "RESOLVED"}]
    note = updates[0]["Note"]
    assert note["UpdatedBy"] == "eks-responder"
    assert f"eks-responder incident {contained['incident']['id']}" in note["Text"]
    assert f"Timeline: eks-responder report {contained['incident']['id']}" in note["Text"]
    assert [c[0] for c in detector.calls] == ["ListDetectors", "ArchiveFindings"]
    assert detector.of("ArchiveFindings") == [{"DetectorId": detector.detector, "FindingIds": [arn.rsplit("/", 1)[1]]}]


def test_archive_is_off_unless_asked(hubs: tuple[stand_ins.ModelCalls, stand_ins.ModelCalls], aws_session: Any) -> None:
    hub, detector = hubs
    (notifier,) = built({"WRITEBACK_SOURCES": "guardduty"}, aws_session)
    notify(reports.released(), [notifier])
    assert len(hub.of("BatchUpdateFindings")) == 1
    assert detector.calls == []


def test_the_stand_in_refuses_what_the_model_refuses(
    hubs: tuple[stand_ins.ModelCalls, stand_ins.ModelCalls], aws_session: Any
) -> None:
    hub, _ = hubs
    client = aws_session.client("securityhub", config=Config(parameter_validation=False))
    bad = {
        "FindingIdentifiers": [{"Id": "x"}],
        "Workflow": {"Status": "DONE"},
        "Note": {"Text": "x"},
        "Confidence": 101,
    }
    with pytest.raises(client.exceptions.InvalidInputException) as refused:
        client.batch_update_findings(**bad)
    said = str(refused.value)
    for reason in ("ProductArn: required", "'DONE' not one of", "Note.UpdatedBy: required", "above the maximum 100"):
        assert reason in said
    assert hub.calls == []


def test_the_write_back_is_granted_where_it_is_configured_and_nowhere_else() -> None:
    function = functions.for_source("guardduty")
    rules = permissions.stage_rules({})

    def granted(env: dict[str, str]) -> set[tuple[str, tuple[str, ...]]]:
        return {(a, s.resources) for s in permissions.iam_statements(env, function, rules) for a in s.actions
                if a.startswith(("securityhub:", "guardduty:Archive"))}  # fmt: skip

    assert granted({}) == set()
    hub = ("arn:aws:securityhub:*:{account}:hub/default",)
    assert granted({"WRITEBACK_SOURCES": "guardduty"}) == {("securityhub:BatchUpdateFindings", hub)}
    both = granted({"WRITEBACK_SOURCES": "guardduty", "ARCHIVE_GUARDDUTY_FINDINGS": "true"})
    assert both == {("securityhub:BatchUpdateFindings", hub), ("guardduty:ArchiveFindings", ("*",))}
