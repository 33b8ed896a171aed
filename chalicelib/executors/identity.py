"""The IAM, STS and EKS executor for identity actions. IAM and EKS have no dry run: in dry-run
mode reads happen and writes are not sent."""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from chalicelib.executors import dry_run
from chalicelib.executors.lazy import LazyClient
from chalicelib.interfaces import IAMStatement

logger = logging.getLogger(__name__)
_MISSING = {"NoSuchEntity", "NoSuchEntityException", "ResourceNotFoundException"}

# What resolving identities needs, beyond the actions: instance profile -> role, Pod Identity -> role.
IAM: tuple[IAMStatement, ...] = (
    IAMStatement(("iam:GetInstanceProfile",), ("arn:aws:iam::{account}:instance-profile/*",)),
    # Whether a target carries the protection tag (PROTECTED_PRINCIPAL_TAG), and a role's path.
    IAMStatement(("iam:GetRole",), ("arn:aws:iam::{account}:role/*",)),
    IAMStatement(("iam:ListUserTags",), ("arn:aws:iam::{account}:user/*",)),
    IAMStatement(("eks:ListPodIdentityAssociations",), ("arn:aws:eks:{region}:{account}:cluster/*",)),
    IAMStatement(
        ("eks:DescribePodIdentityAssociation",), ("arn:aws:eks:{region}:{account}:podidentityassociation/*/*",)
    ),
)


# Naming an account in messages (organisations): a list call, which IAM scopes to "*" only.
ALIAS: tuple[IAMStatement, ...] = (IAMStatement(("iam:ListAccountAliases",)),)
# IAM's own rule for an alias; anything else is not shown (a member account's admin chooses it).
_ALIAS = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _not_in_eks(exc: Any) -> bool:
    """No such entry, or no such cluster in EKS (a self-managed one): both mean "none"."""
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _code(exc) in _MISSING or status == 404  # noqa: PLR2004


