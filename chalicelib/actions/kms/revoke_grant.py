"""kms:revoke-grant: revoke the key's grants to principals outside the allowed accounts."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.iam.common import account_of
from chalicelib.actions.kms.common import KEY_ARN, key_or_missing, keys
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked


def outside(grant: dict[str, Any], allowed: set[str]) -> bool:
    """A grant to an IAM principal of another account. Service principals are left alone."""
    principal = str(grant.get("GranteePrincipal", ""))
    return principal.startswith("arn:") and account_of(principal) not in allowed


class RevokeGrant(Action):
    """Revoke every grant on the key whose grantee is an IAM principal outside the finding's
    account and ALLOWED_ACCOUNTS; the revoked grants are recorded.

    Example::

        - action: kms:revoke-grant
    """

    name = "kms:revoke-grant"
    contains = True
    keeps = "revoked grants are not recreated (the grant is in the result for a human)"
    target_kind = "key"
    summary = "revoke the key's grants to principals outside the allowed accounts"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("kms:DescribeKey", "kms:ListGrants", "kms:RevokeGrant"), (KEY_ARN,)),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"revoke grants on key {target} to principals outside the allowed accounts"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        metadata = key_or_missing(ctx, target)
        if isinstance(metadata, Outcome):
            return metadata
        allowed = {ctx.incident.account, str(metadata.get("AWSAccountId", "")), *ctx.settings.allowed_accounts}
        foreign = [g for g in keys(ctx).grants(target.name) if outside(g, allowed)]
        if not foreign:
            return Outcome(Status.SKIPPED, f"key {target} has no grant to a principal outside the allowed accounts")
        for grant in foreign:
            keys(ctx).revoke_grant(target.name, str(grant["GrantId"]))
        listed = ", ".join(f"{g['GrantId']} ({g.get('GranteePrincipal')})" for g in foreign)
        claim, prior = f"revoked grants on key {target}: {listed}", {"revoked_grants": foreign}
        if keys(ctx).dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        revoked = {str(g["GrantId"]) for g in foreign}
        left = [str(g["GrantId"]) for g in keys(ctx).grants(target.name) if str(g.get("GrantId")) in revoked]
        return checked(claim, f"grant(s) {', '.join(left)} still listed" if left else None, prior)

    reads_back = "the key's grants (the revoked ones no longer listed)"
