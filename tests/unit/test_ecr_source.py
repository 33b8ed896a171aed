from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import EventError
from chalicelib.incident import ResourceKind, Severity
from chalicelib.policy.loader import load_rules
from chalicelib.policy.matcher import decide
from chalicelib.settings import DEFAULT_RULES_FILE
from chalicelib.sources import ecr
from tests.conftest import SAMPLES, load_json

ECR_SAMPLES = sorted((SAMPLES / "ecr").glob("*.json"))
RULES = load_rules(DEFAULT_RULES_FILE)


@pytest.mark.parametrize("path", ECR_SAMPLES, ids=lambda p: p.name)
def test_every_ecr_and_inspector_sample_parses_and_gets_a_rule(path: Path) -> None:
    incident = ecr.to_incident(load_json(path))
    decision = decide(incident, RULES)
    assert decision.rule is not None
    if incident.severity is Severity.CRITICAL:
        assert [step.action for step in decision.rule.actions] == ["k8s:label-pod", "k8s:block-image"]
    else:
        assert decision.reason
        assert not decision.rule.actions


def test_a_low_only_scan_does_nothing_and_a_critical_with_a_fix_blocks() -> None:
    low = _finding()
    low["detail"]["severity"] = "LOW"
    assert decide(ecr.to_incident(low), RULES).rule.name == "image-low-or-clean"
    critical = _finding()
    critical["detail"]["severity"] = "CRITICAL"
    decision = decide(ecr.to_incident(critical), RULES)
    assert decision.rule.name == "block-critical-image"
    assert ecr.to_incident(critical).details["fix_available"] == "yes"


@pytest.mark.parametrize(("exploit", "rule"), [("YES", "block-exploitable-image"), ("NO", "vulnerable-image")])
def test_a_high_finding_blocks_only_with_a_known_exploit(exploit: str, rule: str) -> None:
    high = _finding()
    high["detail"]["severity"] = "HIGH"
    high["detail"]["exploitAvailable"] = exploit
    assert decide(ecr.to_incident(high), RULES).rule.name == rule


def test_basic_scan_takes_the_worst_count() -> None:
    incident = ecr.to_incident(load_json(SAMPLES / "ecr" / "ECR_Image_Scan_basic_COMPLETE.json"))
    assert incident.severity is Severity.CRITICAL
    assert incident.resource_kind is ResourceKind.IMAGE
    assert incident.images == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-repository-name"
        "@sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
    )
    assert incident.details["severity_counts"] == "CRITICAL 10, MEDIUM 9"


def test_an_inspector_scan_summary_names_the_repository_not_its_arn() -> None:
    incident = ecr.to_incident(load_json(SAMPLES / "ecr" / "Inspector2_Scan_ECR_INITIAL_SCAN_COMPLETE.json"))
    assert incident.details["repository"] == "amazon/amazon-ecs-sample"
    assert incident.severity is Severity.CRITICAL
    clean = ecr.to_incident(load_json(SAMPLES / "ecr" / "Inspector2_Scan_ECR_INITIAL_SCAN_COMPLETE.2023-doc.json"))
    assert clean.severity is Severity.LOW
    assert decide(clean, RULES).rule.name == "image-low-or-clean"


def _finding() -> dict[str, Any]:
    return copy.deepcopy(load_json(SAMPLES / "ecr" / "Inspector2_Finding_ECR_PACKAGE_VULNERABILITY.2024-doc.json"))


def test_every_cve_of_one_image_is_one_incident() -> None:
    first, second = _finding(), _finding()
    second["detail"]["title"] = "CVE-2099-0001 - another"
    second["detail"]["packageVulnerabilityDetails"]["vulnerabilityId"] = "CVE-2099-0001"
    one, other = ecr.to_incident(first), ecr.to_incident(second)
    assert one.id == other.id
    assert (one.details["cve"], other.details["cve"]) == ("CVE-2024-6119", "CVE-2099-0001")
    assert one.details["fix_available"] == "yes"
    assert one.details["exploit_available"] == "no"


def test_a_closed_inspector_finding_is_flagged() -> None:
    closed = _finding()
    closed["detail"]["status"] = "CLOSED"
    incident = ecr.to_incident(closed)
    assert incident.failed is True
    assert decide(incident, RULES).rule.name == "image-finding-closed"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e["detail"].pop("resources"), "resources: required, missing"),
        (
            lambda e: e["detail"]["resources"][0]["details"]["awsEcrContainerImage"].update(imageHash="latest"),
            "imageHash",
        ),
        (lambda e: e.update({"detail-type": "Inspector2 Something New"}), "unsupported image event"),
        (lambda e: e["detail"]["resources"][0].update(type="AWS_EC2_INSTANCE"), "not about an ECR container image"),
    ],
)
def test_malformed_image_events(mutate: Any, message: str) -> None:
    event = _finding()
    mutate(event)
    with pytest.raises(EventError, match=message):
        ecr.to_incident(event)


def test_the_project_scan_event_blocks_the_image_the_demo_runs() -> None:
    from devstack.seed import REPORTS_DIGEST, REPORTS_IMAGE

    incident = ecr.to_incident(
        load_json(Path(__file__).parents[2] / "events" / "ecr" / "ecr-image-scan-critical-reports.json")
    )
    assert incident.images == (f"{REPORTS_IMAGE}@{REPORTS_DIGEST}",)
    assert incident.details["tags"] == "2.3.1"
    assert decide(incident, RULES).rule.name == "block-critical-image"
