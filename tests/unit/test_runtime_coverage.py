"""GuardDuty Runtime Protection Unhealthy: one incident per cluster and hour, nodes found at run time."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.errors import EventError
from chalicelib.incident import ResourceKind, Severity
from chalicelib.policy.loader import load_rules
from chalicelib.policy.matcher import decide
from chalicelib.settings import DEFAULT_RULES_FILE
from chalicelib.sources import registry
from tests.conftest import EVENTS, load_json

EVENT = EVENTS / "runtime-coverage" / "guardduty-runtime-protection-unhealthy-eks.json"


def test_an_unhealthy_cluster_is_one_incident_per_hour() -> None:
    incident = registry.to_incident(load_json(EVENT))
    assert (incident.type, incident.cluster, incident.resource_kind, incident.severity) == (
        "RuntimeProtection:EKS/AgentUnhealthy", "demo", ResourceKind.NODE, Severity.MEDIUM)  # fmt: skip
    assert incident.id == "runtime-coverage-123456789012-us-east-1-demo-2026112011"
    assert incident.details["reporting"] == "3 of 4 nodes report"
    assert incident.title == "GuardDuty's runtime agent stopped reporting in cluster demo (3 of 4 nodes report)"
    assert decide(incident, load_rules(DEFAULT_RULES_FILE)).rule.name == "runtime-agent-stopped"


def _with(**resource: Any) -> dict[str, Any]:
    event: dict[str, Any] = load_json(EVENT)
    event["detail"]["resourceDetails"] = resource
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_with(resourceType="EC2", ec2InstanceDetails={"instanceId": "i-0abc"}), "only EKS clusters"),
        (_with(resourceType="EKS", eksClusterDetails={}), "clusterName is missing"),
        (_with(resourceType="EKS", eksClusterDetails={"clusterName": "../x"}), "cluster"),
    ],
)
def test_what_is_not_an_eks_cluster_is_refused_with_the_reason(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError, match=message):
        registry.to_incident(event)
