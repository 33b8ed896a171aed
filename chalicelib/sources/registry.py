"""Which parser handles which event: the one place that knows every source."""

from __future__ import annotations

from typing import Any

from chalicelib.errors import EventError
from chalicelib.incident import Incident
from chalicelib.sources import identifiers
from chalicelib.sources.envelope import check_depth


def to_incident(event: Any, raw_ref: str | None = None) -> Incident:
    if not isinstance(event, dict):
        raise EventError(f"expected an EventBridge event (a JSON object), got {type(event).__name__}")
    check_depth(event)
    source = event.get("source")
    if not isinstance(source, str):
        raise EventError(f"the event's source is {type(source).__name__}, not a string")
    identifiers.check_envelope(event)
    # Each source's parser is imported when its first event comes: a function's cold start pays
    # for its own source's models only (building pydantic models is most of an import here).
    if source == "aws.guardduty":
        from chalicelib.sources import guardduty, runtime_coverage

        if event.get("detail-type") == runtime_coverage.DETAIL_TYPE:
            return identifiers.check(runtime_coverage.to_incident(event, raw_ref))
        return identifiers.check(guardduty.to_incident(event, raw_ref))
    if source == "aws.securityhub":
        from chalicelib.sources import securityhub

        return identifiers.check(securityhub.to_incident(event, raw_ref))
    if source == "aws.kms":
        from chalicelib.sources import kms

        return identifiers.check(kms.to_incident(event, raw_ref))
    if source in {"aws.ecr", "aws.inspector2"}:
        from chalicelib.sources import ecr

        return identifiers.check(ecr.to_incident(event, raw_ref))
    raise EventError(f"unsupported event source {source!r} (detail-type {event.get('detail-type')!r})")
