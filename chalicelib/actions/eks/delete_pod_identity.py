"""eks:delete-pod-identity-association: a compromised pod's service account loses its AWS role."""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import unquote

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.iam.common import identity, identity_static_block, name_of
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"


def _trust_lines(role: dict[str, Any], subject: str) -> list[str]:
    """The trust policy's statements whose conditions let this service account assume the role."""
    document = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(document, str):
        document = json.loads(unquote(document))
    statements = document.get("Statement") or []
    found = []
    for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
        for operator, pairs in ((statement or {}).get("Condition") or {}).items():
            for key, values in (pairs or {}).items():
                listed = values if isinstance(values, list) else [values]
                if key.endswith(":sub") and any(_allows(str(v), subject) for v in listed):
                    found.append(f"statement {statement.get('Sid') or index}: {operator} {key} = {listed}")
    return found


def _allows(pattern: str, subject: str) -> bool:
    from fnmatch import fnmatchcase

    return pattern == subject or ("*" in pattern and fnmatchcase(subject, pattern))


class DeletePodIdentityAssociation(Action):
    """Cut the pod's service account off its AWS role: delete its EKS Pod Identity associations
    (each saved in the result), so the agent hands no new credentials to any pod of that service
    account; `iam:revoke-role-sessions` ends the ones already issued. For IRSA there is nothing
    to delete in EKS: the result names the trust policy lines that let the service account in.

    Never for a protected namespace's service account or a protected, platform or responder role.

    Example::

        - action: eks:delete-pod-identity-association
    """

    name = "eks:delete-pod-identity-association"
    contains = True
    target_kind = "pod"
    uses_identity = True
    disrupts_workload = True  # every pod of the service account loses its AWS access
    summary = "delete the Pod Identity associations of the pod's service account (IRSA: names the trust lines)"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("eks:ListPodIdentityAssociations",), ("arn:aws:eks:{region}:{account}:cluster/*",)),
        IAMStatement(
            ("eks:DescribePodIdentityAssociation", "eks:DeletePodIdentityAssociation"),
            ("arn:aws:eks:{region}:{account}:podidentityassociation/*/*",),
        ),
        IAMStatement(("iam:GetRole",), ("arn:aws:iam::{account}:role/*",)),
    )
    keeps = (
        "a deleted association is not re-created (that would hand the role back to whoever holds the pod): "
        "its role, namespace and service account are in the result for a human once the workload is clean"
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"delete the EKS Pod Identity associations of the service account of pod {target} (IRSA: report)"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert target.namespace is not None
        pod = ctx.kube.get_pod(target.namespace, target.name)
        if pod is None:
            return Outcome(Status.SKIPPED, f"pod {target} no longer exists")
        account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
        where = f"{target.namespace}/{account}"
        cluster = ctx.incident.cluster or ""
        gateway = identity(ctx)
        deleted: list[dict[str, Any]] = []
        done: list[str] = []
        for association in gateway.pod_identity_associations(cluster, target.namespace, account):
            role = str(association.get("roleArn") or "")
            why = identity_static_block(Target("role", role), ctx.settings, ctx.incident.account)
            if why:
                done.append(f"kept association {association.get('associationId')}: {why}")
                continue
            gateway.delete_pod_identity_association(cluster, str(association["associationId"]))
            deleted.append({k: association.get(k) for k in ("associationId", "roleArn", "namespace",
                                                                "serviceAccount", "clusterName", "tags")})  # fmt: skip
            done.append(f"deleted Pod Identity association {association['associationId']} (role {role})")
        irsa = ((ctx.kube.get_service_account(target.namespace, account) or {}).get("metadata") or {}).get(
            "annotations"
        ) or {}
        if irsa.get(IRSA_ANNOTATION):
            arn = str(irsa[IRSA_ANNOTATION])
            found = gateway.get_role(name_of(arn))
            lines = _trust_lines(found or {}, f"system:serviceaccount:{target.namespace}:{account}")
            said = "; ".join(lines) if lines else "no trust statement names it (the annotation alone grants nothing)"
            done.append(f"IRSA role {arn} trusts service account {where} by: {said} (not changed: edit the trust "
                        "policy to cut it off; iam:revoke-role-sessions ends its sessions)")  # fmt: skip
        if not deleted:
            reason = "; ".join(done) or f"service account {where} has no Pod Identity association and no IRSA role"
            return Outcome(Status.SKIPPED, reason)
        claim, prior = f"service account {where}: {'; '.join(done)}", {"associations": deleted}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        gone = {str(a["associationId"]) for a in deleted}
        listed = gateway.pod_identity_associations(cluster, target.namespace, account)
        left = [str(a.get("associationId")) for a in listed if str(a.get("associationId")) in gone]
        return checked(claim, f"association(s) {', '.join(left)} still listed" if left else None, prior)

    reads_back = "the service account's Pod Identity associations (the deleted ones no longer listed)"
