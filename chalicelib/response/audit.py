"""The audit trail: one structured log record per incident and per action.

A step's line is written as the step finishes (`step`), so a crash later in the response never
loses the record that it happened; the incident's line (`record`) when its response ends, with the
lines of any step not written before.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.incident import Incident
    from chalicelib.interfaces import ActionResult
    from chalicelib.response.report import Report

logger = logging.getLogger("eks_responder")


def record(
    report: Report,
    event_ref: str | None = None,
    *,
    by: str | None = None,
    what: str = "response",
    follows_dry_run: dict[str, Any] | None = None,
) -> None:
    """`what`: response (an event), approved (steps a human approved), release, expiry, capture.
    `follows_dry_run`: the dry run of the same finding this live response follows."""
    incident = report.incident
    logger.info(
        "incident",
        extra={
            "incident_id": incident.id,
            "event": event_ref,
            "what": what,
            "by": by,
            "source": incident.source,
            "title": incident.title,
            "account": incident.account,
            "region": incident.region,
            "finding_type": incident.type,
            "severity": incident.severity.label,
            "cluster": incident.cluster,
            "rule": report.rule,
            "reason": report.reason,
            "mode": report.mode.value,
            "sample": incident.sample,
            "observed_at": incident.observed_at,
            "time_to_contain_seconds": report.time_to_contain,
            **({"follows_dry_run": follows_dry_run} if follows_dry_run else {}),
        },
    )
    for position, result in enumerate(report.actions):
        if position not in report.logged:
            step(incident, report.rule, report.mode.value, result, what=what, by=by)


def step(
    incident: Incident, rule: str | None, mode: str, result: ActionResult, *, what: str = "response",
    by: str | None = None,
) -> None:  # fmt: skip
    """One step's line, written as the step finishes: a crash after it never loses that it happened.
    `what` and `by` as for the incident's line (a step of a response, of an approval, of a release)."""
    logger.info(
        "action",
        extra={"incident_id": incident.id, "cluster": incident.cluster, "rule": rule, "mode": mode, "what": what,
               "by": by, **result.to_dict()},
    )  # fmt: skip


def decision(incident_id: str, what: str, by: str, steps: list[int], said: str, at: str) -> None:
    """A human's decision (approve, reject, release) as it was recorded in the plan, from Slack or
    the CLI: the trail has it even where the incident table is not read."""
    logger.info(
        "decision",
        extra={"incident_id": incident_id, "what": what, "by": by, "steps": steps, "said": said[:2000], "at": at},
    )
