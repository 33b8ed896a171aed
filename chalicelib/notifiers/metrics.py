"""EMF metrics (CloudWatch embedded metric format), written as log lines by Powertools.

Only inside Lambda (or with EKS_RESPONDER_METRICS=on): a local replay keeps its output clean.
The names and dimensions below are the only ones emitted; the deployed dashboard and alarms
(deploy/dashboard.py) are built from them, so the two cannot drift apart.
"""

from __future__ import annotations

import os
from typing import Any

NAMESPACE = "EKSResponder"
SERVICE = {"service": "eks_responder"}  # the fixed dimension of the totals alarms watch

# metric name -> (unit, dimension names)
INCIDENTS = "Incidents"  # by source and severity
OUTCOMES = "Outcomes"  # incidents by outcome: acted, reported, failed
ACTIONS = "Actions"  # by action and status (awaiting-approval: waiting for a human)
FAILED_ACTIONS = "FailedActions"  # the total, for the alarm
TIME_TO_CONTAIN = "TimeToContain"  # seconds, by source
DUPLICATES = "Duplicates"  # copies and redeliveries of an incident already handled, not acted on again
REJECTED_EVENTS = "RejectedEvents"  # events not understood: logged, told, never acted on
NOTIFIER_FAILURES = "NotifierFailures"  # by notifier
FLOW_RECORDS = "FlowRecords"
FLOW_RECORDS_MALFORMED = "FlowRecordsMalformed"
FLOW_RECORDS_NO_DATA = "FlowRecordsNoData"
FLOW_FINDINGS = "FlowFindings"
FLOW_DELIVERIES_DAMAGED = "FlowDeliveriesDamaged"

EMITTED: dict[str, tuple[str, tuple[str, ...]]] = {
    INCIDENTS: ("Count", ("source", "severity")),
    OUTCOMES: ("Count", ("outcome",)),
    ACTIONS: ("Count", ("action", "status")),
    FAILED_ACTIONS: ("Count", ("service",)),
    TIME_TO_CONTAIN: ("Seconds", ("source",)),
    DUPLICATES: ("Count", ("service",)),
    REJECTED_EVENTS: ("Count", ("service",)),
    NOTIFIER_FAILURES: ("Count", ("notifier",)),
    FLOW_RECORDS: ("Count", ("service",)),
    FLOW_RECORDS_MALFORMED: ("Count", ("service",)),
    FLOW_RECORDS_NO_DATA: ("Count", ("service",)),
    FLOW_FINDINGS: ("Count", ("service",)),
    FLOW_DELIVERIES_DAMAGED: ("Count", ("service",)),
}


def enabled() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) or os.environ.get("EKS_RESPONDER_METRICS") == "on"


def _emit(name: str, dimensions: dict[str, str], value: float = 1) -> None:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    unit, names = EMITTED[name]
    assert tuple(dimensions) == names, (name, tuple(dimensions))  # what the dashboard queries
    with single_metric(name=name, unit=MetricUnit(unit), value=value, namespace=NAMESPACE) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension or "none")


def outcome(result: dict[str, Any]) -> str:
    statuses = {a["status"] for a in result.get("actions", [])}
    if "failed" in statuses:
        return "failed"
    return "acted" if "succeeded" in statuses and result.get("mode") == "live" else "reported"


def report(result: dict[str, Any]) -> None:
    """Incidents by source and severity and by outcome; actions by name and status; time to
    contain; rejected events and duplicates."""
    if not enabled():
        return
    if "error" in result:
        _emit(REJECTED_EVENTS, SERVICE)
        return
    if result.get("duplicate"):
        _emit(DUPLICATES, SERVICE)
        return
    incident = result["incident"]
    _emit(INCIDENTS, {"source": incident["source"], "severity": incident["severity"]})
    _emit(OUTCOMES, {"outcome": outcome(result)})
    if result.get("time_to_contain_seconds") is not None:
        _emit(TIME_TO_CONTAIN, {"source": incident["source"]}, float(result["time_to_contain_seconds"]))
    failed = 0
    for action in result.get("actions", []):
        _emit(ACTIONS, {"action": action["action"], "status": action["status"]})
        failed += action["status"] == "failed"
    if failed:
        _emit(FAILED_ACTIONS, SERVICE, float(failed))


def notifier_failure(notifier: str) -> None:
    if enabled():
        _emit(NOTIFIER_FAILURES, {"notifier": notifier})


def flow_delivery(summary: dict[str, Any]) -> None:
    """Flow-log records scanned, skipped and malformed per delivery, and damaged deliveries."""
    if not enabled():
        return
    for name, key in ((FLOW_RECORDS, "records"), (FLOW_RECORDS_MALFORMED, "malformed"),
                      (FLOW_RECORDS_NO_DATA, "nodata_or_skipdata"), (FLOW_FINDINGS, "incidents")):  # fmt: skip
        _emit(name, SERVICE, float(summary.get(key) or 0))
    if summary.get("error"):
        _emit(FLOW_DELIVERIES_DAMAGED, SERVICE)
