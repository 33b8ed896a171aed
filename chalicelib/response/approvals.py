"""A human's decision on a stored plan: approve or reject waiting steps, and what that changes.

Pure: the caller reads the plan, applies the decision here, and writes it back conditionally
(executors.plans), so a decision is recorded once whatever the clicks and retries. Only steps
that are still waiting can be decided; anything else is answered with what already happened.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import msgspec

from chalicelib.response.plan import Plan, PlannedStep, StepState


class Decision(msgspec.Struct, frozen=True):
    plan: Plan  # with the decision applied
    changed: tuple[int, ...]  # steps whose state this decision changed (nothing to write when empty)
    message: str  # said to the human, and in the audit trail


def _who(step: PlannedStep) -> str:
    by = f" by {step.decided_by}" if step.decided_by else ""
    at = f" at {step.decided_at}" if step.decided_at else ""
    return f"{step.state.value}{by}{at}"


def decide(plan: Plan, *, approve: bool, steps: tuple[int, ...] | None, who: str, now: datetime) -> Decision:
    """Approve (or reject) `steps` of the plan, or every waiting step when `steps` is None."""
    by_index = {s.index: s for s in plan.steps}
    stamp = now.isoformat()
    if plan.expired(now):
        expired = {s.index: replace(s, state=StepState.EXPIRED, decided_at=stamp).noted("expired", stamp, who)
                   for s in plan.waiting}  # fmt: skip
        why = f"the plan for {plan.incident.id} expired at {plan.expires_at}: nothing runs; respond by hand or replay"
        return Decision(plan.with_steps(expired), tuple(expired), why)
    wanted = tuple(s.index for s in plan.waiting) if steps is None else steps
    said: list[str] = []
    changed: dict[int, PlannedStep] = {}
    for index in wanted:
        step = by_index.get(index)
        if step is None:
            said.append(f"step {index}: the plan has no such step")
        elif step.state is not StepState.WAITING:
            said.append(f"step {index} ({step.action} on {step.label}): already {_who(step)}, nothing changed")
        else:
            state = StepState.APPROVED if approve else StepState.REJECTED
            changed[index] = replace(step, state=state, decided_by=who, decided_at=stamp).noted(state.value, stamp, who)
            said.append(f"step {index} ({step.action} on {step.label}): {state.value} by {who}")
    if not wanted:
        decided = [f"step {s.index} ({s.action} on {s.label}) {_who(s)}" for s in plan.steps if s.approval_required]
        said.append(f"no step of the plan for {plan.incident.id} is waiting, nothing changed: " + "; ".join(decided))
    return Decision(plan.with_steps(changed), tuple(changed), "; ".join(said))


def claim(plan: Plan, now: datetime) -> tuple[Plan, dict[int, PlannedStep]]:
    """The approved steps, marked done before they run: a second invocation finds nothing to run,
    so a step runs at most once even when the carry-out is delivered twice."""
    approved = {s.index: s for s in plan.steps if s.state is StepState.APPROVED}
    done = {
        i: replace(s, state=StepState.DONE, decided_at=s.decided_at or now.isoformat()) for i, s in approved.items()
    }
    return plan.with_steps(done), approved


def request_release(plan: Plan, *, steps: tuple[int, ...] | None, who: str, now: datetime) -> Decision:
    """Mark the steps to undo (every undoable one, or `steps`): the owning function releases them."""
    wanted = [s for s in plan.steps if steps is None or s.index in steps]
    stamp = now.isoformat()
    changed = {s.index: replace(s, state=StepState.RELEASE_REQUESTED, decided_by=who, decided_at=stamp)
               .noted("release requested", stamp, who)
               for s in wanted if s.undoable and s.state is StepState.DONE}  # fmt: skip
    said = [f"step {s.index} ({s.action} on {s.label}): release requested by {who}" for s in changed.values()]
    for step in wanted:
        if step.index not in changed:
            why = "changed nothing to undo" if step.state is StepState.DONE else f"already {_who(step)}"
            said.append(f"step {step.index} ({step.action} on {step.label}): {why}")
    return Decision(plan.with_steps(changed), tuple(changed), "; ".join(said) or "no step to release")
