"""Undoing a plan's steps: each chosen step's action puts back the prior state its run recorded, last
step first. A step whose effect other incidents still rely on (a shared cap) is kept until the last of
them lets go.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib import actions
from chalicelib.executors import dry_run
from chalicelib.interfaces import ActionResult, Status, Target
from chalicelib.response.execute import brief, step_done
from chalicelib.response.report import Mode, Report

if TYPE_CHECKING:
    from chalicelib.actions.base import Action, ActionContext
    from chalicelib.response.execute import Responder
    from chalicelib.response.plan import Plan, PlannedStep

logger = logging.getLogger("eks_responder")


def release(
    responder: Responder,
    plan: Plan,
    chosen: dict[int, PlannedStep],
    *,
    dry_run: bool,
    force: bool,
    by: str | None = None,
) -> Report:
    """Put back what the chosen steps changed, last step first, from the prior state each recorded."""
    from chalicelib.policy.model import Step as RuleStep

    incident = plan.incident
    mode = Mode.DRY_RUN if dry_run else Mode.LIVE
    reach = responder.reach(incident)
    ordered = [chosen[i] for i in sorted(chosen, reverse=True)]
    if isinstance(reach, tuple):
        status, reason = reach
        refused = tuple(ActionResult(p.action, p.label, status, reason) for p in ordered)
        return Report(incident, plan.rule, None, mode, refused)
    steps = tuple(RuleStep(action=p.action, params=p.params) for p in ordered)
    session = responder.open_session(incident, steps, mode, reach)
    results = []
    for planned in ordered:
        action = actions.get(planned.action)
        blocked = session.blocked(action)
        if blocked is not None:
            results.append(ActionResult(action.name, planned.label, *blocked))
        else:
            assert planned.target is not None  # undoable steps ran on a target
            prior = dict((planned.result or {}).get("prior") or {})
            results.append(_undo_one(action, planned.target, prior, session.ctx, force=force))
        step_done(incident, plan.rule, mode, replace(results[-1], step=planned.index), what="release", by=by)
    stamped = tuple(replace(r, step=p.index) for r, p in zip(results, ordered, strict=True))
    return Report(incident, plan.rule, None, mode, stamped, tuple(session.ctx.notes), account_alias=session.alias,
                  logged=frozenset(range(len(stamped))))  # fmt: skip


def _undo_one(  # noqa: PLR0911 - one return per way a release ends
    action: Action, target: Target, prior: dict[str, Any], ctx: ActionContext, *, force: bool
) -> ActionResult:
    started = time.perf_counter()
    effect = str(prior.get("held") or "")
    if effect and ctx.caps is not None:
        # A shared effect: this incident lets go, and only the last holder undoes it.
        try:
            others, made = ctx.caps.held_by(effect) if ctx.dry_run else ctx.caps.let_go(effect, ctx.incident.id)
        except Exception as exc:  # noqa: BLE001 - nothing undone: who else holds it is not known
            why = f"release: not undone, the shared record could not be read ({brief(exc)}); try again"
            return ActionResult(action.name, str(target), Status.FAILED, why)
        others = [o for o in others if o != ctx.incident.id]
        if others:
            kept = f"release: kept, still relied on by incident {', '.join(others)}"
            return ActionResult(action.name, str(target), Status.SUCCEEDED, kept)
        # The last holder puts back the state before the first incident changed it.
        if made is not None:
            prior = made
        elif prior.get("joined"):
            return ActionResult(action.name, str(target), Status.SKIPPED, "release: nothing recorded to undo")
    try:
        with dry_run.journal() as writes:
            outcome = action.release(ctx, target, prior, force=force)
    except Exception as exc:  # noqa: BLE001 - one failing release never hides the others
        logger.warning("release failed", extra={"action": action.name, "target": str(target), "error": brief(exc)})
        return ActionResult(action.name, str(target), Status.FAILED, f"release: {brief(exc)}")
    elapsed = (time.perf_counter() - started) * 1000
    detail = f"release: {outcome.detail}"
    if ctx.dry_run and outcome.status is Status.SUCCEEDED and dry_run.any_applied(writes):
        logger.error("dry run applied", extra={"action": action.name, "target": str(target)})
        return ActionResult(action.name, str(target), Status.SUCCEEDED,
                            f"APPLIED DESPITE DRY RUN: {detail} [{dry_run.describe(writes)}]", elapsed)  # fmt: skip
    if ctx.dry_run and outcome.status is Status.SUCCEEDED:
        return ActionResult(action.name, str(target), Status.PLANNED, f"dry run: {detail} [{dry_run.describe(writes)}]")
    return ActionResult(action.name, str(target), outcome.status, detail, elapsed)
