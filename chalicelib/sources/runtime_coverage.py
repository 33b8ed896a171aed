"""GuardDuty Runtime Monitoring coverage: the security agent of a cluster stopped reporting.

`GuardDuty Runtime Protection Unhealthy` is what GuardDuty sends when a resource's coverage turns
unhealthy. For EKS it is per cluster (`availableNodes` of `desiredNodes` report); which nodes went
quiet is found at run time: the nodes where no agent pod (DaemonSet `aws-guardduty-agent` in
`amazon-guardduty`) runs and is ready. Stopping the agent is what an attacker on a node does first.

The incident is one per cluster and hour, so a flapping agent is one incident with the ledger.
"""

from __future__ import annotations

import re
from typing import Any

from chalicelib.errors import EventError
from chalicelib.incident import Incident, ResourceKind, Severity

DETAIL_TYPE = "GuardDuty Runtime Protection Unhealthy"
TYPE = "RuntimeProtection:EKS/AgentUnhealthy"
AGENT_CHECK = "guardduty-agent"  # details["agent_check"]: targets are the nodes without a running agent
_ISSUE_LIMIT = 300
_HOUR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"{where} is {type(value).__name__}, not an object")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise EventError(f"{where} is missing or not text")
    return value


def to_incident(event: dict[str, Any], raw_ref: str | None = None) -> Incident:
    detail = _obj(event.get("detail"), "detail")
    resource = _obj(detail.get("resourceDetails"), "detail.resourceDetails")
    kind = resource.get("resourceType")
    if kind != "EKS":
        raise EventError(f"Runtime Monitoring coverage of a {kind!r} resource: only EKS clusters are handled")
    cluster_details = _obj(resource.get("eksClusterDetails"), "detail.resourceDetails.eksClusterDetails")
    cluster = _text(cluster_details.get("clusterName"), "detail.resourceDetails.eksClusterDetails.clusterName")
    account = _text(detail.get("resourceAccountId") or event.get("account"), "detail.resourceAccountId")
    region = _text(event.get("region"), "region")
    when = _HOUR.match(str(event.get("time") or detail.get("lastUpdatedAt") or ""))
    hour = "".join(when.groups()) if when else "unknown"
    issue = str(detail.get("issue") or "")[:_ISSUE_LIMIT]
    available, desired = cluster_details.get("availableNodes"), cluster_details.get("desiredNodes")
    reporting = f"{available} of {desired} nodes report" if available is not None and desired is not None else ""
    details = {"agent_check": AGENT_CHECK, "coverage": str(detail.get("currentStatus") or "UNHEALTHY")}
    if issue:
        details["issue"] = issue
    if reporting:
        details["reporting"] = reporting
    title = f"GuardDuty's runtime agent stopped reporting in cluster {cluster}"
    if reporting:
        title += f" ({reporting})"
    return Incident(
        id=f"runtime-coverage-{account}-{region}-{cluster}-{hour}",
        source="guardduty",
        type=TYPE,
        title=title,
        severity=Severity.MEDIUM,
        score=5.0,
        account=account,
        region=region,
        resource_kind=ResourceKind.NODE,
        cluster=cluster,
        event_id=event.get("id") if isinstance(event.get("id"), str) else None,
        raw_ref=raw_ref,
        details=details,
    )
