"""A human's decision on a plan, from a Slack click or the CLI, to the steps carried out.

Decide: read the plan, apply the decision (response.approvals), write it back only if nobody
changed it meanwhile. Carry out: claim the approved steps (marked done in the same conditional
write, so a step runs at most once), run them through the responder with the targets resolved
again, record and tell. Each half is its own invocation in Lambda: the click's answer cannot wait
for containment, and only the function that owns the playbook holds its permissions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chalicelib.interfaces import ActionResult, Status
from chalicelib.response import approvals, audit
from chalicelib.response.plan import Plan, PlannedStep, StepState

if TYPE_CHECKING:
    from chalicelib.executors.plans import PlanStore
    from chalicelib.notifiers.base import Notifier
    from chalicelib.response.execute import Responder

logger = logging.getLogger("eks_responder")

SOURCE = "eks-responder"
CARRY_OUT = "Carry out approved steps"
_INCIDENT_ID = re.compile(r"^[\w.:@/+=,-]{1,512}$")  # what our incident ids are made of


def carry_out_event(incident_id: str) -> dict[str, Any]:
    return {"source": SOURCE, "detail-type": CARRY_OUT, "detail": {"incident_id": incident_id}}


def hand_to_owner(
    store: PlanStore[Plan] | None, incident_id: str, stage: str, invoke: Callable[[str, dict[str, Any]], None]
) -> dict[str, Any]:
    """Send the carry-out event to the function that owns the incident's playbook: it runs the
    approved steps with its own permissions (Slack wants an answer within three seconds)."""
    from chalicelib import functions

    stored = store.get(incident_id) if store is not None else None
    if stored is None:
        return {"incident_id": incident_id, "error": "no stored plan"}
    owner = functions.for_source(stored[0].incident.source).name
    name = f"{functions.APP_NAME}-{stage}-{owner}"
    invoke(name, carry_out_event(incident_id))
    return {"incident_id": incident_id, "carried_out_by": name}


def is_carry_out(event: Any) -> bool:
    """The event a decision sends to the function that owns the plan. It carries only an id: what
    runs is what the table says was approved, so whoever can invoke the function gains nothing."""
    if not isinstance(event, dict) or event.get("source") != SOURCE or event.get("detail-type") != CARRY_OUT:
        return False
    detail = event.get("detail")
    incident_id = detail.get("incident_id") if isinstance(detail, dict) else None
    return isinstance(incident_id, str) and bool(_INCIDENT_ID.match(incident_id))


def _now() -> datetime:
    return datetime.now(UTC)


def decide(
    store: PlanStore[Plan],
    incident_id: str,
    *,
    approve: bool,
    steps: tuple[int, ...] | None,
    who: str,
    run: Callable[[str], dict[str, Any]],
    clock: Callable[[], datetime] = _now,
    revision: str | None = None,
    notifiers: Sequence[Notifier] = (),
) -> dict[str, Any]:
    """Approve or reject; when something was approved, `run(incident_id)` has it carried out (and
    tells); a rejection is told here. With a `revision` (a Slack button's), only the plan the
    message showed may be decided."""
    return _record(store, incident_id, "approve" if approve else "reject", steps, who, run, clock, revision,
                   notifiers)  # fmt: skip


def request_release(
    store: PlanStore[Plan],
    incident_id: str,
    *,
    steps: tuple[int, ...] | None,
    who: str,
    run: Callable[[str], dict[str, Any]],
    clock: Callable[[], datetime] = _now,
    revision: str | None = None,
) -> dict[str, Any]:
    """An approver's Release click: recorded in the plan, then undone by the function that owns it."""
    return _record(store, incident_id, "release", steps, who, run, clock, revision)


def _record(
    store: PlanStore[Plan],
    incident_id: str,
    verb: str,
    steps: tuple[int, ...] | None,
    who: str,
    run: Callable[[str], dict[str, Any]],
    clock: Callable[[], datetime],
    revision: str | None = None,
    notifiers: Sequence[Notifier] = (),
) -> dict[str, Any]:
    from chalicelib.executors.plans import PlanConflictError

    for _ in range(3):  # a conflict means someone decided meanwhile: read again and answer for the new state
        stored = store.get(incident_id)
        if stored is None:
            return {"incident_id": incident_id, "decision": verb, "message": f"no plan is kept for {incident_id}"}
        plan, version = stored
        if revision is not None and revision != plan.revision:
            logger.warning("stale decision refused", extra={"incident_id": incident_id, "decision": verb, "by": who})
            return {"incident_id": incident_id, "decision": verb, "message": _stale(plan, verb)}
        if verb == "release":
            decision = approvals.request_release(plan, steps=steps, who=who, now=clock())
        else:
            decision = approvals.decide(plan, approve=verb == "approve", steps=steps, who=who, now=clock())
        if not decision.changed:
            return {"incident_id": incident_id, "decision": verb, "message": decision.message}
        try:
            store.replace(decision.plan, version)
        except PlanConflictError:
            continue
        at = decision.plan.step(decision.changed[0]).decided_at or ""
        what = "release requested" if verb == "release" else PAST[verb]
        audit.decision(incident_id, what, who, list(decision.changed), decision.message, at)
        result: dict[str, Any] = {"incident_id": incident_id, "decision": verb, "message": decision.message}
        runs = (StepState.APPROVED, StepState.RELEASE_REQUESTED)
        if any(decision.plan.step(i).state in runs for i in decision.changed):
            result["carried_out"] = run(incident_id)
        elif verb == "reject":
            _tell_rejected(decision.plan, decision.changed, who, notifiers)
        return result
    return {"incident_id": incident_id, "decision": verb, "message": "the plan kept changing: try again"}


PAST = {"approve": "approved", "reject": "rejected", "release": "released"}


def _tell_rejected(plan: Plan, changed: Sequence[int], who: str, notifiers: Sequence[Notifier]) -> None:
    """A human said no: the steps they refused, told like any report (the bus, the ticket)."""
    from chalicelib.entry.intake import told
    from chalicelib.response.report import Mode, Report

    steps = [plan.step(i) for i in changed]
    results = tuple(ActionResult(s.action, s.label, Status.REJECTED, f"rejected by {who}: not run") for s in steps)
    report = Report(plan.incident, plan.rule, f"rejected by {who}", Mode(plan.mode), results)
    found = report.to_dict()
    for index, action in zip(changed, found["actions"], strict=True):
        action["step"] = index
    told({"event_id": None, **found, "rejected_by": who}, notifiers)


def _stale(plan: Plan, verb: str) -> str:
    steps = "; ".join(f"step {s.index}: {s.action} on {s.label} ({s.state.value})" for s in plan.steps)
    return (
        f"Nothing was {PAST[verb]}: this message shows an older plan of {plan.incident.id}, replaced since "
        f"(a new occurrence). The current plan: {steps}. Decide from its message or the CLI."
    )


def _keep_results(store: PlanStore[Plan], plan: Plan, version: int, results: dict[int, ActionResult]) -> None:
    """The steps' results (and prior state) in the stored plan: what a release undoes. Best effort:
    the report and the audit line carry them too."""
    from dataclasses import replace

    from chalicelib.response.execute import outcome_of

    done = {i: replace(plan.step(i), result=outcome_of(r)).noted("ran", r.at or "", None,
                                                                 f"{r.status.value}: {r.detail}")
            for i, r in results.items()}  # fmt: skip
    try:
        store.replace(plan.with_steps(done), version)
    except Exception as exc:  # noqa: BLE001 - logged: the results are in the report and the audit log
        logger.warning("step results not stored", extra={"incident_id": plan.incident.id, "error": str(exc)})


def release(
    store: PlanStore[Plan],
    responder: Responder,
    incident_id: str,
    *,
    steps: tuple[int, ...] | None,
    who: str,
    dry_run: bool = False,
    force: bool = False,
    notifiers: Sequence[Notifier] = (),
    clock: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Undo the steps that changed something (all of them, or `steps`), last first; record who did."""
    from chalicelib.entry.intake import told
    from chalicelib.executors.plans import PlanConflictError

    stored = store.get(incident_id)
    if stored is None:
        return {"incident_id": incident_id, "said": f"no stored plan for {incident_id}: nothing to release"}
    plan, version = stored
    wanted = [s for s in plan.steps if steps is None or s.index in steps]
    chosen = {s.index: s for s in wanted if s.undoable}

    def why_not(step: PlannedStep) -> str:
        return "already released" if step.state is StepState.RELEASED else "changed nothing to undo"

    said = [f"step {s.index} ({s.action} on {s.label}): {why_not(s)}" for s in wanted if s.index not in chosen]
    if not chosen:
        return {"incident_id": incident_id, "said": "; ".join(said) or "no step to release"}
    from chalicelib.response.release import release as undo

    report = undo(responder, plan, chosen, dry_run=dry_run, force=force, by=who)
    audit.record(report, None, by=who, what="release")
    results = dict(zip(sorted(chosen, reverse=True), report.actions, strict=True))
    if not dry_run:
        stamp = clock().isoformat()
        kept = {i: _released(chosen[i], r, who, stamp) for i, r in results.items()}
        try:
            store.replace(plan.with_steps(kept), version)
        except PlanConflictError:
            said.append("the plan changed meanwhile: the release ran, but its record was not updated")
    result = {"event_id": None, **report.to_dict(), "released_by": who}
    if said:
        result["said"] = "; ".join(said)
    return told(result, notifiers)


def _released(step: PlannedStep, result: ActionResult, who: str, stamp: str) -> PlannedStep:
    """The step after its release, with what really happened in its history: released, release
    skipped (nothing to put back), let go (another incident still relies on the change), left
    alone (changed since), or release failed."""
    from dataclasses import replace

    left = "changed since" in result.detail or "replaced by a later" in result.detail
    if result.status is Status.FAILED:
        what = "release failed"
    elif left:
        what = "release left it alone"
    elif result.status is Status.SKIPPED:
        what = "release skipped"
    elif "still relied on" in result.detail:
        what = "let go, kept for another incident"
    else:
        what = "released"
    done = result.status in (Status.SUCCEEDED, Status.SKIPPED) and not left
    moved = replace(step, state=StepState.RELEASED, decided_by=who, decided_at=stamp) if done else step
    return moved.noted(what, stamp, who, result.detail)


def carry_out(
    store: PlanStore[Plan], responder: Responder, incident_id: str, notifiers: Sequence[Notifier],
    clock: Callable[[], datetime] = _now,
) -> dict[str, Any]:  # fmt: skip
    """Run what was approved and not yet run; nothing when another invocation got there first."""
    from chalicelib.entry.intake import told
    from chalicelib.executors.plans import PlanConflictError

    stored = store.get(incident_id)
    if stored is None:
        return {"incident_id": incident_id, "message": "no stored plan: nothing to carry out"}
    plan, version = stored
    requested = tuple(s.index for s in plan.steps if s.state is StepState.RELEASE_REQUESTED)
    if requested:
        who = next((s.decided_by for s in plan.steps if s.index in requested and s.decided_by), None) or "?"
        return release(store, responder, incident_id, steps=requested, who=who, notifiers=notifiers, clock=clock)
    claimed, approved = approvals.claim(plan, clock())
    if not approved:
        return {"incident_id": incident_id, "message": "no approved step is waiting to run"}
    try:
        version = store.replace(claimed, version)
    except PlanConflictError:
        return {"incident_id": incident_id, "message": "another invocation is carrying out this plan"}
    report = responder.carry_out(plan, approved)
    _keep_results(store, claimed, version, dict(zip(sorted(approved), report.actions, strict=True)))
    by = sorted({s.decided_by or "?" for s in approved.values()})
    audit.record(report, None, by=", ".join(by), what="approved")
    result = {"event_id": None, **report.to_dict(), "approved_by": by}
    return told(result, notifiers)


def expire(
    store: PlanStore[Plan], notifiers: Sequence[Notifier], clock: Callable[[], datetime] = _now
) -> dict[str, Any]:
    """Plans whose approval time ran out: their waiting steps expire, and it is said once (the
    conditional write lets one invocation record it; only that one tells)."""
    from chalicelib.entry.intake import told
    from chalicelib.executors.plans import PlanConflictError
    from chalicelib.response.report import Mode, Report

    now = clock()
    expired = []
    for plan, version in store.all():
        if not plan.waiting or not plan.expired(now):
            continue
        decision = approvals.decide(plan, approve=False, steps=None, who="expiry", now=now)
        try:
            store.replace(decision.plan, version)
        except PlanConflictError:
            continue  # decided (or expired) by someone else meanwhile
        why = f"expired unanswered at {plan.expires_at}: not run"
        results = tuple(ActionResult(s.action, s.label, Status.SKIPPED, why) for s in plan.waiting)
        report = Report(plan.incident, plan.rule, "the plan waited for approval and nobody answered",
                        Mode(plan.mode), results)  # fmt: skip
        audit.record(report, None, by="expiry", what="expiry")
        told({"event_id": None, **report.to_dict(), "expired": True}, notifiers)
        expired.append(plan.incident.id)
    return {"expired": expired}
