"""SNS: the incident as structured JSON, with attributes subscribers can filter on."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.interfaces import IAMStatement

SUBJECT_LIMIT = 100  # SNS: printable ASCII, no line breaks, at most 100 characters


def changed_nothing(report: dict[str, Any]) -> bool:
    """Planned, dry-run, or a GuardDuty sample finding: nothing was changed."""
    return report.get("mode") != "live" or bool((report.get("incident") or {}).get("sample"))


def subject(report: dict[str, Any]) -> str:
    if report.get("delivery_failure"):
        return f"[DELIVERY FAILED] {report.get('incident_id') or ''}"[:SUBJECT_LIMIT]
    if "error" in report:
        return f"[REJECTED EVENT] {report.get('event_id') or ''}"[:SUBJECT_LIMIT]
    incident = report["incident"]
    dry = "[DRY-RUN] " if changed_nothing(report) else ""
    text = f"{dry}[{str(incident.get('severity', '')).upper()}] {incident['type']} {incident.get('cluster') or ''}"
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text).strip()  # noqa: PLR2004
    return clean[:SUBJECT_LIMIT]


def attributes(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    incident = report.get("incident") or {"severity": "unknown", "source": "unknown"}
    values = {
        "severity": str(incident.get("severity", "")),
        "source": str(incident.get("source", "")),
        "cluster": str(incident.get("cluster") or "none"),
        "account": str(incident.get("account") or "none"),  # organisations route per member account
        "dry_run": "true" if changed_nothing(report) else "false",
    }
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


class SNSNotifier:
    name = "sns"

    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic = topic_arn

    def send(self, report: dict[str, Any]) -> None:
        self._sns.publish(
            TopicArn=self._topic,
            Subject=subject(report),
            Message=json.dumps(report, default=str),
            MessageAttributes=attributes(report),
        )


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    topic = stage_env.get("SNS_TOPIC_ARN")
    return [IAMStatement(("sns:Publish",), (topic,))] if topic else []
