"""What the identity actions share."""

from __future__ import annotations

from chalicelib.actions.base import ActionContext, IdentityAPI


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
