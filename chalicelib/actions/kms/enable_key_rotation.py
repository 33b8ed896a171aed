"""kms:enable-key-rotation: turn automatic rotation back on."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.kms.common import KEY_ARN, key_or_missing, keys
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked


class EnableKeyRotation(Action):
    """Enable automatic rotation (symmetric keys with key material from KMS only).

    Example::

        - action: kms:enable-key-rotation
    """

    name = "kms:enable-key-rotation"
    contains = True
    keeps = "rotation stays on: turning it off is never a release"
    target_kind = "key"
    summary = "turn automatic key rotation back on"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("kms:DescribeKey", "kms:EnableKeyRotation", "kms:GetKeyRotationStatus"), (KEY_ARN,)),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"enable automatic rotation of key {target}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        metadata = key_or_missing(ctx, target)
        if isinstance(metadata, Outcome):
            return metadata
        spec = metadata.get("KeySpec") or metadata.get("CustomerMasterKeySpec")
        if spec != "SYMMETRIC_DEFAULT" or metadata.get("Origin") != "AWS_KMS":
            return Outcome(Status.SKIPPED, f"key {target} ({spec}, {metadata.get('Origin')}) does not support rotation")
        if keys(ctx).rotation_enabled(target.name):
            return Outcome(Status.SKIPPED, f"rotation of key {target} is already enabled")
        keys(ctx).enable_key_rotation(target.name)
        claim, prior = f"enabled rotation of key {target}", {"KeyRotationEnabled": False}
        if keys(ctx).dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        return checked(claim, None if keys(ctx).rotation_enabled(target.name) else "rotation disabled", prior)

    reads_back = "the key's rotation status"
