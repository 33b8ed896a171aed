"""Which parser handles which event: the one place that knows every source."""

from __future__ import annotations

from typing import Any

from chalicelib.errors import EventError
from chalicelib.incident import Incident
from chalicelib.sources import ecr, guardduty, identifiers, kms, runtime_coverage, securityhub
from chalicelib.sources.envelope import check_depth


def to_incident(event: Any, raw_ref: str | None = None) -> Incident:
    if not isinstance(event, dict):
        raise EventError(f"expected an EventBridge event (a JSON object), got {type(event).__name__}")
    check_depth(event)
    source = event.get("source")
    if not isinstance(source, str):
        raise EventError(f"the event's source is {type(source).__name__}, not a string")
    identifiers.check_envelope(event)
    if source == "aws.guardduty" and event.get("detail-type") == runtime_coverage.DETAIL_TYPE:
        return identifiers.check(runtime_coverage.to_incident(event, raw_ref))
    if source == "aws.guardduty":
        return identifiers.check(guardduty.to_incident(event, raw_ref))
    if source == "aws.securityhub":
        return identifiers.check(securityhub.to_incident(event, raw_ref))
    if source == "aws.kms":
        return identifiers.check(kms.to_incident(event, raw_ref))
    if source in {"aws.ecr", "aws.inspector2"}:
        return identifiers.check(ecr.to_incident(event, raw_ref))
    raise EventError(f"unsupported event source {source!r} (detail-type {event.get('detail-type')!r})")
