"""EMF metrics (CloudWatch embedded metric format), written as log lines by Powertools.

Only inside Lambda (or with EKS_RESPONDER_METRICS=on): a local replay keeps its output clean.
"""

from __future__ import annotations

import os
from typing import Any

NAMESPACE = "EKSResponder"


def enabled() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) or os.environ.get("EKS_RESPONDER_METRICS") == "on"


def _count(name: str, dimensions: dict[str, str], value: float = 1) -> None:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension or "none")


def _seconds(name: str, dimensions: dict[str, str], value: float) -> None:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name=name, unit=MetricUnit.Seconds, value=value, namespace=NAMESPACE) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension or "none")


def report(result: dict[str, Any]) -> None:
    """Incidents by source and severity; actions by name and status; rejected events."""
    if not enabled():
        return
    if "error" in result:
        _count("RejectedEvents", {"service": "eks_responder"})
        return
    incident = result["incident"]
    _count("Incidents", {"source": incident["source"], "severity": incident["severity"]})
    if result.get("time_to_contain_seconds") is not None:
        _seconds("TimeToContain", {"source": incident["source"]}, float(result["time_to_contain_seconds"]))
    for action in result.get("actions", []):
        _count("Actions", {"action": action["action"], "status": action["status"]})


def notifier_failure(notifier: str) -> None:
    if enabled():
        _count("NotifierFailures", {"notifier": notifier})


def flow_delivery(summary: dict[str, Any]) -> None:
    """Flow-log records scanned, skipped and malformed per delivery, and damaged deliveries."""
    if not enabled():
        return
    for name, key in (("FlowRecords", "records"), ("FlowRecordsMalformed", "malformed"),
                      ("FlowRecordsNoData", "nodata_or_skipdata"), ("FlowFindings", "incidents")):  # fmt: skip
        _count(name, {"service": "eks_responder"}, float(summary.get(key) or 0))
    if summary.get("error"):
        _count("FlowDeliveriesDamaged", {"service": "eks_responder"})
