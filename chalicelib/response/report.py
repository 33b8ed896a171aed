"""What a response says it did: the incident, the rule that decided, and each step's result, in the
mode it ran in. The audit trail and every notifier read a report."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from chalicelib.interfaces import ActionResult, Status

if TYPE_CHECKING:  # a report is never decoded: msgspec never reads its annotations
    from chalicelib.incident import Incident  # noqa: TC004
    from chalicelib.response.plan import Plan  # noqa: TC004


class Mode(enum.StrEnum):
    PLAN = "plan"  # decide and describe only; nothing is contacted
    DRY_RUN = "dry-run"  # read the cluster, send every write with server-side dry-run
    LIVE = "live"  # change things


class Report(msgspec.Struct, frozen=True):
    incident: Incident
    rule: str | None
    reason: str | None
    mode: Mode
    actions: tuple[ActionResult, ...]
    notes: tuple[str, ...] = ()
    evidence: str | None = None  # where this incident's evidence is, when any was written
    plan: Plan | None = None  # set when steps wait for approval: what is stored for a later invocation
    account_alias: str | None = None  # the incident account's IAM alias, when known (organisations)
    contained_at: datetime | None = None  # when the first containment step succeeded (live only)
    # Positions in `actions` whose audit line was written as the step finished (or by an earlier delivery).
    logged: frozenset[int] = frozenset()

    @property
    def time_to_contain(self) -> float | None:
        """Seconds from the finding's last update to the first containment that succeeded."""
        if self.contained_at is None or not self.incident.observed_at:
            return None
        observed = datetime.fromisoformat(self.incident.observed_at.replace("Z", "+00:00"))
        return round(max(0.0, (self.contained_at - observed).total_seconds()), 1)

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAILED for r in self.actions)

    def _plan_summary(self) -> dict[str, Any]:
        """What a message's buttons and other tooling need: the steps waiting, the steps a release undoes."""
        found: dict[str, Any] = {}
        if self.plan and self.plan.waiting:
            found["approval"] = {"waiting": [p.index for p in self.plan.waiting], "expires_at": self.plan.expires_at,
                                 "revision": self.plan.revision}  # fmt: skip
        undoable = [p.index for p in self.plan.steps if p.undoable] if self.plan else []
        if undoable:
            found["undo"] = {"steps": undoable, "revision": self.plan.revision if self.plan else ""}
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.incident.source,
            "incident": self.incident.to_dict(),
            "rule": self.rule,
            "reason": self.reason,
            "mode": self.mode.value,
            "actions": [r.to_dict() for r in self.actions],
            "notes": list(self.notes),
            "evidence": self.evidence,
            "account_alias": self.account_alias,
            **({"time_to_contain_seconds": self.time_to_contain} if self.time_to_contain is not None else {}),
            **self._plan_summary(),
        }
