"""From a raw event to a report, with errors caught, logged with the event id and returned.

A malformed or unknown event never raises out of a handler: it would be retried for hours
and block nothing but itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from chalicelib import audit
from chalicelib.errors import EventError
from chalicelib.sources import registry

if TYPE_CHECKING:
    from chalicelib.responder import Mode, Responder

logger = logging.getLogger("eks_responder")


def event_id(event: Any) -> str | None:
    value = event.get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def handle(event: Any, responder: Responder, mode: Mode, raw_ref: str | None = None) -> dict[str, Any]:
    eid = event_id(event)
    try:
        incident = registry.to_incident(event, raw_ref)
    except EventError as exc:
        logger.error("rejected event", extra={"event_id": eid, "error": str(exc), "event_ref": raw_ref})
        return {"event_id": eid, "error": str(exc)}
    try:
        report = responder.handle(incident, mode)
    except Exception as exc:  # a bug, not bad input: logged with the event, never retried in a loop
        logger.exception("responder failed", extra={"event_id": eid, "incident_id": incident.id})
        return {"event_id": eid, "error": f"internal error while responding to {incident.id}: {exc}"}
    audit.record(report, eid)
    return {"event_id": eid, **report.to_dict()}
