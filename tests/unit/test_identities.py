"""Who to revoke, resolved from public samples and the project's events (offline)."""

from __future__ import annotations

from chalicelib.actions.k8s import rbac_grants
from chalicelib.incident import PrincipalKind, PrincipalRole, principal_from_arn
from chalicelib.response import identities
from chalicelib.sources import guardduty
from chalicelib.sources.envelope import split_document
from tests.conftest import GUARDDUTY_SAMPLES, load_event, load_json


def _sample(name: str) -> object:
    (event,) = split_document(load_json(GUARDDUTY_SAMPLES / name))
    return guardduty.to_incident(event)


def test_arns_become_roles_and_users() -> None:
    session = principal_from_arn("arn:aws:sts::111122223333:assumed-role/deploy/ci-run-42", PrincipalRole.CALLER)
    assert session is not None
    assert (session.kind, session.name, session.arn) == (
        PrincipalKind.IAM_ROLE,
        "deploy",
        "arn:aws:iam::111122223333:role/deploy",
    )
    user = principal_from_arn("arn:aws:iam::111122223333:user/team/alice", PrincipalRole.CALLER)
    assert user is not None
    assert (user.kind, user.name) == (PrincipalKind.IAM_USER, "alice")
    assert principal_from_arn("system:anonymous", PrincipalRole.CALLER) is None


def test_kubernetes_caller_with_iam_credentials_is_a_role_to_revoke() -> None:
    incident = guardduty.to_incident(load_event("credential-access-kubernetes-malicious-ip-caller"))
    roles = identities.roles(incident, None, None, [])
    assert [t.name for t in roles] == ["arn:aws:iam::123456789012:role/developer"]
    assert [t.name for t in identities.eks_principals(incident)] == [roles[0].name]


def test_an_iam_user_finding_names_the_user_and_its_key() -> None:
    incident = _sample("UnauthorizedAccess_IAMUser_TorIPCaller.eventbridge.json")
    (user,) = identities.users(incident)  # type: ignore[arg-type]
    assert user.name.endswith(":user/GeneratedFindingUserName")
    assert user.attributes["access_key_id"] == "GeneratedFindingAccessKeyId"


def test_the_exfiltrated_credentials_are_the_instance_role() -> None:
    incident = guardduty.to_incident(load_event("unauthorized-access-instance-credential-exfiltration-outside-aws"))
    principal = incident.principals[0]
    assert principal.kind is PrincipalKind.IAM_ROLE
    assert principal.involved_as is PrincipalRole.CREDENTIALS


def test_a_service_account_caller_and_a_pods_service_account_become_their_roles_when_resolved() -> None:
    real = _sample("bare/PrivilegeEscalation_Kubernetes_PrivilegedContainer.real-get-findings-cli.json")
    assert [t.name for t in identities.roles(real, None, None, [])] == [  # type: ignore[arg-type]
        "<IAM role of service account argocd/argocd-application-controller>"
    ]
    pod = guardduty.to_incident(load_event("execution-kubernetes-exec-in-kube-system-pod"))
    workload = [p for p in pod.principals if p.involved_as is PrincipalRole.WORKLOAD]
    assert [p.name for p in workload] == ["system:serviceaccount:kube-system:aws-node"]


def test_a_node_finding_names_its_instance_profile() -> None:
    node = guardduty.to_incident(load_event("cryptocurrency-ec2-bitcoin-tool-worker-node"))
    (profile,) = [p for p in node.principals if p.kind is PrincipalKind.INSTANCE_PROFILE]
    assert profile.name == "eks-demo-general-node"
    assert [t.name for t in identities.roles(node, None, None, [])] == [
        "<role of instance profile eks-demo-general-node>"
    ]


def test_anonymous_callers_have_nothing_to_revoke_but_bindings_to_remove() -> None:
    incident = _sample("own/Discovery_Kubernetes_SuccessfulAnonymousAccess.json")
    assert identities.roles(incident, None, None, []) == []  # type: ignore[arg-type]
    assert identities.eks_principals(incident) == []  # type: ignore[arg-type]
    named = guardduty.to_incident(load_event("policy-kubernetes-admin-access-to-default-service-account"))
    (binding,) = identities.bindings(named, None)
    assert (binding.name, binding.namespace, binding.attributes["kind"]) == ("default-admin", "tools", "RoleBinding")


def test_dangerous_grants_and_system_bindings() -> None:
    anonymous = {"roleRef": {"name": "view"}, "subjects": [{"kind": "Group", "name": "system:unauthenticated"}]}
    admin = {
        "roleRef": {"name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "a"}],
    }
    fine = {
        "roleRef": {"name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "ops", "namespace": "a"}],
    }
    assert rbac_grants.dangerous_grant(anonymous) == "grants view to system:unauthenticated"
    assert rbac_grants.dangerous_grant(admin) == "grants cluster-admin to service account a/default"
    assert rbac_grants.dangerous_grant(fine) is None
    assert rbac_grants.is_system_binding({"metadata": {"name": "system:public-info-viewer"}})
    assert rbac_grants.is_system_binding(
        {"metadata": {"name": "x", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}}
    )
