from __future__ import annotations

import pytest

from chalicelib.incident import Incident, PodRef, ResourceKind, Severity, WorkloadRef


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
