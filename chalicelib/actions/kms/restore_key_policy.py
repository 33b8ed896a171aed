"""kms:restore-key-policy: put back the key's last known good policy."""

from __future__ import annotations

import json
from typing import ClassVar

from chalicelib.actions.base import Action, ActionContext, IAMStatement, Outcome, Params, Status, Target
from chalicelib.actions.kms.common import KEY_ARN, key_id, key_or_missing, keys


def _same(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b


class RestoreKeyPolicy(Action):
    """Restore the policy stored by the scheduled snapshot (`refresh_key_policies`) if the key's
    policy differs from it. The replaced policy is recorded, so it can be put back.

    Example::

        - action: kms:restore-key-policy
    """

    name = "kms:restore-key-policy"
    target_kind = "key"
    summary = "restore the key's last known good policy (kept by the scheduled snapshot)"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy"), (KEY_ARN,)),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"restore the last known good policy of key {target}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        metadata = key_or_missing(ctx, target)
        if isinstance(metadata, Outcome):
            return metadata
        good = keys(ctx).last_good_policy(key_id(target.name))
        if good is None:
            return Outcome(Status.FAILED, f"no last known good policy stored for key {target}: nothing to restore to")
        current = keys(ctx).key_policy(target.name)
        if _same(current, good["policy"]):
            return Outcome(Status.SKIPPED, f"key {target} already has its last known good policy")
        keys(ctx).put_key_policy(target.name, good["policy"])
        detail = f"restored the policy of key {target} stored at {good.get('stored_at', '?')}"
        return Outcome(Status.SUCCEEDED, detail, {"replaced_policy": current})
