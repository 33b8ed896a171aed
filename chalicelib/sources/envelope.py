"""Recognise what a piece of JSON is, and wrap bare findings as EventBridge would."""

from __future__ import annotations

import re
from typing import Any

from chalicelib.errors import EventError

_FIRST_UPPER = re.compile(r"^[A-Z]")


def camelize_keys(value: Any) -> Any:
    """Turn `aws guardduty get-findings` PascalCase keys into the camelCase of EventBridge."""
    if isinstance(value, dict):
        return {
            (k[:1].lower() + k[1:] if isinstance(k, str) and _FIRST_UPPER.match(k) else k): camelize_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [camelize_keys(v) for v in value]
    return value


def wrap_finding(finding: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge "GuardDuty Finding" event around a bare finding."""
    finding_id = finding.get("id")
    return {
        "version": "0",
        "id": f"replay-{finding_id}" if isinstance(finding_id, str) else "replay",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": finding.get("accountId", ""),
        "time": finding.get("updatedAt", ""),
        "region": finding.get("region", ""),
        "resources": [],
        "detail": finding,
    }


def wrap_cloudtrail(record: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event around a bare CloudTrail record: "AWS API Call via CloudTrail", or
    "AWS Service Event via CloudTrail" for what a service did on its own (`eventType: AwsServiceEvent`)."""
    service = str(record.get("eventSource", "")).split(".", 1)[0]
    event_id = record.get("eventID")
    kind = (
        "AWS Service Event via CloudTrail"
        if record.get("eventType") == "AwsServiceEvent"
        else "AWS API Call via CloudTrail"
    )
    return {
        "version": "0",
        "id": f"replay-{event_id}" if isinstance(event_id, str) else "replay",
        "detail-type": kind,
        "source": f"aws.{service}",
        "account": record.get("recipientAccountId", ""),
        "time": record.get("eventTime", ""),
        "region": record.get("awsRegion", ""),
        "resources": [],
        "detail": record,
    }


def _is_bare_finding(doc: dict[str, Any]) -> bool:
    return "schemaVersion" in doc and "type" in doc and "resource" in doc


def split_document(doc: Any) -> list[dict[str, Any]]:
    """Every EventBridge event in a JSON document.

    Accepts a whole EventBridge event, a bare GuardDuty finding, or the output of
    `aws guardduty get-findings` (one event per finding).
    """
    if not isinstance(doc, dict):
        raise EventError(f"expected a JSON object, got {type(doc).__name__}")
    if "detail-type" in doc and "detail" in doc:
        return [doc]
    if isinstance(doc.get("Findings"), list):
        findings = doc["Findings"]
        if not findings:
            raise EventError("get-findings output holds no findings")
        bad = [i for i, f in enumerate(findings) if not isinstance(f, dict)]
        if bad:
            raise EventError(f"get-findings output: finding #{bad[0]} is not an object")
        return [wrap_finding(camelize_keys(f)) for f in findings]
    if _is_bare_finding(doc):
        return [wrap_finding(doc)]
    if "eventSource" in doc and "eventName" in doc:
        return [wrap_cloudtrail(doc)]
    if "SchemaVersion" in doc and "Type" in doc and "Resource" in doc:
        return [wrap_finding(camelize_keys(doc))]
    keys = ", ".join(sorted(map(str, doc))[:6]) or "none"
    raise EventError(
        "not an EventBridge event, a GuardDuty finding, get-findings output or a CloudTrail record "
        f"(top-level keys: {keys})"
    )
