"""Reads a GuardDuty finding as GuardDuty itself publishes it to EventBridge.

boto3 hands back the API's member names (`EksClusterDetails`); the EventBridge event carries
the wire names (`eksClusterDetails`). The service model maps one to the other exactly, so the
finding read here is parsed by the same code as a native event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.interfaces import IAMStatement

# A read that IAM authorises on "*" only (the analyser's action data): GetFindings cannot be scoped to a detector.
IAM: tuple[IAMStatement, ...] = (IAMStatement(("guardduty:GetFindings",)),)


def wire_names(value: Any, shape: Any) -> Any:
    """`value` as the wire spells it: each structure member under its serialization name."""
    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(value, dict):
        found = {}
        for name, member in shape.members.items():
            if name in value:
                found[member.serialization.get("name", name)] = wire_names(value[name], member)
        return found
    if kind == "list" and isinstance(value, list):
        return [wire_names(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: wire_names(v, shape.value) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class FindingReader:
    """GuardDuty findings of one account (the session's), per region."""

    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session

    def read(self, region: str, detector: str, finding_id: str) -> dict[str, Any] | None:
        """The finding as an EventBridge `GuardDuty Finding` event's `detail`; None when it is gone."""
        client = self._session().client("guardduty", region_name=region)
        answer = client.get_findings(DetectorId=detector, FindingIds=[finding_id])
        findings = answer.get("Findings") or []
        if not findings:
            return None
        shape = client.meta.service_model.operation_model("GetFindings").output_shape.members["Findings"].member
        found: dict[str, Any] = wire_names(findings[0], shape)
        return found
