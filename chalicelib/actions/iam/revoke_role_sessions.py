"""iam:revoke-role-sessions: deny every session of the role issued before now."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.iam.common import identity, name_of, release_inline_policy
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked

POLICY_NAME = "eks-responder-revoke-older-sessions"
ROLE_ARN = "arn:aws:iam::{account}:role/*"


def revoke_document(incident_id: str, cutoff: str) -> dict[str, Any]:
    """AWS's "revoke older sessions" policy: deny everything to tokens issued before the cut-off."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RevokeOlderSessions" + re.sub(r"[^A-Za-z0-9]", "", incident_id)[:80],
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}},
            }
        ],
    }


class RevokeParams(Params, frozen=True):
    # A node role is shared by every node of its group: revoking it takes them all off AWS.
    allow_node_roles: bool = False


def node_role(target: Target, role: dict[str, Any]) -> bool:
    """The role of an instance profile: EC2 assumes it (every node of a group shares it)."""
    if target.attributes.get("node_role") == "true":
        return True
    trust = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(trust, str):
        import json
        from urllib.parse import unquote

        trust = json.loads(unquote(trust))
    statements = trust.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        services = (statement.get("Principal") or {}).get("Service") if isinstance(statement, dict) else None
        if "ec2.amazonaws.com" in ([services] if isinstance(services, str) else services or []):
            return True
    return False


class RevokeRoleSessions(Action):
    """Attach one inline policy that denies every session issued before now: running sessions
    (stolen node, IRSA or caller credentials) stop working, new ones keep working.

    A later incident moves the cut-off in the same policy; nothing piles up. The policy it
    replaced is recorded, so it can be undone.

    Node (EC2 instance) roles are spared unless the rule sets `allow_node_roles: true`.

    Example::

        - action: iam:revoke-role-sessions
          params: {allow_node_roles: false}
    """

    name = "iam:revoke-role-sessions"
    contains = True
    target_kind = "role"
    params_model = RevokeParams
    summary = "deny every session of the role issued before now (aws:TokenIssueTime)"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("iam:GetRole", "iam:GetRolePolicy", "iam:PutRolePolicy"), (ROLE_ARN,)),
    )

    release_iam: ClassVar[tuple[IAMStatement, ...]] = (IAMStatement(("iam:DeleteRolePolicy",), (ROLE_ARN,)),)
    releases = f"removes the {POLICY_NAME} inline policy (or puts back the cut-off an earlier incident had set)"
    keeps = "sessions refused meanwhile were refused; their holders must sign in again"

    def describe(self, target: Target, params: Params) -> str:
        return f"attach {POLICY_NAME} to role {target}: deny sessions issued before now"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        wanted_sid = revoke_document(ctx.incident.id, "")["Statement"][0]["Sid"]
        return release_inline_policy(
            identity(ctx), str(prior.get("role") or name_of(target.name)), POLICY_NAME,
            lambda current: any(s.get("Sid") == wanted_sid for s in current.get("Statement", [])),
            prior.get("previous_document"), force=force,
            said=(f"the earlier cut-off of {POLICY_NAME} put back",
                  f"{POLICY_NAME} removed; new and existing sessions work again"),
        )  # fmt: skip

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert isinstance(params, RevokeParams)
        api = identity(ctx)
        role = name_of(target.name)
        described = api.get_role(role)
        if described is None:
            return Outcome(Status.SKIPPED, f"role {target} no longer exists")
        if node_role(target, described) and not params.allow_node_roles:
            return Outcome(
                Status.SKIPPED,
                f"spared: {role} is a node (EC2 instance) role shared by every node that uses it; revoking it would "
                "cut them all off AWS. Contain the instance instead (ec2:isolate-instance), or set "
                "`allow_node_roles: true` on the rule",
            )
        existing = api.role_policy(role, POLICY_NAME)
        wanted_sid = revoke_document(ctx.incident.id, "")["Statement"][0]["Sid"]
        if existing and any(s.get("Sid") == wanted_sid for s in existing.get("Statement", [])):
            cutoff = existing["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            return Outcome(
                Status.SKIPPED, f"sessions of role {role} already revoked for this incident (before {cutoff})"
            )
        cutoff = ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        document = revoke_document(ctx.incident.id, cutoff)
        api.put_role_policy(role, POLICY_NAME, document)
        moved = " (moved the earlier cut-off)" if existing else ""
        detail = f"role {role}: sessions issued before {cutoff} denied by inline policy {POLICY_NAME}{moved}"
        prior = {"role": role, "policy": POLICY_NAME, "previous_document": existing}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, detail, prior)
        now = api.role_policy(role, POLICY_NAME)
        return checked(detail, None if now == document else f"inline policy {POLICY_NAME} is {_said(now)}", prior)

    reads_back = "the role's inline deny policy, compared with the one written"


def _said(document: dict[str, Any] | None) -> str:
    return "absent" if document is None else "a different document"
