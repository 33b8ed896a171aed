"""kms:enable-key: re-enable a protected key that was disabled (or whose deletion was cancelled)."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.kms.common import KEY_ARN, PENDING, key_or_missing, keys
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked


class EnableKey(Action):
    """Enable the key again.

    Example::

        - action: kms:enable-key
    """

    name = "kms:enable-key"
    contains = True
    keeps = "nothing is re-disabled: putting the tampering back is never a release"
    target_kind = "key"
    summary = "enable the key"
    iam: ClassVar[tuple[IAMStatement, ...]] = (IAMStatement(("kms:DescribeKey", "kms:EnableKey"), (KEY_ARN,)),)

    def describe(self, target: Target, params: Params) -> str:
        return f"enable key {target}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        metadata = key_or_missing(ctx, target)
        if isinstance(metadata, Outcome):
            return metadata
        state = str(metadata.get("KeyState"))
        # After a cancel in this same run the key is Disabled, but a dry run never sent the cancel.
        if state in PENDING and not keys(ctx).dry_run:
            return Outcome(Status.SKIPPED, f"key {target} is pending deletion: cancel the deletion first")
        if state == "Enabled":
            return Outcome(Status.SKIPPED, f"key {target} is already enabled")
        keys(ctx).enable_key(target.name)
        claim, prior = f"enabled key {target} (was {state})", {"KeyState": state}
        if keys(ctx).dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        now = str((keys(ctx).describe_key(target.name) or {}).get("KeyState"))
        return checked(claim, None if now == "Enabled" else f"key state {now}", prior)

    reads_back = "the key's state (Enabled)"
