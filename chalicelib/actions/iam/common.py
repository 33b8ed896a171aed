"""What the identity actions share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.actions.base import ActionContext, IdentityAPI, Outcome, Status


def identity(ctx: ActionContext) -> IdentityAPI:
    if ctx.identity is None:
        raise RuntimeError("no AWS access configured")
    return ctx.identity


def name_of(arn: str) -> str:
    """`name` from arn:aws:iam::123456789012:role/path/name."""
    return arn.rsplit("/", 1)[-1]


def account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""  # noqa: PLR2004


def release_inline_policy(
    api: IdentityAPI, role: str, policy: str, ours: Callable[[dict[str, Any]], bool], previous: Any, *,
    force: bool, said: tuple[str, str],
) -> Outcome:  # fmt: skip
    """Undo an incident's inline deny on a role: put back the document it replaced, or remove it;
    left alone when a later incident has replaced it since (unless forced). `said`: what the
    put-back and the removal report."""
    current = api.role_policy(role, policy)
    if current is None:
        return Outcome(Status.SKIPPED, f"role {role} no longer has {policy}")
    if not ours(current) and not force:
        return Outcome(Status.SKIPPED, f"role {role}: {policy} was replaced by a later incident since; "
                                       "left in place (release that incident, or force)")  # fmt: skip
    if previous:
        api.put_role_policy(role, policy, previous)
        return Outcome(Status.SUCCEEDED, f"role {role}: {said[0]}")
    api.delete_role_policy(role, policy)
    return Outcome(Status.SUCCEEDED, f"role {role}: {said[1]}")
