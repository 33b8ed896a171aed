"""What every output says about a report, as plain values: the same facts as the Slack message.

Pure. Each output renders these facts in its own format and makes them inert there (Slack: code
spans; Teams: text runs; ServiceNow: no `[code]`; JSON outputs: structure). Nothing here is
markup: a value from an event stays a value.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from chalicelib import identifiers

# What a report is, from the code path that made it.
INCIDENT, APPROVAL, REJECTION, RELEASE, EXPIRY, CAPTURE, REJECTED, DELIVERY = (
    "incident", "approval", "rejection", "release", "expiry", "capture", "rejected", "delivery-failure")  # fmt: skip
# What the report says happened: the first that holds, in this order.
FAILED, CONTAINED, RELEASED, AWAITING, PLANNED, NO_ACTION = (
    "failed", "contained", "released", "awaiting-approval", "planned", "no-action")  # fmt: skip
STATUS_WORDS = {FAILED: "a step failed", CONTAINED: "contained", RELEASED: "released", AWAITING: "awaiting approval",
                PLANNED: "planned, nothing changed (dry run)", NO_ACTION: "no action"}  # fmt: skip
MAX_STEPS = 100  # the most steps an output lists (a playbook has at most a few dozen)
VALUE_LIMIT = 1000


class Step(msgspec.Struct, frozen=True):
    index: int | None
    action: str
    target: str
    status: str
    detail: str

    def line(self) -> str:
        number = f"{self.index}. " if self.index is not None else ""
        return f"{number}{self.status}: {self.action} on {self.target}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.index, "action": self.action, "target": self.target, "status": self.status,
                "detail": self.detail}  # fmt: skip


class Facts(msgspec.Struct, frozen=True):
    kind: str
    status: str
    incident_id: str | None  # None for a rejected event
    severity: str
    headline: str  # `HIGH Execution:Runtime/ReverseShell in demo`
    title: str  # the finding's own title
    fields: tuple[tuple[str, str], ...]  # (label, value), in the Slack message's order
    steps: tuple[Step, ...]
    link: str | None  # a console link built from validated parts, or none
    dry_run: bool
    rule: str | None
    by: str | None  # who approved or released
    event_id: str | None

    @property
    def timeline(self) -> str:
        """The command that shows the incident's timeline (from the functions' logs in CloudWatch)."""
        return f"eks-responder report {self.incident_id}" if self.incident_id else ""

    def summary(self) -> str:
        """One line: what happened and what was done."""
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.status] = counts.get(step.status, 0) + 1
        done = ", ".join(f"{n} {status}" for status, n in counts.items())
        what = STATUS_WORDS.get(self.status, self.status)
        prefix = {APPROVAL: "approved steps ran: ", REJECTION: "steps refused by a human: ", RELEASE: "release: ",
                  EXPIRY: "approval expired: ",
                  CAPTURE: "memory capture ended: "}.get(self.kind, "")  # fmt: skip
        return f"{self.headline}: {prefix}{what}" + (f" ({done})" if done else "")


_CVE = re.compile(r"^CVE-\d{4}-\d{4,7}$")
_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{1,64}$")
# Account and region syntax: the same checks the sources apply at the boundary.
_ACCOUNT, _REGION = identifiers.ACCOUNT, identifiers.REGION
_FINDING_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


def console_link(incident: dict[str, Any]) -> str | None:
    """A console link built only from parts that have their documented syntax; else none."""
    region = str(incident.get("region") or "")
    if not _REGION.match(region):
        return None
    if incident.get("source") == "guardduty" and _FINDING_ID.match(str(incident.get("id"))):
        return (
            f"https://{region}.console.aws.amazon.com/guardduty/home?region={region}"
            f"#/findings?macros=current&fId={incident['id']}"
        )
    if incident.get("source") == "inspector":
        return f"https://{region}.console.aws.amazon.com/inspector/v2/home?region={region}#/findings"
    if incident.get("source") == "ecr":
        details = incident.get("details") or {}
        repository, digest = str(details.get("repository") or ""), str(details.get("digest") or "")
        # Event values go into our link only when they have the exact shape ECR allows.
        if _REPOSITORY.match(repository) and _DIGEST.match(digest) and _ACCOUNT.match(str(incident.get("account"))):
            return (
                f"https://{region}.console.aws.amazon.com/ecr/repositories/private/{incident['account']}/"
                f"{repository}/_/image/{digest}/scan-results?region={region}"
            )
    if incident.get("source") == "kms":
        return f"https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events"
    return None


def contained_text(seconds: Any) -> str | None:
    """`42 s after the finding's last update` (hours past the first hour)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return None
    took = f"{seconds:.0f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"  # noqa: PLR2004
    return f"{took} after the finding's last update"


