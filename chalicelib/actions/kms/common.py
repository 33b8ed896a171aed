"""What the KMS actions share."""

from __future__ import annotations

from typing import Any

from chalicelib.actions.base import ActionContext
from chalicelib.interfaces import KeysAPI, Outcome, Status, Target

KEY_ARN = "arn:aws:kms:{region}:{account}:key/*"
PENDING = {"PendingDeletion", "PendingReplicaDeletion"}


def keys(ctx: ActionContext) -> KeysAPI:
    if ctx.keys is None:
        raise RuntimeError("no AWS access configured")
    return ctx.keys


def key_or_missing(ctx: ActionContext, target: Target) -> dict[str, Any] | Outcome:
    """The key's metadata, or the outcome to report when the key is gone."""
    metadata = keys(ctx).describe_key(target.name)
    if metadata is None:
        return Outcome(Status.SKIPPED, f"key {target} no longer exists")
    return metadata
