"""The CVE list of a counts-only scan: parsed from both response shapes, folded into the incident."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from chalicelib.executors.scan_findings import from_response
from chalicelib.incident import Severity
from chalicelib.interfaces import Vulnerability
from chalicelib.notifiers import facts, slack_message
from chalicelib.policy.loader import load_rules, parse_rules
from chalicelib.policy.matcher import decide
from chalicelib.response.execute import Responder
from chalicelib.response.report import Mode
from chalicelib.response.vulnerabilities import fold, wants_findings
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from chalicelib.sources import ecr
from tests.conftest import SAMPLES, load_json

TODAY = date(2026, 11, 28)
RULES = load_rules(DEFAULT_RULES_FILE)


def _basic_finding(name: str, severity: str, **attributes: str) -> dict[str, Any]:
    return {"name": name, "severity": severity, "uri": f"https://example.com/{name}",
            "attributes": [{"key": k, "value": v} for k, v in attributes.items()]}  # fmt: skip


def _scan(counts: dict[str, int]) -> Any:
    event = load_json(SAMPLES / "ecr" / "ECR_Image_Scan_basic_COMPLETE.json")
    event["detail"]["finding-severity-counts"] = counts
    return ecr.to_incident(event)


def _risks(*cves: str, expires: str = "2027-01-01", repositories: tuple[str, ...] = ("*",)) -> Any:
    risks = [{"cve": c, "repositories": list(repositories), "expires": expires, "reason": "no fix yet"} for c in cves]
    rules = {"version": 1, "accepted_risks": risks, "rules": [{"name": "r", "reason": "x"}]}
    return parse_rules(rules, "t").accepted_risks


CRITICAL_AND_HIGH = [
    Vulnerability("CVE-2024-0002", "HIGH", 7.5, "zlib 1.2"),
    Vulnerability("CVE-2024-0001", "CRITICAL", 9.8, "openssl 3.0.1"),
    Vulnerability("CVE-2024-0003", "LOW", None),
]


def test_basic_and_enhanced_responses_parse_with_package_score_and_fix() -> None:
    basic = {"imageScanFindings": {"findings": [
        _basic_finding("CVE-2021-3711", "CRITICAL", package_name="openssl", package_version="1.1.1k",
                       CVSS2_SCORE="7.5", CVSS3_SCORE="9.8"),
        _basic_finding("CVE-2020-1", "LOW"),
    ]}}  # fmt: skip
    assert from_response(basic) == [
        Vulnerability("CVE-2021-3711", "CRITICAL", 9.8, "openssl 1.1.1k"),
        Vulnerability("CVE-2020-1", "LOW", None, ""),
    ]
    enhanced = {"imageScanFindings": {"enhancedFindings": [{
        "severity": "HIGH", "score": 8.1, "fixAvailable": "YES", "exploitAvailable": "NO",
        "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2024-6119",
                                        "vulnerablePackages": [{"name": "libssl3", "version": "3.0.13"}]},
    }]}}  # fmt: skip
    assert from_response(enhanced) == [Vulnerability("CVE-2024-6119", "HIGH", 8.1, "libssl3 3.0.13", "yes", "no")]


def test_only_scans_with_something_at_medium_or_above_want_the_list() -> None:
    assert wants_findings(_scan({"CRITICAL": 1}))
    assert wants_findings(_scan({"MEDIUM": 2}))
    assert not wants_findings(_scan({"LOW": 3}))
    sample = SAMPLES / "ecr" / "Inspector2_Finding_ECR_PACKAGE_VULNERABILITY.2024-doc.json"
    inspector = ecr.to_incident(load_json(sample))
    assert not wants_findings(inspector)  # one CVE per event already


def test_the_list_names_the_worst_cves_and_keeps_the_severity() -> None:
    scan = _scan({"CRITICAL": 1, "HIGH": 1, "LOW": 1})
    incident = fold(scan, CRITICAL_AND_HIGH, complete=True, risks=(), today=TODAY)
    assert incident.severity is Severity.CRITICAL
    assert incident.details["cve"] == "CVE-2024-0001"
    assert incident.details["inspector_score"] == "9.8"
    assert incident.details["worst_cves"].splitlines() == [
        "CVE-2024-0001 CRITICAL CVSS 9.8 openssl 3.0.1",
        "CVE-2024-0002 HIGH CVSS 7.5 zlib 1.2",
        "CVE-2024-0003 LOW",
    ]
    assert decide(incident, RULES).rule.name == "block-critical-image"


def test_an_accepted_critical_cve_leaves_the_rest_to_decide() -> None:
    incident = fold(_scan({"CRITICAL": 1, "HIGH": 1, "LOW": 1}), CRITICAL_AND_HIGH, complete=True,
                    risks=_risks("CVE-2024-0001"), today=TODAY)  # fmt: skip
    assert incident.severity is Severity.HIGH
    assert incident.details["accepted_cves"] == "CVE-2024-0001"
    assert incident.details["severity_counts"] == "HIGH 1, LOW 1 after accepted risks"
    decision = decide(incident, RULES)
    assert decision.rule.name == "vulnerable-image"
    assert not decision.rule.actions


def test_an_expired_or_other_repository_acceptance_changes_nothing() -> None:
    scan = _scan({"CRITICAL": 1, "HIGH": 1, "LOW": 1})
    for risks in (_risks("CVE-2024-0001", expires="2026-11-27"), _risks("CVE-2024-0001", repositories=("other/*",))):
        assert fold(scan, CRITICAL_AND_HIGH, complete=True, risks=risks, today=TODAY).severity is Severity.CRITICAL


def test_an_incomplete_list_never_lowers_the_severity() -> None:
    risks = _risks("CVE-2024-0001")
    incident = fold(_scan({"CRITICAL": 1}), CRITICAL_AND_HIGH, complete=False, risks=risks, today=TODAY)
    assert incident.severity is Severity.CRITICAL
    assert incident.details["findings_fetched"] == "3 (first pages only)"


def test_every_cve_accepted_means_nothing_to_block() -> None:
    everything = _risks("CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003")
    incident = fold(_scan({"CRITICAL": 1}), CRITICAL_AND_HIGH, complete=True, risks=everything, today=TODAY)
    assert incident.severity is Severity.LOW
    assert decide(incident, RULES).rule.name == "image-low-or-clean"


class _Scans:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def findings(self, region: str, registry: str, repository: str, digest: str) -> tuple[list[Vulnerability], bool]:
        self.calls.append((region, registry, repository, digest))
        if self.fail:
            raise RuntimeError("AccessDeniedException")
        return list(CRITICAL_AND_HIGH), True


def test_the_responder_reads_the_list_except_in_plan_mode_and_survives_a_failed_read() -> None:
    scan = _scan({"CRITICAL": 1})
    scans = _Scans()
    responder = Responder(RULES, Settings(), scans=scans)
    assert responder.enrich(scan, Mode.PLAN) is scan
    assert not scans.calls
    assert responder.enrich(scan, Mode.DRY_RUN).details["cve"] == "CVE-2024-0001"
    assert scans.calls == [("us-east-1", "123456789012", scan.details["repository"], scan.details["digest"])]
    failed = Responder(RULES, Settings(), scans=_Scans(fail=True)).enrich(scan, Mode.LIVE)
    assert failed.severity is Severity.CRITICAL
    assert failed.details["findings_error"] == "AccessDeniedException"


def test_the_alert_lists_the_worst_cves_linked_and_what_was_accepted() -> None:
    incident = fold(_scan({"CRITICAL": 1}), [*CRITICAL_AND_HIGH, Vulnerability("CVE-1|<https://evil>", "HIGH")],
                    complete=True, risks=_risks("CVE-2024-0001"), today=TODAY)  # fmt: skip
    report = Responder(RULES, Settings()).handle(incident, Mode.PLAN).to_dict()
    text = json.dumps(slack_message.build(report))
    assert "<https://nvd.nist.gov/vuln/detail/CVE-2024-0002|CVE-2024-0002> `HIGH CVSS 7.5 zlib 1.2`" in text
    assert "CVE-1|&lt;https://evil&gt;" in text
    assert "<https://evil>" not in text
    assert "Accepted risks left out: `CVE-2024-0001" in text


def test_a_basic_scan_links_to_its_scan_results_only_for_a_well_formed_repository() -> None:
    scan = _scan({"CRITICAL": 1})
    report = Responder(RULES, Settings()).handle(scan, Mode.PLAN).to_dict()
    link = facts.console_link(report["incident"])
    assert link == (
        "https://us-east-1.console.aws.amazon.com/ecr/repositories/private/123456789012/my-repository-name"
        f"/_/image/{scan.details['digest']}/scan-results?region=us-east-1"
    )
    report["incident"]["details"]["repository"] = "x|<https://evil>"
    assert facts.console_link(report["incident"]) is None