def _text(value: Any, limit: int = VALUE_LIMIT) -> str:
    return " ".join(str(value)[:limit].split())


# The key that says which code path made a report, in the order they are checked.
_MADE_BY = (("released_by", RELEASE), ("approved_by", APPROVAL), ("rejected_by", REJECTION), ("expired", EXPIRY))


def kind(report: dict[str, Any]) -> str:
    if "error" in report:
        return DELIVERY if report.get("delivery_failure") else REJECTED
    for key, made in _MADE_BY:
        if report.get(key):
            return made
    return CAPTURE if report.get("rule") == "memory-capture" else INCIDENT


def status(report: dict[str, Any]) -> str:
    found = {str(a.get("status")) for a in report.get("actions") or []}
    if "error" in report or "failed" in found:
        return FAILED
    changed_nothing = report.get("mode") != "live" or bool((report.get("incident") or {}).get("sample"))
    if "succeeded" in found and not changed_nothing:
        return RELEASED if report.get("released_by") is not None else CONTAINED
    if "awaiting-approval" in found:
        return AWAITING
    if changed_nothing and found:
        return PLANNED
    return NO_ACTION


def _joined(incident: dict[str, Any], *keys: str) -> str:
    return ", ".join(str(v) for key in keys for v in incident.get(key) or [])


def _vulnerability(details: dict[str, Any]) -> str | None:
    parts = [str(details[k]) for k in ("cve", "severity_counts") if details.get(k)]
    return ", ".join(parts) or None


def fields(incident: dict[str, Any], alias: Any = None, contained: Any = None) -> list[tuple[str, str]]:
    """The facts of an incident as (label, value): what the Slack message shows, as plain text."""
    principals = ", ".join(p.get("arn") or p.get("name") or "" for p in incident.get("principals") or [])
    account = incident.get("account")
    details = incident.get("details") or {}
    path = details.get("file_path") or details.get("library_path") or details.get("script_path")
    file = f"{details['file_operation']} {path}" if path and details.get("file_operation") else path
    workloads = [w for w in incident.get("workloads") or [] if not str(w).startswith("Pod/")]
    facts = [
        ("Account", f"{account} ({alias})" if account and alias else account),
        ("Region", incident.get("region")),
        ("Cluster", incident.get("cluster")),
        ("Namespace", incident.get("namespace")),
        ("Workload / pods", ", ".join([*map(str, workloads), *map(str, incident.get("pods") or [])])),
        ("Node / instance", _joined(incident, "nodes", "instance_ids")),
        ("Principal", principals),
        ("Image", _joined(incident, "images")),
        ("Key", _joined(incident, "key_arns")),
        ("File", file),
        ("Process", details.get("process")),
        ("Contained", contained_text(contained)),
        ("Vulnerability", _vulnerability(details)),
    ]
    return [(label, _text(value)) for label, value in facts if value]


def of(report: dict[str, Any]) -> Facts:
    """The facts of one report (an incident's, an approval's, a release's, a rejected event's)."""
    what = kind(report)
    event_id = _text(report["event_id"], 128) if report.get("event_id") else None
    if what in (REJECTED, DELIVERY):
        named = _text(report.get("incident_id") or "?", 256) if what == DELIVERY else event_id or "no id"
        label = "Delivery failed for" if what == DELIVERY else "Rejected event"
        severity = "high" if what == DELIVERY else "low"
        error = _text(report.get("error") or "")
        return Facts(what, FAILED, None, severity, f"{label} {named}", error, (), (), None, False, None, None, event_id)
    incident = report.get("incident") or {}
    severity = _text(incident.get("severity") or "low", 16).lower()
    where = incident.get("cluster") or incident.get("account") or "?"
    headline = f"{severity.upper()} {_text(incident.get('type'), 200)} in {_text(where, 200)}"
    steps = tuple(
        Step(a.get("step") if isinstance(a.get("step"), int) else None, _text(a.get("action"), 200),
             _text(a.get("target"), 500), _text(a.get("status"), 32), _text(a.get("detail")))
        for a in (report.get("actions") or [])[:MAX_STEPS]
    )  # fmt: skip
    by = report.get("released_by") or report.get("approved_by") or report.get("rejected_by")
    who = _text(", ".join(map(str, by)) if isinstance(by, list) else by, 200) if by else None
    return Facts(
        kind=what,
        status=status(report),
        incident_id=_text(incident.get("id"), 256) or None,
        severity=severity,
        headline=headline,
        title=_text(incident.get("title") or ""),
        fields=tuple(fields(incident, report.get("account_alias"), report.get("time_to_contain_seconds"))),
        steps=steps,
        link=console_link(incident),
        dry_run=report.get("mode") != "live" or bool(incident.get("sample")),
        rule=_text(report["rule"], 200) if report.get("rule") else None,
        by=who,
        event_id=event_id,
    )
