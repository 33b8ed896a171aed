from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import RulesError
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.policy.loader import load_rules, parse_rules
from chalicelib.policy.matcher import decide, matches
from chalicelib.policy.model import Match
from chalicelib.settings import DEFAULT_RULES_FILE
from chalicelib.sources import guardduty
from chalicelib.sources.envelope import split_document
from chalicelib.validation import plain
from tests.conftest import load_json, sample_files

BASE = Incident(
    id="i1",
    source="guardduty",
    type="Execution:Runtime/ReverseShell",
    title="t",
    severity=Severity.HIGH,
    score=8.0,
    account="111122223333",
    region="eu-west-1",
    resource_kind=ResourceKind.POD,
    cluster="prod-eu",
    namespace="payments",
)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (Match(), True),
        (Match(sources=("guardduty",)), True),
        (Match(sources=("ecr",)), False),
        (Match(finding_types=("*:Runtime/*",)), True),
        (Match(finding_types=("*:Kubernetes/*",)), False),
        (Match(exclude_finding_types=("Execution:*",)), False),
        (Match(tactics=("Execution",)), True),
        (Match(tactics=("Impact",)), False),
        (Match(min_severity="high"), True),
        (Match(min_severity="critical"), False),
        (Match(max_severity="medium"), False),
        (Match(resource_kinds=(ResourceKind.POD, ResourceKind.WORKLOAD)), True),
        (Match(resource_kinds=(ResourceKind.NODE,)), False),
        (Match(privileged=True), False),
        (Match(privileged=False), True),
        (Match(accounts=("1111*",)), True),
        (Match(exclude_accounts=("111122223333",)), False),
        (Match(clusters=("prod-*",)), True),
        (Match(clusters=("dev-*",)), False),
        (Match(exclude_clusters=("prod-eu",)), False),
        (Match(namespaces=("pay*",)), True),
        (Match(namespaces=("kube-system",)), False),
        (Match(exclude_namespaces=("payments",)), False),
    ],
)
def test_each_condition(match: Match, expected: bool) -> None:
    assert matches(match, BASE) is expected


def test_include_lists_need_the_field_present() -> None:
    no_cluster = replace(BASE, cluster=None, namespace=None)
    assert matches(Match(clusters=("*",)), no_cluster) is False
    assert matches(Match(namespaces=("*",)), no_cluster) is False
    assert matches(Match(exclude_clusters=("*",)), no_cluster) is True


def test_first_matching_rule_wins_and_a_miss_says_so() -> None:
    rules = parse_rules(
        {
            "version": 1,
            "rules": [
                {"name": "first", "match": {"namespaces": ["payments"]}, "reason": "first"},
                {"name": "second", "actions": [{"action": "k8s:label-pod"}]},
            ],
        },
        "t",
    )
    assert decide(BASE, rules).rule.name == "first"
    other = replace(BASE, namespace="web")
    assert decide(other, rules).rule.name == "second"
    only_first = parse_rules({"version": 1, "rules": [plain(rules.rules[0])]}, "t")
    miss = decide(other, only_first)
    assert miss.rule is None
    assert miss.reason == "no rule matches this finding"


DEFAULT = load_rules(DEFAULT_RULES_FILE)

EXPECTED_RULES = {
    "attack-sequence-eks-compromised-cluster": "attack-sequence",
    "backdoor-runtime-c2-activity-dns-daemonset": "compromised-pod",
    "credential-access-kubernetes-malicious-ip-caller": "compromised-kubernetes-user",
    "cryptocurrency-ec2-bitcoin-tool-worker-node": "compromised-node",
    "defense-evasion-unknown-future-type-on-pod": "unknown-type-on-pod",
    "execution-kubernetes-exec-in-kube-system-pod": "compromised-pod",
    "execution-kubernetes-malicious-file-worker-node": "compromised-node",
    "execution-runtime-reverse-shell": "compromised-pod",
    "execution-runtime-suspicious-shell-created-low": "report-low-severity",
    "impact-runtime-crypto-miner-executed-deployment": "compromised-image",
    "policy-kubernetes-anonymous-access-granted": "dangerous-binding",
    "policy-kubernetes-admin-access-to-default-service-account": "dangerous-binding",
    "privilege-escalation-kubernetes-privileged-container": "privileged-pod",
    "privilege-escalation-runtime-runc-container-escape-node": "compromised-node",
    "sample-privilege-escalation-privileged-container": "privileged-pod",
    "unauthorized-access-instance-credential-exfiltration-outside-aws": "compromised-credentials",
    "unauthorized-access-instance-credential-exfiltration-retired-type": "compromised-credentials",
    "persistence-runtime-sensitive-file-modified": "compromised-pod",
    "execution-runtime-malicious-file-executed-custom": "compromised-image",
    "attack-sequence-ec2-compromised-instance-group-worker-nodes": "attack-sequence-on-worker-nodes",
    "discovery-kubernetes-tor-ip-caller-on-workload": "compromised-kubernetes-user",
}


