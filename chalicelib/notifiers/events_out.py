"""The responder's own events on an EventBridge bus: every incident, every step's outcome, every
approval run and every release, so anything can subscribe (a SIEM, a ticket flow, a chat bot).

`source` is `eks-responder`; the detail's schema is `docs/schemas/event-detail.schema.json`
(version 1). The detail holds values, never markup: a subscriber that renders them escapes them.
The responder's own rules never match this source, so its events can never feed back into it.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.interfaces import IAMStatement
from chalicelib.notifiers import facts

SOURCE = "eks-responder"
SCHEMA_VERSION = 1
STEP = "step"
DETAIL_TYPES = {
    facts.INCIDENT: "EKS Responder Incident",
    facts.APPROVAL: "EKS Responder Approval",
    facts.REJECTION: "EKS Responder Rejection",
    facts.RELEASE: "EKS Responder Release",
    facts.EXPIRY: "EKS Responder Approval Expired",
    facts.CAPTURE: "EKS Responder Memory Capture",
    facts.REJECTED: "EKS Responder Rejected Event",
    facts.DELIVERY: "EKS Responder Delivery Failure",
    STEP: "EKS Responder Step",
}
ENTRIES_PER_CALL = 10  # PutEvents
ENTRY_LIMIT = 256 * 1024


def _incident(report: dict[str, Any]) -> dict[str, Any] | None:
    incident = report.get("incident")
    if not isinstance(incident, dict):
        return None
    keys = ("id", "source", "type", "title", "severity", "account", "region", "cluster", "namespace")
    found: dict[str, Any] = {k: (str(incident[k])[:1000] if incident.get(k) is not None else None) for k in keys}
    for key in ("pods", "nodes", "instance_ids", "images", "key_arns", "remote_ips"):
        found[key] = [str(v)[:1000] for v in (incident.get(key) or [])[:50]]
    found["principals"] = [str(p.get("arn") or p.get("name") or "")[:1000]
                           for p in (incident.get("principals") or [])[:50] if isinstance(p, dict)]  # fmt: skip
    return found


def detail(report: dict[str, Any]) -> dict[str, Any]:
    """The detail of a report's event."""
    found = facts.of(report)
    took = report.get("time_to_contain_seconds")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": found.kind,
        "status": found.status,
        "summary": found.summary(),
        "incident": _incident(report),
        "event_id": found.event_id,
        "rule": found.rule,
        "mode": str(report["mode"]) if report.get("mode") else None,
        "dry_run": found.dry_run,
        "by": found.by,
        "steps": [s.to_dict() for s in found.steps],
        "facts": [{"label": label, "value": value} for label, value in found.fields],
        "link": found.link,
        "timeline": found.timeline or None,
        "error": str(report["error"])[:2000] if report.get("error") else None,
        "time_to_contain_seconds": took if isinstance(took, int | float) and not isinstance(took, bool) else None,
    }


def step_details(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One detail per step outcome, naming the report it was part of."""
    found = facts.of(report)
    incident = _incident(report)
    return [{"schema_version": SCHEMA_VERSION, "kind": STEP, "part_of": found.kind, "incident": incident,
             "mode": str(report["mode"]) if report.get("mode") else None, "dry_run": found.dry_run,
             "by": found.by, "step": step.to_dict()} for step in found.steps]  # fmt: skip


def entries(report: dict[str, Any], bus: str) -> list[dict[str, Any]]:
    """The PutEvents entries of a report: its own event, then one per step."""
    from chalicelib.notifiers.writeback import finding

    # The finding's ARN only when it has its documented syntax and names the incident's own
    # account and region: an entry with a malformed resource is refused by PutEvents whole.
    named = finding(report.get("incident") or {})
    resources = [named[0]] if named else []
    main = detail(report)
    found = [(DETAIL_TYPES[main["kind"]], main), *((DETAIL_TYPES[STEP], d) for d in step_details(report))]
    out = []
    for detail_type, body in found:
        text = json.dumps(body, separators=(",", ":"), default=str)
        if len(text.encode()) > ENTRY_LIMIT - 1024:
            text = json.dumps({**body, "facts": [], "steps": [], "truncated": True}, separators=(",", ":"), default=str)
        out.append({"Source": SOURCE, "DetailType": detail_type, "Detail": text, "EventBusName": bus,
                    "Resources": resources})  # fmt: skip
    return out


class EventBusNotifier:
    name = "eventbridge"

    def __init__(self, events_client: Any, bus: str) -> None:
        self._events = events_client
        self._bus = bus

    def send(self, report: dict[str, Any]) -> None:
        pending = entries(report, self._bus)
        for start in range(0, len(pending), ENTRIES_PER_CALL):
            batch = pending[start : start + ENTRIES_PER_CALL]
            answer = self._events.put_events(Entries=batch)
            if answer.get("FailedEntryCount"):
                codes = sorted({str(e.get("ErrorCode")) for e in answer.get("Entries", []) if e.get("ErrorCode")})
                raise RuntimeError(f"EventBridge refused {answer['FailedEntryCount']} event(s): {', '.join(codes)}")


def bus_arn(bus: str) -> str:
    return bus if bus.startswith("arn:") else f"arn:aws:events:{{region}}:{{account}}:event-bus/{bus}"


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    bus = stage_env.get("EVENT_BUS_NAME")
    return [IAMStatement(("events:PutEvents",), (bus_arn(bus),))] if bus else []
