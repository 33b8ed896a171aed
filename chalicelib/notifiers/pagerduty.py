"""PagerDuty, through the Events API v2: an alert when an incident is contained, a step fails or a
step waits for a human; resolved when its containment is released. One alert per incident: the
`dedup_key` is the incident id, so every later report of it lands on the same alert."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.interfaces import IAMStatement
from chalicelib.notifiers import facts, http, secrets

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT = 1024  # the API's limits
DEDUP_LIMIT = 255
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
PAGED = (facts.CONTAINED, facts.FAILED, facts.AWAITING)
_RESPONDER_FAULT = ("internal error", "a passing fault")


def _dedup_key(found: facts.Facts, report: dict[str, Any]) -> str:
    # A delivery failure lands on its incident's alert; a failed event on one of its own.
    incident = found.incident_id or (str(report["incident_id"]) if report.get("delivery_failure") else None)
    return (incident or f"eks-responder-event-{found.event_id or 'no-id'}")[:DEDUP_LIMIT]


def event(report: dict[str, Any], routing_key: str) -> dict[str, Any] | None:
    """The Events API v2 body for a report, or None when the report pages nobody (a dry run, a
    report with no action, a malformed event: those are for the channels, not for on-call)."""
    found = facts.of(report)
    if found.kind == facts.RELEASE and found.status != facts.FAILED:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": _dedup_key(found, report)}
    if found.kind == facts.REJECTED and not str(report.get("error") or "").startswith(_RESPONDER_FAULT):
        return None
    if found.kind != facts.REJECTED and (found.status not in PAGED or found.dry_run):
        return None
    severity = SEVERITY.get(found.severity, "warning")
    if found.status == facts.FAILED and severity in ("warning", "info"):
        severity = "error"  # a containment step that failed needs a human whatever the finding's severity
    details: dict[str, Any] = dict(found.fields)
    details.update({"incident": found.incident_id, "rule": found.rule, "status": found.status,
                    "steps": [s.line() for s in found.steps], "timeline": found.timeline, "by": found.by})  # fmt: skip
    if found.kind == facts.REJECTED:
        details = {"event": found.event_id, "error": found.title}
    incident = report.get("incident") or {}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": _dedup_key(found, report),
        "client": "eks-responder",
        "payload": {
            "summary": found.summary()[:SUMMARY_LIMIT],
            "source": str(incident.get("cluster") or incident.get("account") or "eks-responder")[:255],
            "severity": severity,
            "component": found.kind,
            "class": str(incident.get("type") or "rejected-event")[:255],
            "custom_details": {k: v for k, v in details.items() if v not in (None, "", [])},
        },
    }
    if found.link:
        body["links"] = [{"href": found.link, "text": "Open in the AWS console"}]  # built by us, never from the event
    return body


class PagerDutyNotifier:
    name = "pagerduty"

    def __init__(self, routing_key: Callable[[], str], url: str = EVENTS_URL) -> None:
        self._routing_key = routing_key
        self._url = url

    def send(self, report: dict[str, Any]) -> None:
        body = event(report, "")
        if body is None:
            return
        body["routing_key"] = self._routing_key()  # read only when something is sent
        http.send(self._url, body, what="PagerDuty")


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    return secrets.permissions(stage_env.get("PAGERDUTY_ROUTING_KEY_SECRET"))
