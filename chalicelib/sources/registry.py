"""Which parser handles which event: the one place that knows every source."""

from __future__ import annotations

from typing import Any

from chalicelib import identifiers
from chalicelib.errors import EventError, NotHandledError
from chalicelib.incident import Incident
from chalicelib.validation import check_depth


def to_incident(event: Any, raw_ref: str | None = None) -> Incident:
    if not isinstance(event, dict):
        raise EventError(f"expected an EventBridge event (a JSON object), got {type(event).__name__}")
    check_depth(event)
    source = event.get("source")
    if not isinstance(source, str):
        raise EventError(f"the event's source is {type(source).__name__}, not a string")
    identifiers.check_envelope(event)
    why = not_handled(source, event)
    if why:
        raise NotHandledError(why)
    # Each source's parser is imported when its first event comes: a function's cold start pays
    # for its own source's models only (its models and its code: the rest stay unloaded).
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


_GUARDDUTY_KINDS = {"GuardDuty Finding"}
_IMAGE = "AWS_ECR_CONTAINER_IMAGE"


def not_handled(source: str, event: dict[str, Any]) -> str | None:
    """Why a real event of a subscribed service is not one the responder acts on, in one line;
    None when it is one (its parser then checks every field)."""
    kind = event.get("detail-type")
    detail = event.get("detail")
    if source == "aws.guardduty" and isinstance(kind, str):
        from chalicelib.sources import runtime_coverage

        if kind == "GuardDuty Runtime Protection Healthy":
            return (f"{kind}: the cluster's runtime coverage is healthy again, nothing to respond to "
                    f"(its loss, {runtime_coverage.DETAIL_TYPE}, is handled)")  # fmt: skip
        if kind not in _GUARDDUTY_KINDS and kind != runtime_coverage.DETAIL_TYPE:
            return f"{kind}: a GuardDuty event that is not a finding; the responder handles GuardDuty Finding"
    if source == "aws.inspector2" and kind == "Inspector2 Finding" and isinstance(detail, dict):
        resources = detail.get("resources")
        types = sorted({str(r.get("type")) for r in resources if isinstance(r, dict)}) if isinstance(
            resources, list) else []  # fmt: skip
        if types and _IMAGE not in types:
            return (f"an Inspector finding about {', '.join(t[:40] for t in types[:3])}, not a container image: "
                    "the responder acts on findings about ECR images (blocking them in the clusters)")  # fmt: skip
    return None
