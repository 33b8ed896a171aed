"""A memory capture that ended: its manifest written and its outcome told.

`ec2:capture-memory` sends the command and returns; SSM's `EC2 Command Invocation Status-change
Notification` for that command is the follow-up event. A follow-up event rather than a Step
Functions state machine: SSM already emits it when the command ends (however long AVML runs, up
to the command's timeout), it costs nothing while the capture runs, and it needs no polling loop,
no extra state and no more permissions than reading the responder's own record in the evidence
bucket.

The event names a command; only a command whose record the responder wrote
(`<prefix>/captures/<command>.json`, in its own bucket) is reported, and only when the event's
node and account are the record's. Everything else is logged with its id and dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.actions.ec2 import memory_document
from chalicelib.errors import EventError
from chalicelib.interfaces import ActionResult, EvidenceSink, Status
from chalicelib.notifiers.base import Notifier

logger = logging.getLogger("eks_responder")

DETAIL_TYPE = "EC2 Command Invocation Status-change Notification"
# Statuses with which a command invocation ends; the others (Pending, InProgress, Delayed) are not subscribed.
ENDED = ("Success", "Failed", "Cancelled", "TimedOut", "DeliveryTimedOut", "ExecutionTimedOut", "Undeliverable",
         "Terminated", "InvalidPlatform", "AccessDenied")  # fmt: skip
_COMMAND = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *]([A-Za-z0-9_.-]{1,64})$")
RECORD_LIMIT = 256 * 1024
SUMS_LIMIT = 4096


@dataclass(frozen=True)
class Ended:
    """What the event says, checked: one command on one node, and how it ended."""

    event_id: str
    command: str
    instance: str
    account: str
    status: str
    document: str


class NotOursError(ValueError):
    """An event this function does not report on (the reason is logged with the event id)."""


def parse(event: dict[str, Any], document: str) -> Ended:
    event_id = str(event.get("id") or "")[:64]
    detail = event.get("detail")
    if event.get("source") != "aws.ssm" or event.get("detail-type") != DETAIL_TYPE or not isinstance(detail, dict):
        raise NotOursError("not an SSM command invocation status change")
    values = {k: detail.get(k) for k in ("command-id", "instance-id", "status", "document-name")}
    if not all(isinstance(v, str) for v in values.values()):
        raise NotOursError("command-id, instance-id, status and document-name must be strings")
    if values["document-name"] != document:
        raise NotOursError(f"document {str(values['document-name'])[:128]!r} is not {document}")
    command, instance, status = str(values["command-id"]), str(values["instance-id"]), str(values["status"])
    account = str(event.get("account") or "")
    if not _COMMAND.match(command) or not _INSTANCE.match(instance) or not _ACCOUNT.match(account):
        raise NotOursError("command id, instance id or account is malformed")
    if status not in ENDED:
        raise NotOursError(f"status {status[:32]!r} is not an end")
    return Ended(event_id, command, instance, account, status, document)


def sums(text: bytes) -> dict[str, str]:
    """`sha256sum` output, file name -> hash (anything else in it is ignored)."""
    found = {}
    for line in text.decode("utf-8", "replace").splitlines():
        matched = _SUM_LINE.match(line.strip())
        if matched:
            found[matched.group(2)] = matched.group(1)
    return found


def finish(ended: Ended, evidence: EvidenceSink) -> tuple[dict[str, Any], ActionResult]:
    """The record of the command, and the step result that tells how it ended (the manifest
    written for a capture that succeeded)."""
    raw = evidence.read(f"{memory_document.CAPTURES_KEY}/{ended.command}.json", RECORD_LIMIT)
    if raw is None:
        raise NotOursError(f"no record of command {ended.command}: not sent by this responder")
    record: dict[str, Any] = json.loads(raw)
    incident = record.get("incident") or {}
    if record.get("instance") != ended.instance or incident.get("account") != ended.account:
        raise NotOursError(f"command {ended.command} was sent to {record.get('instance')} in {incident.get('account')}")
    base = str(record["evidence"])
    where = evidence.location(base)
    if ended.status != "Success":
        detail = (f"instance {ended.instance}: memory capture {ended.status} (SSM command {ended.command}); "
                  f"whatever it uploaded is in {where}/ — see the command's output in SSM")  # fmt: skip
        return record, ActionResult("ec2:capture-memory", ended.instance, Status.FAILED, detail)
    reported = sums(evidence.read(f"{base}/SHA256SUMS", SUMS_LIMIT) or b"")
    files = {name: {"sha256": reported.get(name), "location": evidence.location(f"{base}/{name}"),
                    "present": evidence.exists(f"{base}/{name}")}
             for name in memory_document.UPLOADS.values()}  # fmt: skip
    missing = [name for name, about in files.items() if not about["present"]]
    unhashed = [name for name in ("memory.lime", "volatile.txt") if not reported.get(name)]
    manifest_key = f"{base}/MANIFEST.json"
    if not evidence.exists(manifest_key):  # written once: a retried event finds it there
        manifest = {"command_id": ended.command, "document": ended.document, "instance": ended.instance,
                    "status": ended.status, "started_at": record.get("started_at"), "files": files,
                    "incident": incident.get("id"), "hashes_from": "the node (sha256sum before upload)"}  # fmt: skip
        evidence.put(manifest_key, json.dumps(manifest, indent=2).encode(), "application/json")
    if missing or unhashed:
        detail = (f"instance {ended.instance}: memory capture ended Success but {', '.join(missing + unhashed)} "
                  f"{'is' if len(missing + unhashed) == 1 else 'are'} missing or unhashed in {where}/")  # fmt: skip
        return record, ActionResult("ec2:capture-memory", ended.instance, Status.FAILED, detail)
    detail = (f"instance {ended.instance}: memory capture finished (SSM command {ended.command}): "
              f"memory.lime sha256 {reported['memory.lime'][:16]}…, volatile.txt sha256 "
              f"{reported['volatile.txt'][:16]}…; manifest {evidence.location(manifest_key)}")  # fmt: skip
    return record, ActionResult("ec2:capture-memory", ended.instance, Status.SUCCEEDED, detail)


def report_ended(event: dict[str, Any], document: str, evidence: EvidenceSink | None,
                 notifiers: Sequence[Notifier]) -> dict[str, Any]:  # fmt: skip
    """The follow-up event, handled: the capture's outcome in the audit trail and the channels."""
    from chalicelib.entry.intake import told
    from chalicelib.identifiers import incident_from_state
    from chalicelib.response import audit
    from chalicelib.response.report import Mode, Report

    try:
        ended = parse(event, document)
        if evidence is None:
            raise NotOursError("no evidence store configured (EVIDENCE_BUCKET): nothing to report against")
        record, result = finish(ended, evidence)
    except (NotOursError, EventError, ValueError, KeyError, TypeError) as exc:
        logger.warning("capture status not reported", extra={"event_id": event.get("id"), "reason": str(exc)})
        return {"event_id": event.get("id"), "ignored": str(exc)}
    incident = incident_from_state(record["incident"])
    note = f"the memory capture of {ended.instance} this incident started has ended: {ended.status}"
    report = Report(incident, "memory-capture", None, Mode.LIVE, (result,), notes=(note,),
                    evidence=evidence.location(str(record["evidence"])))  # fmt: skip
    audit.record(report, ended.event_id, what="capture")
    return told({"event_id": ended.event_id, **report.to_dict()}, notifiers)
