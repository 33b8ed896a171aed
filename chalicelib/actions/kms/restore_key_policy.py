"""kms:restore-key-policy: put back the policy that was in force before the tampering call."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import ClassVar

from chalicelib import key_policies
from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.kms.common import KEY_ARN, key_or_missing, keys
from chalicelib.incident import PrincipalRole
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked
from chalicelib.key_policies import key_id


def _same(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b


class RestoreKeyPolicy(Action):
    """Restore the newest trusted policy version that was in force before the call's eventTime
    (versions are recorded by the scheduled snapshot, `refresh_key_policies`). The policy the
    call wrote is marked distrusted first, so no later snapshot can make it a restore target.
    The replaced policy is recorded, so it can be put back.

    Example::

        - action: kms:restore-key-policy
    """

    name = "kms:restore-key-policy"
    contains = True
    keeps = "the tampered policy is not put back; it is in the result and the policy history"
    target_kind = "key"
    summary = "restore the key policy in force before the tampering call (kept by the scheduled snapshot)"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy"), (KEY_ARN,)),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"restore the policy of key {target} in force before the call (newest trusted version)"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        metadata = key_or_missing(ctx, target)
        if isinstance(metadata, Outcome):
            return metadata
        ident = key_id(target.name)
        details = ctx.incident.details
        written = details.get("written_policy_sha256")
        stamp = str(details.get("event_time") or "")
        notes = []
        if written:
            caller = next((p.arn for p in ctx.incident.principals if p.involved_as is PrincipalRole.CALLER), None)
            if keys(ctx).distrust_policy(ident, written, caller or "unknown", stamp):
                notes.append(f"the written policy ({written[:12]}…) is distrusted: never restored")
        when = key_policies.event_time(stamp)
        good = keys(ctx).good_policy_before(ident, when)
        if good is None:
            before = f" from before {stamp}" if when else ""
            return Outcome(Status.FAILED, f"no trusted policy of key {target} stored{before}: nothing to restore to")
        current = keys(ctx).key_policy(target.name)
        if _same(current, good["policy"]):
            return Outcome(
                Status.SKIPPED, "; ".join([f"key {target} already has the policy in force before the call", *notes])
            )
        keys(ctx).put_key_policy(target.name, good["policy"])
        detail = f"restored the policy of key {target} first seen at {good.get('first_seen', '?')}"
        prior = {"replaced_policy": current}
        if keys(ctx).dry_run:
            return Outcome(Status.SUCCEEDED, "; ".join([detail, *notes]), prior)
        held = _same(keys(ctx).key_policy(target.name), good["policy"])
        outcome = checked(detail, None if held else "a different policy in force", prior)
        return replace(outcome, detail="; ".join([outcome.detail, *notes]))

    reads_back = "the key policy in force, compared with the one restored"
