"""Write-back: the finding itself says what the responder did.

When an incident is acted on (a step changed something, failed, or waits for a human) its finding
in Security Hub goes to workflow status NOTIFIED with a note naming the incident and its timeline;
when its containment is released, RESOLVED. Optionally (`ARCHIVE_GUARDDUTY_FINDINGS`), the
GuardDuty finding is archived once resolved. Per source (`WRITEBACK_SOURCES`): GuardDuty findings
(native or their Security Hub copies) and Inspector findings are in Security Hub; ECR basic scans,
CloudTrail and flow logs are not.

The finding is named by its ARN as the source read it, and only when that ARN has its documented
syntax and names the incident's own account and region: an event cannot aim the write at another
account's finding. Calls are made with the responder's own credentials, in the finding's region:
the Security Hub and GuardDuty administrator account updates its members' findings (a member's
GuardDuty cannot archive its own).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.interfaces import IAMStatement
from chalicelib.notifiers import facts

NOTE_LIMIT = 512  # Security Hub: Note.Text
UPDATED_BY = "eks-responder"

_GUARDDUTY = re.compile(
    r"^arn:(aws[a-z-]*):guardduty:([a-z]{2}(?:-gov)?-[a-z]+-\d):(\d{12}):detector/([0-9a-f]{32})/finding/([0-9a-f]{32})$"
)
_INSPECTOR = re.compile(r"^arn:(aws[a-z-]*):inspector2:([a-z]{2}(?:-gov)?-[a-z]+-\d):(\d{12}):finding/([0-9a-f]{32})$")
_DETECTOR = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Call:
    service: str
    region: str
    operation: str  # the botocore operation name
    params: dict[str, Any]


def finding(incident: dict[str, Any]) -> tuple[str, str, str, str | None] | None:
    """(Security Hub id, product ARN, region, GuardDuty finding id or None), when the incident names
    a finding of its own account and region in the documented syntax; else None."""
    arn = str(incident.get("finding_arn") or "")
    account, region = str(incident.get("account") or ""), str(incident.get("region") or "")
    if (found := _GUARDDUTY.match(arn)) and found.group(2, 3) == (region, account):
        product = f"arn:{found.group(1)}:securityhub:{region}::product/aws/guardduty"
        return arn, product, region, found.group(5)
    if (found := _INSPECTOR.match(arn)) and found.group(2, 3) == (region, account):
        return arn, f"arn:{found.group(1)}:securityhub:{region}::product/aws/inspector", region, None
    return None


def note(found: facts.Facts) -> str:
    text = f"eks-responder incident {found.incident_id}: {found.summary()}. Timeline: {found.timeline}"
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"


def calls(report: dict[str, Any], sources: tuple[str, ...], *, archive: bool) -> list[Call]:
    """What a report writes back (pure): nothing for a dry run, a report without action, a source
    not configured, or a finding the incident does not own."""
    found = facts.of(report)
    incident = report.get("incident") or {}
    if found.dry_run or found.incident_id is None or str(incident.get("source")) not in sources:
        return []
    named = finding(incident)
    if named is None:
        return []
    arn, product, region, guardduty_id = named
    if found.kind == facts.RELEASE and found.status == facts.RELEASED:
        status = "RESOLVED"
    elif found.kind in (facts.INCIDENT, facts.APPROVAL, facts.CAPTURE) and found.status in (
        facts.CONTAINED, facts.FAILED, facts.AWAITING):  # fmt: skip
        status = "NOTIFIED"
    else:
        return []
    params = {"FindingIdentifiers": [{"Id": arn, "ProductArn": product}], "Workflow": {"Status": status},
              "Note": {"Text": note(found), "UpdatedBy": UPDATED_BY}}  # fmt: skip
    found_calls = [Call("securityhub", region, "BatchUpdateFindings", params)]
    if archive and status == "RESOLVED" and guardduty_id:
        found_calls.append(Call("guardduty", region, "ArchiveFindings", {"FindingIds": [guardduty_id]}))
    return found_calls


class FindingWriteBack:
    name = "securityhub"

    def __init__(self, client: Callable[[str, str], Any], sources: tuple[str, ...], *, archive: bool) -> None:
        self._client = client  # (service, region) -> boto3 client
        self._sources = sources
        self._archive = archive

    def send(self, report: dict[str, Any]) -> None:
        for call in calls(report, self._sources, archive=self._archive):
            client = self._client(call.service, call.region)
            if call.operation == "ArchiveFindings":
                self._archive_finding(client, call)
                continue
            answer = client.batch_update_findings(**call.params)
            refused = answer.get("UnprocessedFindings") or []
            if refused:
                why = "; ".join(f"{u.get('ErrorCode')}: {u.get('ErrorMessage')}" for u in refused)[:300]
                raise RuntimeError(f"Security Hub did not update the finding: {why}")

    @staticmethod
    def _archive_finding(client: Any, call: Call) -> None:
        # The administrator's own detector in the region: it archives its members' findings too.
        detectors = [d for d in client.list_detectors().get("DetectorIds") or [] if _DETECTOR.match(str(d))]
        if not detectors:
            raise RuntimeError(f"no GuardDuty detector in {call.region}: the finding was not archived")
        client.archive_findings(DetectorId=detectors[0], **call.params)


# BatchUpdateFindings is scoped to the responder's own hub (every region); GuardDuty authorises
# ArchiveFindings and ListDetectors on "*" only (the analyser's action data), so the code names
# only its own detector and a finding of the incident's own account.
HUB_IAM = IAMStatement(("securityhub:BatchUpdateFindings",), ("arn:aws:securityhub:*:{account}:hub/default",))
ARCHIVE_IAM = IAMStatement(("guardduty:ArchiveFindings", "guardduty:ListDetectors"))


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    from chalicelib.settings import Settings

    current = Settings.from_env(stage_env)
    if not current.writeback_sources:
        return []
    wanted = [HUB_IAM]
    if current.archive_guardduty_findings and {"guardduty", "securityhub"} & set(current.writeback_sources):
        wanted.append(ARCHIVE_IAM)
    return wanted
