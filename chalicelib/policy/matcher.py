"""Pick the rule for an incident. Pure: it decides, it never acts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase

import msgspec

from chalicelib.incident import Incident, Severity
from chalicelib.policy.model import AcceptedRisk, Match, Rule, RulesFile


class Decision(msgspec.Struct, frozen=True):
    rule: Rule | None
    reason: str | None  # why nothing is done, when nothing is


def _any(patterns: tuple[str, ...], value: str | None) -> bool:
    return value is not None and any(fnmatchcase(value, p) for p in patterns)


def matches(match: Match, incident: Incident) -> bool:  # noqa: PLR0911 - one check per field reads best
    if match.sources and incident.source not in match.sources:
        return False
    if match.finding_types and not _any(match.finding_types, incident.type):
        return False
    if _any(match.exclude_finding_types, incident.type):
        return False
    if match.tactics and incident.tactic not in match.tactics:
        return False
    if match.min_severity and incident.severity < Severity.parse(match.min_severity):
        return False
    if match.max_severity and incident.severity > Severity.parse(match.max_severity):
        return False
    if match.resource_kinds and incident.resource_kind not in match.resource_kinds:
        return False
    if match.privileged is not None and incident.privileged != match.privileged:
        return False
    if match.failed is not None and incident.failed != match.failed:
        return False
    if match.caller_kinds and not {p.kind for p in incident.principals} & set(match.caller_kinds):
        return False
    return _scope_matches(match, incident) and _image_matches(match, incident)


def _scope_matches(match: Match, incident: Incident) -> bool:
    """Where the incident happened: account, cluster, namespace."""
    if match.accounts and not _any(match.accounts, incident.account):
        return False
    if _any(match.exclude_accounts, incident.account):
        return False
    if match.clusters and not _any(match.clusters, incident.cluster):
        return False
    if _any(match.exclude_clusters, incident.cluster):
        return False
    if match.namespaces and not _any(match.namespaces, incident.namespace):
        return False
    return not _any(match.exclude_namespaces, incident.namespace)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _image_named(match: Match, repository: str | None, tags: list[str]) -> bool:
    """Repository and tag globs; an untagged image never matches `image_tags`."""
    if match.repositories and not _any(match.repositories, repository):
        return False
    if _any(match.exclude_repositories, repository):
        return False
    if match.image_tags and not any(_any(match.image_tags, tag) for tag in tags):
        return False
    return not any(_any(match.exclude_image_tags, tag) for tag in tags)


def _image_matches(match: Match, incident: Incident) -> bool:
    """Scan conditions read the incident's details: a missing score never reaches a floor, a missing yes/no is no."""
    details = incident.details
    if not _image_named(match, details.get("repository"), [t for t in details.get("tags", "").split(",") if t]):
        return False
    for wanted, key in ((match.exploit_available, "exploit_available"), (match.fix_available, "fix_available")):
        if wanted is not None and (details.get(key) == "yes") != wanted:
            return False
    for floor, key in ((match.min_cvss, "inspector_score"), (match.min_epss, "epss")):
        value = _number(details.get(key))
        if floor is not None and (value is None or value < floor):
            return False
    return True


def accepted(incident: Incident, rules: RulesFile, today: date) -> AcceptedRisk | None:
    """The unexpired accepted risk covering this incident's CVE in its repository, if any."""
    cve, repository = incident.details.get("cve"), incident.details.get("repository")
    return risk_for(cve, repository, rules.accepted_risks, today) if cve and repository else None


def risk_for(cve: str, repository: str, risks: Iterable[AcceptedRisk], today: date) -> AcceptedRisk | None:
    return next((r for r in risks if r.cve == cve and today <= r.expires and _any(r.repositories, repository)), None)


def decide(incident: Incident, rules: RulesFile, today: date | None = None) -> Decision:
    """An accepted risk ends it; otherwise the first rule that matches wins, read top to bottom."""
    risk = accepted(incident, rules, today or datetime.now(UTC).date())
    if risk is not None:
        return Decision(None, f"{risk.cve} is an accepted risk in {incident.details['repository']} until "
                              f"{risk.expires.isoformat()}: {risk.reason}")  # fmt: skip
    for rule in rules.rules:
        if matches(rule.match, incident):
            return Decision(rule, None if rule.actions else rule.reason)
    return Decision(None, "no rule matches this finding")