def test_every_project_event_has_an_expected_playbook() -> None:
    names = {p.stem for p in (Path(__file__).parents[2] / "events" / "guardduty").glob("*.json")}
    assert names == set(EXPECTED_RULES), "add the new event to EXPECTED_RULES"


@pytest.mark.parametrize(("name", "rule"), sorted(EXPECTED_RULES.items()))
def test_default_playbook_per_event(name: str, rule: str) -> None:
    from tests.conftest import load_event

    decision = decide(guardduty.to_incident(load_event(name)), DEFAULT)
    assert decision.rule is not None
    assert decision.rule.name == rule


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_every_sample_gets_a_rule_or_a_reason(path: Path) -> None:
    for event in split_document(load_json(path)):
        decision = decide(guardduty.to_incident(event), DEFAULT)
        assert decision.rule is not None
        assert decision.rule.actions or decision.reason


def test_low_severity_is_reported_not_contained() -> None:
    low = replace(BASE, severity=Severity.LOW, score=2.0)
    decision = decide(low, DEFAULT)
    assert decision.rule is not None
    assert decision.rule.name == "report-low-severity"
    assert not decision.rule.actions


def test_unknown_types_fall_back_on_tactic_and_resource_kind() -> None:
    future_pod = replace(BASE, type="Impact:Container/SomethingNew")
    future_node = replace(BASE, type="Backdoor:Host/SomethingNew", resource_kind=ResourceKind.NODE)
    assert decide(future_pod, DEFAULT).rule.name == "unknown-type-on-pod"
    assert decide(future_node, DEFAULT).rule.name == "unknown-type-on-node"
    assert decide(replace(BASE, type="Recon:Thing/New", resource_kind=ResourceKind.OTHER), DEFAULT).rule.name == (
        "report-everything-else"
    )


SCANNED = replace(
    BASE,
    source="inspector",
    resource_kind=ResourceKind.IMAGE,
    details={"repository": "team/payments", "tags": "1.4,release-2026", "exploit_available": "yes",
             "fix_available": "no", "inspector_score": "8.1", "epss": "0.02"},
)  # fmt: skip


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (Match(repositories=("team/*",)), True),
        (Match(repositories=("other/*",)), False),
        (Match(exclude_repositories=("team/pay*",)), False),
        (Match(image_tags=("release-*",)), True),
        (Match(image_tags=("dev-*",)), False),
        (Match(exclude_image_tags=("1.*",)), False),
        (Match(exclude_image_tags=("dev-*",)), True),
        (Match(exploit_available=True), True),
        (Match(exploit_available=False), False),
        (Match(fix_available=True), False),
        (Match(fix_available=False), True),
        (Match(min_cvss=8.0), True),
        (Match(min_cvss=9.0), False),
        (Match(min_epss=0.01), True),
        (Match(min_epss=0.5), False),
    ],
)
def test_each_image_condition(match: Match, expected: bool) -> None:
    assert matches(match, SCANNED) is expected


def test_image_conditions_need_the_value_present() -> None:
    # A GuardDuty finding carries no scan data: a CVSS floor never matches it.
    assert matches(Match(min_cvss=0.0), BASE) is False
    assert matches(Match(repositories=("*",)), BASE) is False
    assert matches(Match(image_tags=("*",)), BASE) is False
    assert matches(Match(exploit_available=False), BASE) is True


def _with_risk(**risk: Any) -> Any:
    entry = {"cve": "CVE-2024-6119", "repositories": ["team/*"], "expires": "2027-01-31", "reason": "no TLS", **risk}
    return parse_rules({"version": 1, "accepted_risks": [entry], "rules": [{"name": "block", "actions": [
        {"action": "k8s:block-image"}]}]}, "test")  # fmt: skip


@pytest.mark.parametrize(
    ("risk", "today", "accepted"),
    [
        ({}, date(2027, 1, 31), True),
        ({}, date(2027, 2, 1), False),  # expired: the rules decide again
        ({"repositories": ["other/*"]}, date(2026, 12, 1), False),
        ({"cve": "CVE-2024-0001"}, date(2026, 12, 1), False),
    ],
)
def test_an_accepted_risk_holds_for_its_cve_and_repositories_until_it_expires(
    risk: dict[str, Any], today: date, accepted: bool
) -> None:
    incident = replace(SCANNED, details={**SCANNED.details, "cve": "CVE-2024-6119"})
    decision = decide(incident, _with_risk(**risk), today)
    assert (decision.rule is None) is accepted
    if accepted:
        assert decision.reason == "CVE-2024-6119 is an accepted risk in team/payments until 2027-01-31: no TLS"


@pytest.mark.parametrize(
    ("risk", "message"),
    [
        ({"cve": "CVE-24-1"}, "cve"),
        ({"repositories": []}, "repositories"),
        ({"expires": "soon"}, "expires"),
        ({"reason": ""}, "reason"),
    ],
)
def test_an_accepted_risk_needs_an_id_repositories_an_expiry_and_a_reason(risk: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesError, match=message):
        _with_risk(**risk)