class IdentityGateway:
    def __init__(self, iam: Any, sts: Any, eks: Any, *, dry_run: bool) -> None:
        self._iam = iam
        self._sts = sts
        self._eks = eks
        self.dry_run = dry_run
        self._caller: str | None = None
        # One gateway serves one incident: the identity resolution and the step that acts on the
        # same service account read its associations once, until this gateway deletes one.
        self._associations: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    def caller_arn(self) -> str:
        if self._caller is None:
            self._caller = str(self._sts.get_caller_identity()["Arn"])
        return self._caller

    def get_role(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._iam.get_role(RoleName=name)["Role"])
        except self._iam.exceptions.NoSuchEntityException:
            return None

    def user_tags(self, name: str) -> list[dict[str, Any]]:
        try:
            return list(self._iam.list_user_tags(UserName=name).get("Tags") or [])
        except self._iam.exceptions.NoSuchEntityException:
            return []

    def role_policy(self, role: str, policy: str) -> dict[str, Any] | None:
        try:
            document = self._iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        except self._iam.exceptions.NoSuchEntityException:
            return None
        return dict(json.loads(document) if isinstance(document, str) else document)

    def put_role_policy(self, role: str, policy: str, document: dict[str, Any]) -> None:
        if self.dry_run:
            dry_run.not_sent("iam:PutRolePolicy")
            return
        self._iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document))

    def delete_role_policy(self, role: str, policy: str) -> None:
        if self.dry_run:
            dry_run.not_sent("iam:DeleteRolePolicy")
            return
        try:
            self._iam.delete_role_policy(RoleName=role, PolicyName=policy)
        except self._iam.exceptions.NoSuchEntityException:
            return  # gone already: the release's goal holds

    def access_keys(self, user: str) -> list[dict[str, Any]]:
        return [dict(k) for k in self._iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]

    def set_access_key_status(self, user: str, key_id: str, status: str) -> None:
        if self.dry_run:
            dry_run.not_sent("iam:UpdateAccessKey")
            return
        self._iam.update_access_key(UserName=user, AccessKeyId=key_id, Status=status)

    def instance_profile_roles(self, profile: str) -> list[str]:
        try:
            roles = self._iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
        except self._iam.exceptions.NoSuchEntityException:
            return []
        return [str(r["Arn"]) for r in roles]

    def pod_identity_associations(self, cluster: str, namespace: str, service_account: str) -> list[dict[str, Any]]:
        """The service account's Pod Identity associations, each as described (role, tags, ...)."""
        key = (cluster, namespace, service_account)
        if key not in self._associations:
            self._associations[key] = self._read_associations(cluster, namespace, service_account)
        return copy.deepcopy(self._associations[key])

    def _read_associations(self, cluster: str, namespace: str, service_account: str) -> list[dict[str, Any]]:
        try:
            listed = self._eks.list_pod_identity_associations(
                clusterName=cluster, namespace=namespace, serviceAccount=service_account
            )["associations"]
        except self._eks.exceptions.ClientError as exc:
            # No such cluster in EKS (a self-managed one) has no associations, like a cluster without any.
            if _not_in_eks(exc):
                return []
            raise
        return [
            dict(self._eks.describe_pod_identity_association(
                clusterName=cluster, associationId=association["associationId"])["association"])
            for association in listed
        ]  # fmt: skip

    def pod_identity_roles(self, cluster: str, namespace: str, service_account: str) -> list[str]:
        return [str(a["roleArn"]) for a in self.pod_identity_associations(cluster, namespace, service_account)]

    def delete_pod_identity_association(self, cluster: str, association_id: str) -> None:
        if self.dry_run:
            dry_run.not_sent("eks:DeletePodIdentityAssociation")
            return
        self._associations.clear()
        self._eks.delete_pod_identity_association(clusterName=cluster, associationId=association_id)

    def access_entry(self, cluster: str, principal_arn: str) -> dict[str, Any] | None:
        try:
            entry = dict(
                self._eks.describe_access_entry(clusterName=cluster, principalArn=principal_arn)["accessEntry"]
            )
        except self._eks.exceptions.ClientError as exc:
            if _not_in_eks(exc):
                return None
            raise
        policies = self._eks.list_associated_access_policies(clusterName=cluster, principalArn=principal_arn)
        entry["associatedAccessPolicies"] = policies.get("associatedAccessPolicies", [])
        return entry

    def delete_access_entry(self, cluster: str, principal_arn: str) -> None:
        if self.dry_run:
            dry_run.not_sent("eks:DeleteAccessEntry")
            return
        self._eks.delete_access_entry(clusterName=cluster, principalArn=principal_arn)

    def cluster_endpoint(self, cluster: str) -> dict[str, Any] | None:
        try:
            found = self._eks.describe_cluster(name=cluster)["cluster"]
        except self._eks.exceptions.ClientError as exc:
            if _not_in_eks(exc):
                return None
            raise
        return dict(found.get("resourcesVpcConfig") or {})

    def set_public_access_cidrs(self, cluster: str, cidrs: list[str]) -> None:
        if self.dry_run:
            dry_run.not_sent("eks:UpdateClusterConfig")
            return
        self._eks.update_cluster_config(name=cluster, resourcesVpcConfig={"publicAccessCidrs": cidrs})


class IdentityConnector:
    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session
        self._clients: dict[str, tuple[Any, Any, Any]] = {}
        self._account: str | None = None
        self._alias: tuple[str | None] | None = None

    def account(self) -> str:
        """The account these credentials act in (STS, once per container)."""
        if self._account is None:
            self._account = str(self._session().client("sts").get_caller_identity()["Account"])
        return self._account

    def alias(self) -> str | None:
        """The account's IAM alias, when it has one and these credentials may read it (asked once;
        a failure only means the messages show the number alone)."""
        if self._alias is None:
            found: str | None = None
            try:
                names = self._session().client("iam").list_account_aliases().get("AccountAliases") or []
                found = next((str(n) for n in names if _ALIAS.match(str(n))), None)
            except Exception as exc:  # noqa: BLE001 - a name is a courtesy, never a reason to fail
                logger.info("account alias not read", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
            self._alias = (found,)
        return self._alias[0]

    def gateway(self, region: str, *, dry_run: bool) -> IdentityGateway:
        if region not in self._clients:
            session = self._session()
            self._clients[region] = (
                LazyClient(lambda: session.client("iam", region_name=region)),
                LazyClient(lambda: session.client("sts", region_name=region)),
                LazyClient(lambda: session.client("eks", region_name=region)),
            )
        iam, sts, eks = self._clients[region]
        return IdentityGateway(iam, sts, eks, dry_run=dry_run)
