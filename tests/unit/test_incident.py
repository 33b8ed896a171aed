from __future__ import annotations

import pytest

from chalicelib.incident import Incident, PodRef, ResourceKind, Severity, WorkloadRef, timestamp
from chalicelib.sources import registry


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, Severity.LOW),
        (3.9, Severity.LOW),
        (4.0, Severity.MEDIUM),
        (6.9, Severity.MEDIUM),
        (7.0, Severity.HIGH),
        (8.9, Severity.HIGH),
        (9.0, Severity.CRITICAL),
        (10.0, Severity.CRITICAL),
    ],
)
def test_severity_bands_follow_guardduty(score: float, band: Severity) -> None:
    assert Severity.from_score(score) is band


def test_severity_parse_is_case_insensitive_and_rejects_unknown() -> None:
    assert Severity.parse(" High ") is Severity.HIGH
    with pytest.raises(ValueError, match="unknown severity 'urgent'"):
        Severity.parse("urgent")


def test_incident_tactic_and_resource_type() -> None:
    incident = Incident(
        id="abc",
        source="guardduty",
        type="Execution:Kubernetes/ExecInKubeSystemPod",
        title="t",
        severity=Severity.MEDIUM,
        score=5,
        account="1",
        region="r",
        resource_kind=ResourceKind.POD,
        workloads=(WorkloadRef("Pod", "kube-system", "p"),),
        pods=(PodRef("kube-system", "p"),),
    )
    assert incident.tactic == "Execution"
    assert incident.resource_type == "Kubernetes"
    out = incident.to_dict()
    assert out["pods"] == ["kube-system/p"]
    assert out["workload"] == "Pod/kube-system/p"
    assert out["node"] is None
    assert out["severity"] == "medium"


def test_an_event_time_is_believed_only_when_it_is_one() -> None:
    assert timestamp("2026-11-30T10:20:00.000Z") == "2026-11-30T10:20:00Z"
    assert timestamp("2026-11-30T11:20:00+01:00") == "2026-11-30T10:20:00Z"
    assert timestamp("2026-11-30T10:20:00") == "2026-11-30T10:20:00Z"  # no zone: UTC, as AWS writes them
    for hostile in (None, 5, "", "yesterday", "<!channel>", "9999-12-31T00:00:00Z", "1970-01-01T00:00:00Z",
                    "2026-11-30T10:20:00Z" + "0" * 50, ["2026-11-30T10:20:00Z"]):  # fmt: skip
        assert timestamp(hostile) is None, hostile


def test_guardduty_findings_carry_their_last_update() -> None:
    from tests.conftest import EVENTS, load_json

    event = load_json(EVENTS / "guardduty" / "execution-runtime-reverse-shell.json")
    found = registry.to_incident(event)
    assert found.observed_at == timestamp(event["detail"]["updatedAt"])
    assert found.observed_at is not None
