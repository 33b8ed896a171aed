"""Who to revoke: the IAM roles, IAM users, EKS principals and RBAC bindings an incident involves.

Offline (a plan) they are described from the finding; against AWS and the cluster, a service
account becomes its IRSA role (annotation) or EKS Pod Identity role, and an instance profile
its role.
"""

from __future__ import annotations

from typing import Any

from chalicelib.actions.k8s.rbac_grants import ANONYMOUS, DEFAULT_ADMIN, grant_kind, is_system_binding
from chalicelib.incident import Incident, PrincipalKind, PrincipalRole
from chalicelib.interfaces import IdentityAPI, KubeAPI, Target

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
BINDING_RESOURCES = {"clusterrolebindings": "ClusterRoleBinding", "rolebindings": "RoleBinding"}


def _service_account(principal_name: str) -> tuple[str, str] | None:
    parts = principal_name.split(":")
    return (parts[2], parts[3]) if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] else None  # noqa: PLR2004


def roles(incident: Incident, kube: KubeAPI | None, identity: IdentityAPI | None, notes: list[str]) -> list[Target]:
    """IAM roles to revoke. Without kube/identity (a plan) indirect roles are only described."""
    found: dict[str, Target] = {}

    def add(arn: str, via: str, **facts: str) -> None:
        found.setdefault(arn, Target("role", arn, attributes={"via": via, **facts}))

    for principal in incident.principals:
        if principal.kind is PrincipalKind.IAM_ROLE and principal.arn:
            # Instance credentials (a node's) are the node role, whatever the finding calls them.
            node = principal.involved_as in {PrincipalRole.NODE, PrincipalRole.CREDENTIALS} and bool(
                incident.instance_ids
            )
            add(principal.arn, principal.involved_as.value, **({"node_role": "true"} if node else {}))
        elif principal.kind is PrincipalKind.SERVICE_ACCOUNT:
            account = _service_account(principal.name)
            if account is None:
                continue
            namespace, name = account
            if kube is None or identity is None:
                described = f"<IAM role of service account {namespace}/{name}>"
                found.setdefault(described, Target("role", described, resolved=False))
                continue
            for arn in _service_account_roles(incident, kube, identity, namespace, name, notes):
                add(arn, f"service account {namespace}/{name}", service_account_namespace=namespace)
        elif principal.kind is PrincipalKind.INSTANCE_PROFILE:
            if identity is None:
                described = f"<role of instance profile {principal.name}>"
                found.setdefault(described, Target("role", described, resolved=False))
                continue
            for arn in identity.instance_profile_roles(principal.name):
                add(arn, f"instance profile {principal.name}", node_role="true")
    return list(found.values())


def _service_account_roles(
    incident: Incident, kube: KubeAPI, identity: IdentityAPI, namespace: str, name: str, notes: list[str]
) -> list[str]:
    arns: list[str] = []
    account = kube.get_service_account(namespace, name)
    annotated = ((account or {}).get("metadata") or {}).get("annotations", {}) or {}
    if annotated.get(IRSA_ANNOTATION):
        arns.append(str(annotated[IRSA_ANNOTATION]))
    try:
        arns.extend(identity.pod_identity_roles(incident.cluster or "", namespace, name))
    except Exception as exc:  # noqa: BLE001 - Pod Identity is optional; IRSA may still have answered
        notes.append(f"EKS Pod Identity lookup for {namespace}/{name} failed: {exc}")
    if not arns:
        notes.append(f"service account {namespace}/{name} has no IAM role (IRSA or Pod Identity)")
    return arns


def users(incident: Incident) -> list[Target]:
    return [
        Target("user", p.arn, attributes={"access_key_id": p.access_key_id or "", "via": p.involved_as.value})
        for p in incident.principals
        if p.kind is PrincipalKind.IAM_USER and p.arn
    ]


def eks_principals(incident: Incident) -> list[Target]:
    """IAM identities that called the Kubernetes API: their EKS access is what to remove."""
    return [
        Target("principal", p.arn, attributes={"kind": p.kind.value})
        for p in incident.principals
        if p.kind in {PrincipalKind.IAM_ROLE, PrincipalKind.IAM_USER}
        and p.arn
        and p.involved_as is PrincipalRole.CALLER
    ]


def binding_target(binding: dict[str, Any]) -> Target:
    meta = binding.get("metadata") or {}
    kind = str(binding.get("kind"))
    namespace = meta.get("namespace") if kind == "RoleBinding" else None
    return Target("binding", str(meta.get("name")), namespace, attributes={"kind": kind})


def bindings(incident: Incident, kube: KubeAPI | None) -> list[Target]:
    """The binding the finding names, and any other that grants anonymous or default-SA admin access."""
    named: list[Target] = []
    call = incident.api_call
    if call and call.resource in BINDING_RESOURCES and call.name:
        kind = BINDING_RESOURCES[call.resource]
        named.append(
            Target("binding", call.name, call.namespace if kind == "RoleBinding" else None, attributes={"kind": kind})
        )
    if kube is None:
        return named or [
            Target("binding", "<bindings granting anonymous or default-service-account admin access>", resolved=False)
        ]
    # Search for the kind of grant the finding is about (both when it does not say).
    wanted = {ANONYMOUS, DEFAULT_ADMIN}
    if "AdminAccessToDefaultServiceAccount" in incident.type:
        wanted = {DEFAULT_ADMIN}
    elif "Anonymous" in incident.type or anonymous_caller(incident):
        wanted = {ANONYMOUS}
    found = {(t.attributes["kind"], t.namespace, t.name): t for t in named}
    for binding in kube.list_bindings():
        grant = grant_kind(binding)
        if grant and grant[0] in wanted and not is_system_binding(binding):
            target = binding_target(binding)
            found.setdefault((target.attributes["kind"], target.namespace, target.name), target)
    return list(found.values())


def anonymous_caller(incident: Incident) -> bool:
    """The call was unauthenticated: `system:anonymous`, or a caller of `system:unauthenticated`."""
    return any(p.kind is PrincipalKind.ANONYMOUS for p in incident.principals)


def clusters(incident: Incident, identity: IdentityAPI | None, notes: list[str]) -> list[Target]:
    """The incident's cluster, with how its API endpoint is reachable said in the report."""
    if not incident.cluster:
        return []
    if identity is not None:
        from chalicelib.actions.eks.restrict_public_endpoint import exposure

        try:
            notes.append(f"cluster {incident.cluster}: {exposure(identity.cluster_endpoint(incident.cluster))}")
        except Exception as exc:  # noqa: BLE001 - a report line, never a reason to stop
            notes.append(f"cluster {incident.cluster}: endpoint not read ({type(exc).__name__})")
    return [Target("cluster", incident.cluster)]
