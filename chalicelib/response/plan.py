"""The plan: what the responder will do about one incident, as a value.

Building a plan reads the cluster and AWS (which pods, which node, which instance) and changes
nothing; carrying it out runs only what it says. The same value is what a replay prints, what a
message shows, what waits in the incident table for approval, and what a later approval runs:
it serialises to JSON and back without loss, so an approval in another invocation acts on
exactly the steps a human saw.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from chalicelib.incident import Incident, incident_state
from chalicelib.interfaces import Target

if TYPE_CHECKING:
    from chalicelib.policy.model import Rule, RulesFile, Step


MAX_HISTORY = 40  # entries kept per step: far more than any step's life has


class StepState(enum.StrEnum):
    """Where one step of a stored plan is: only `waiting` steps can be approved or rejected."""

    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DONE = "done"  # ran (see its result), or was never going to run (a guardrail said no)
    RELEASE_REQUESTED = "release-requested"  # an approver asked (from Slack): the owning function undoes it
    RELEASED = "released"  # what it changed was put back


@dataclass(frozen=True)
class PlannedStep:
    index: int  # position in the plan: what approvals and releases name
    action: str
    target: Target | None  # None: the finding names nothing this action could act on
    params: dict[str, Any] = field(default_factory=dict)
    approval_required: bool = False
    state: StepState = StepState.DONE
    decided_by: str | None = None  # who made the latest decision on it (see `history` for every one)
    decided_at: str | None = None
    result: dict[str, Any] | None = None  # status, detail and prior state once it ran: what a release undoes
    # Everything that happened to the step, oldest first: planned, approved or rejected (by whom,
    # `slack:` or `cli:`), ran (its outcome), release requested, released or why not. Never rewritten.
    history: tuple[dict[str, str], ...] = ()

    def noted(self, what: str, at: str, by: str | None = None, detail: str = "") -> PlannedStep:
        """The step with one more entry in its history."""
        entry = {"what": what, "at": at, **({"by": by} if by else {}), **({"detail": detail[:300]} if detail else {})}
        return replace(self, history=(*self.history, entry)[-MAX_HISTORY:])

    @property
    def undoable(self) -> bool:
        """Ran, changed something, and recorded what it was before (a step that failed after a
        write, such as a change that did not read back, keeps its prior state to be put back)."""
        result = self.result or {}
        undone = self.state in (StepState.DONE, StepState.RELEASE_REQUESTED)
        return undone and result.get("status") in ("succeeded", "failed") and bool(result.get("prior"))

    @property
    def label(self) -> str:
        return str(self.target) if self.target is not None else "-"

    def to_dict(self) -> dict[str, Any]:
        target = self.target
        return {
            "index": self.index,
            "action": self.action,
            "target": None if target is None else {
                "kind": target.kind, "name": target.name, "namespace": target.namespace,
                "resolved": target.resolved, "exists": target.exists, "skip_reason": target.skip_reason,
                "attributes": dict(target.attributes),
            },
            "params": self.params,
            "approval_required": self.approval_required,
            "state": self.state.value,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "result": self.result,
            "history": list(self.history),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannedStep:
        raw = data.get("target")
        target = None if raw is None else Target(
            raw["kind"], raw["name"], raw.get("namespace"), raw.get("resolved", True), raw.get("exists", True),
            raw.get("skip_reason"), {str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
        )  # fmt: skip
        return cls(
            index=int(data["index"]),
            action=str(data["action"]),
            target=target,
            params=dict(data.get("params") or {}),
            approval_required=bool(data.get("approval_required")),
            state=StepState(data.get("state", StepState.DONE)),
            decided_by=data.get("decided_by"),
            decided_at=data.get("decided_at"),
            result=data.get("result"),
            history=tuple(
                {str(k): str(v) for k, v in e.items()} for e in data.get("history") or () if isinstance(e, dict)
            ),
        )


@dataclass(frozen=True)
class Plan:
    incident: Incident
    rule: str
    mode: str  # the responder's mode when the plan was made
    steps: tuple[PlannedStep, ...]
    created_at: str
    expires_at: str

    @property
    def waiting(self) -> tuple[PlannedStep, ...]:
        return tuple(s for s in self.steps if s.state is StepState.WAITING)

    @property
    def revision(self) -> str:
        """Names this plan as shown: when it was made and each step's action and target (not their
        states, which decisions change). A plan replaced by a more severe occurrence has another."""
        import hashlib

        shown = [self.created_at, *(f"{s.index}|{s.action}|{s.label}" for s in self.steps)]
        return hashlib.sha256("\n".join(shown).encode()).hexdigest()[:16]

    def expired(self, now: datetime) -> bool:
        return now >= datetime.fromisoformat(self.expires_at)

    def step(self, index: int) -> PlannedStep:
        return next(s for s in self.steps if s.index == index)

    def with_steps(self, changed: dict[int, PlannedStep]) -> Plan:
        return replace(self, steps=tuple(changed.get(s.index, s) for s in self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident": incident_state(self.incident),
            "rule": self.rule,
            "mode": self.mode,
            "steps": [s.to_dict() for s in self.steps],
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        # Read back only where a plan is stored: the identifier patterns stay off the cold start.
        from chalicelib.identifiers import incident_from_state

        return cls(
            incident=incident_from_state(data["incident"]),
            rule=str(data["rule"]),
            mode=str(data["mode"]),
            steps=tuple(PlannedStep.from_dict(s) for s in data["steps"]),
            created_at=str(data["created_at"]),
            expires_at=str(data["expires_at"]),
        )


def needs_approval(step: Step, rule: Rule, incident: Incident, rules: RulesFile, default: str) -> bool:
    """An incident held for a human, else the step's own word, else its rule's, else the first
    approvals entry that fits, else the stage's APPROVAL_DEFAULT."""
    from chalicelib.policy.matcher import matches

    if incident.hold:
        return True
    if step.approval is not None:
        return step.approval == "required"
    if rule.approval is not None:
        return rule.approval == "required"
    for entry in rules.approvals:
        if any(fnmatchcase(step.action, glob) for glob in entry.actions) and matches(entry.match, incident):
            return entry.approval == "required"
    return default == "required"
