"""The CVE list of a scanned image, and what it changes about a counts-only scan incident.

An "ECR Image Scan" (or "Inspector2 Scan") event carries severity counts only. With the list
fetched (`executors/scan_findings.py`), accepted risks take out the CVEs someone chose to live
with, the incident's severity and score follow what is left, and alerts can name the worst CVEs.
Pure: a list in, an incident out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.incident import SCAN_BANDS as BAND
from chalicelib.incident import SCAN_SCORES as SCORE
from chalicelib.incident import SCAN_SEVERITIES as ORDER
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.interfaces import Vulnerability
from chalicelib.policy.matcher import risk_for

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import date

    from chalicelib.policy.model import AcceptedRisk

COUNTS_ONLY = {"ECR:ImageScan", "Inspector2:Scan"}
SHOWN = 5  # worst CVEs named in the incident and the alert


def wants_findings(incident: Incident) -> bool:
    """A counts-only scan with something at Medium or above: the list decides and explains."""
    return (
        incident.type in COUNTS_ONLY
        and incident.resource_kind is ResourceKind.IMAGE
        and incident.severity >= Severity.MEDIUM
        and not incident.sample
        and bool(incident.details.get("repository") and incident.details.get("digest"))
    )


def fold(
    incident: Incident,
    found: list[Vulnerability],
    *,
    complete: bool,
    risks: Iterable[AcceptedRisk],
    today: date,
) -> Incident:
    """The incident as the CVE list shows it: accepted CVEs out, severity and score from the rest.

    Only a complete list may lower the severity: a CVE not fetched could be the worst one.
    """
    repository = incident.details["repository"]
    risks = tuple(risks)
    accepted = [v for v in found if risk_for(v.id, repository, risks, today)]
    left = sorted((v for v in found if v not in accepted), key=lambda v: v.rank, reverse=True)
    details = dict(incident.details)
    details["findings_fetched"] = f"{len(found)}{'' if complete else ' (first pages only)'}"
    if accepted:
        details["accepted_cves"] = ", ".join(sorted({v.id for v in accepted}))
    if left:
        worst = left[0]
        details["cve"] = worst.id
        details["worst_cves"] = "\n".join(v.line() for v in left[:SHOWN])
        scores = [v.score for v in left if v.score is not None]
        if scores:
            details["inspector_score"] = f"{max(scores):g}"
        for key in ("fix_available", "exploit_available"):
            value = getattr(worst, key)
            if value:
                details[key] = value
    severity, score = incident.severity, incident.score
    if complete and accepted:
        severity = BAND.get(left[0].severity.upper(), Severity.LOW) if left else Severity.LOW
        score = (left[0].score or SCORE[severity]) if left else 0.0
        details["severity_counts"] = _counts(left) + " after accepted risks"
    return replace(incident, severity=severity, score=score, details=details)


def _counts(found: list[Vulnerability]) -> str:
    tally: dict[str, int] = {}
    for vulnerability in found:
        tally[vulnerability.severity.upper()] = tally.get(vulnerability.severity.upper(), 0) + 1
    return ", ".join(f"{level} {tally[level]}" for level in ORDER if tally.get(level)) or "no findings"
