"""kms:cancel-key-deletion: take a protected key out of its deletion waiting period."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.kms.common import KEY_ARN, PENDING, key_or_missing, keys
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked


class CancelKeyDeletion(Action):
    """Cancel the scheduled deletion. A cancelled key comes back Disabled: follow with kms:enable-key.

    Example::

        - action: kms:cancel-key-deletion
    """

    name = "kms:cancel-key-deletion"
    contains = True
    keeps = "nothing is re-scheduled: putting the tampering back is never a release"
    target_kind = "key"
    summary = "cancel the key's scheduled deletion (it comes back Disabled: follow with kms:enable-key)"
    iam: ClassVar[tuple[IAMStatement, ...]] = (IAMStatement(("kms:CancelKeyDeletion", "kms:DescribeKey"), (KEY_ARN,)),)

    def describe(self, target: Target, params: Params) -> str:
        return f"cancel the scheduled deletion of key {target}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        metadata = key_or_missing(ctx, target)
        if isinstance(metadata, Outcome):
            return metadata
        state = str(metadata.get("KeyState"))
        if state not in PENDING:
            return Outcome(Status.SKIPPED, f"key {target} is not pending deletion ({state})")
        keys(ctx).cancel_key_deletion(target.name)
        prior = {"KeyState": state, "DeletionDate": str(metadata.get("DeletionDate", ""))}
        claim = f"cancelled the deletion of key {target} (was {state})"
        if keys(ctx).dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        now = str((keys(ctx).describe_key(target.name) or {}).get("KeyState"))
        return checked(claim, f"key state {now}" if now in PENDING else None, prior)

    reads_back = "the key's state (no longer pending deletion)"
