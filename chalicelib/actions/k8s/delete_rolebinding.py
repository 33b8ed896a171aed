"""k8s:delete-rolebinding: remove a binding that grants anonymous access or cluster-admin to a default SA."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.k8s.rbac_grants import dangerous_grant, is_system_binding
from chalicelib.interfaces import Outcome, RBACRule, Status, Target, checked

RBAC_GROUP = "rbac.authorization.k8s.io"


class DeleteRoleBinding(Action):
    """Delete the (Cluster)RoleBinding the finding names, and any other that grants access to
    `system:anonymous` / `system:unauthenticated` or `cluster-admin` to a `default` service
    account. Kubernetes' own `system:` bindings are never touched; a binding that no longer
    grants such access is left alone. The deleted manifest is recorded for undo.

    Example::

        - action: k8s:delete-rolebinding
    """

    name = "k8s:delete-rolebinding"
    contains = True
    keeps = (
        "the deleted binding is saved (result and evidence) for a human to re-apply: recreating a binding is "
        "an escalation the responder is never given"
    )
    target_kind = "binding"
    summary = "delete a binding granting anonymous access, or cluster-admin to a default service account"
    rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule(RBAC_GROUP, "clusterrolebindings", ("delete", "get", "list")),
        RBACRule(RBAC_GROUP, "rolebindings", ("delete", "get", "list")),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"delete {target.attributes.get('kind', 'binding')} {target}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        kind = target.attributes.get("kind", "ClusterRoleBinding")
        binding = ctx.kube.get_binding(kind, target.namespace, target.name)
        if binding is None:
            return Outcome(Status.SKIPPED, f"{kind} {target} no longer exists")
        binding["kind"] = kind
        if is_system_binding(binding):
            return Outcome(Status.SKIPPED, f"{kind} {target} is a Kubernetes default binding; never deleted")
        why = dangerous_grant(binding)
        if why is None:
            return Outcome(
                Status.SKIPPED, f"{kind} {target} no longer grants anonymous or default-service-account admin access"
            )
        ctx.kube.delete_binding(kind, target.namespace, target.name)
        claim, prior = f"deleted {kind} {target}, which {why}", {"deleted": binding}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        left = ctx.kube.get_binding(kind, target.namespace, target.name)
        return checked(claim, None if left is None else "the binding still exists", prior)

    reads_back = "the binding (no longer found)"
