"""The Kubernetes executor: the only module that imports lightkube.

Every write goes out with server-side dry-run when the responder is in dry-run mode, so a
dry run is validated and authorised by the API server exactly like the real request.
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx2
from lightkube import ApiError, Client, KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.apps_v1 import DaemonSet, ReplicaSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Event, Node, Pod, Service, ServiceAccount
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding
from lightkube.types import PatchType

from chalicelib import dry_run
from chalicelib.actions.base import RBACRule
from chalicelib.errors import ClusterAccessError
from chalicelib.executors.eks_auth import eks_kubeconfig

if TYPE_CHECKING:
    from collections.abc import Callable

# What resolving targets needs (owners of pods, nodes by provider id), beyond the actions.
RBAC: tuple[RBACRule, ...] = (
    RBACRule("", "pods", ("get", "list")),
    RBACRule("", "nodes", ("get", "list")),
    RBACRule("apps", "replicasets", ("list",)),
    RBACRule("batch", "jobs", ("list",)),
    RBACRule("", "serviceaccounts", ("get",)),  # a pod's IRSA role is an annotation of its service account
)

_NOT_FOUND = 404


def _missing(exc: Exception) -> bool:
    """A 404: the object, or its whole API (a group nobody serves answers in plain text), is not there."""
    if isinstance(exc, ApiError):
        return exc.status.code == _NOT_FOUND
    return isinstance(exc, httpx2.HTTPStatusError) and exc.response.status_code == _NOT_FOUND


def _generic(api_version: str, kind: str, *, namespaced: bool) -> Any:
    """The lightkube resource of any API and kind (plural by English rule, as CRDs name them)."""
    group, _, version = api_version.rpartition("/")
    plural = kind.lower()[:-1] + "ies" if kind.endswith("y") else kind.lower() + "s"
    make = create_namespaced_resource if namespaced else create_global_resource
    return make(group, version, kind, plural)


def _to_dict(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = obj.to_dict()
    return data


TRANSIENT_STATUS = {429, 500, 502, 503, 504}
ATTEMPTS = 3  # one call and two retries: a Kubernetes API that is down for longer is reported, not waited for
BACKOFF_BASE, BACKOFF_CAP = 0.2, 2.0


def transient(exc: BaseException) -> bool:
    """A failure worth one more try: a timeout, a dropped connection, throttling or a server error."""
    if isinstance(exc, httpx2.TimeoutException | httpx2.TransportError):
        return True
    response = getattr(exc, "response", None)
    return isinstance(exc, httpx2.HTTPStatusError) and response is not None and response.status_code in TRANSIENT_STATUS


class RetryingClient:
    """lightkube's Client with bounded retries, exponential backoff and full jitter.

    Lists and logs are read whole inside the retry, so a connection lost halfway through a
    listing is retried too. A create retried after a lost response may find its object: callers
    treat 409 as "already there".
    """

    def __init__(
        self, client: Client, *, attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self._attempts = attempts
        self._sleep = sleep
        self.config = getattr(client, "config", None)

    def _retry(self, call: Callable[[], Any]) -> Any:
        for attempt in range(self._attempts):
            try:
                return call()
            except Exception as exc:
                if attempt + 1 >= self._attempts or not transient(exc):
                    raise
                self._sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.get(*args, **kwargs))

    def list(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: [*self._client.list(*args, **kwargs)])

    def log(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: [*self._client.log(*args, **kwargs)])

    def patch(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.patch(*args, **kwargs))

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.delete(*args, **kwargs))

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.create(*args, **kwargs))

    def close(self) -> None:
        self._client.close()


class KubeGateway:
    """lightkube behind the small KubeAPI protocol the actions use."""

    def __init__(self, client: Client | RetryingClient, *, dry_run: bool) -> None:
        self._client = client
        self._dry_run = dry_run
        # One gateway serves one incident: an object read once is not read again by the next step,
        # until this gateway writes it (then the next read, a verification say, goes to the server).
        self._read: dict[tuple[str, str | None, str], dict[str, Any] | None] = {}

    def _get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        key = (res.__name__, namespace, name)
        if key not in self._read:
            try:
                self._read[key] = _to_dict(self._client.get(res, name, namespace=namespace))
            except ApiError as exc:
                if exc.status.code != _NOT_FOUND:
                    raise
                self._read[key] = None
        found = self._read[key]
        return copy.deepcopy(found) if found is not None else None  # callers may change what they get

    def _wrote(self, res: Any, name: str, namespace: str | None = None) -> None:
        self._read.pop((res.__name__, namespace, name), None)

    def _answered(self, res: Any, name: str, namespace: str | None, answer: Any) -> None:
        """The server's answer to a patch is the object as it stands after it (admission included):
        the next step reads it from there instead of asking again."""
        if hasattr(answer, "to_dict"):
            self._read[(res.__name__, namespace, name)] = _to_dict(answer)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(Pod, name, namespace)

    def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        return [_to_dict(p) for p in self._client.list(Pod, namespace=namespace)]

    def pods_with_ip(self, ip: str) -> list[dict[str, Any]]:
        """Pods of every namespace with this address (hostNetwork pods share their node's)."""
        return [_to_dict(p) for p in self._client.list(Pod, namespace="*", fields={"status.podIP": ip})]

    def list_replicasets(self, namespace: str) -> list[dict[str, Any]]:
        return [_to_dict(p) for p in self._client.list(ReplicaSet, namespace=namespace)]

    def list_jobs(self, namespace: str) -> list[dict[str, Any]]:
        return [_to_dict(p) for p in self._client.list(Job, namespace=namespace)]

    def _checked(self, call: str) -> None:
        if self._dry_run:
            dry_run.checked(f"Kubernetes {call}", "server-side dryRun=All")

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._wrote(Pod, name, namespace)
        answer = self._client.patch(
            Pod, name, patch, namespace=namespace, patch_type=PatchType.MERGE, dry_run=self._dry_run
        )
        self._answered(Pod, name, namespace, answer)
        self._checked("patch pod")

    def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None) -> None:
        self._wrote(Pod, name, namespace)
        self._client.delete(Pod, name, namespace=namespace, grace_period=grace_period_seconds, dry_run=self._dry_run)
        self._checked("delete pod")

    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        events = self._client.list(Event, namespace=namespace, fields={"involvedObject.name": name})
        return [_to_dict(e) for e in events]

    def pod_log(self, namespace: str, name: str, container: str, tail_lines: int) -> str:
        return "".join(self._client.log(name, namespace=namespace, container=container, tail_lines=tail_lines))

    def get_node(self, name: str) -> dict[str, Any] | None:
        return self._get(Node, name)

    def list_nodes(self) -> list[dict[str, Any]]:
        return [_to_dict(n) for n in self._client.list(Node)]

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        self._wrote(Node, name)
        answer = self._client.patch(Node, name, patch, patch_type=PatchType.MERGE, dry_run=self._dry_run)
        self._answered(Node, name, None, answer)
        self._checked("patch node")

    def get_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(NetworkPolicy, name, namespace)

    def list_network_policies(self, namespace: str) -> list[dict[str, Any]]:
        return [_to_dict(p) for p in self._client.list(NetworkPolicy, namespace=namespace)]

    def delete_network_policy(self, namespace: str, name: str) -> None:
        self._wrote(NetworkPolicy, name, namespace)
        try:
            self._client.delete(NetworkPolicy, name, namespace=namespace, dry_run=self._dry_run)
        except ApiError as exc:
            if exc.status.code != 404:  # noqa: PLR2004
                raise
        self._checked("delete NetworkPolicy")

    def patch_network_policy(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._wrote(NetworkPolicy, name, namespace)
        self._client.patch(
            NetworkPolicy, name, patch, namespace=namespace, patch_type=PatchType.MERGE, dry_run=self._dry_run
        )
        self._checked("patch NetworkPolicy")

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return [_to_dict(s) for s in self._client.list(Service, namespace=namespace)]

    def list_daemonsets(self) -> list[dict[str, Any]]:
        return [_to_dict(d) for d in self._client.list(DaemonSet, namespace="*")]

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(ServiceAccount, name, namespace)

    def list_bindings(self) -> list[dict[str, Any]]:
        cluster_wide = [_to_dict(b) for b in self._client.list(ClusterRoleBinding)]
        namespaced = [_to_dict(b) for b in self._client.list(RoleBinding, namespace="*")]
        for binding in cluster_wide:
            binding["kind"] = "ClusterRoleBinding"
        for binding in namespaced:
            binding["kind"] = "RoleBinding"
        return cluster_wide + namespaced

    def get_binding(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        if kind == "ClusterRoleBinding":
            return self._get(ClusterRoleBinding, name)
        return self._get(RoleBinding, name, namespace)

    def delete_binding(self, kind: str, namespace: str | None, name: str) -> None:
        self._wrote(ClusterRoleBinding, name)
        self._wrote(RoleBinding, name, namespace)
        if kind == "ClusterRoleBinding":
            self._client.delete(ClusterRoleBinding, name, dry_run=self._dry_run)
        else:
            self._client.delete(RoleBinding, name, namespace=namespace, dry_run=self._dry_run)
        self._checked(f"delete {kind}")

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(ConfigMap, name, namespace)

    def replace_config_map_data(self, namespace: str, name: str, data: dict[str, str], resource_version: str) -> None:
        # The resourceVersion makes the write fail, rather than lose an edit made since we read it.
        self._wrote(ConfigMap, name, namespace)
        patch = {"metadata": {"resourceVersion": resource_version}, "data": data}
        self._client.patch(
            ConfigMap, name, patch, namespace=namespace, patch_type=PatchType.MERGE, dry_run=self._dry_run
        )
        self._checked("patch configmap")

    def _create_any(self, body: dict[str, Any], namespace: str | None) -> str:
        """Create an object of any API: "created", "exists" or "unsupported" (the API is not served)."""
        kind = str(body["kind"])
        resource = _generic(str(body["apiVersion"]), kind, namespaced=namespace is not None)
        extra = {"namespace": namespace} if namespace is not None else {}
        try:
            self._client.create(resource.from_dict(body), dry_run=self._dry_run, **extra)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if isinstance(exc, ApiError) and exc.status.code == 409:  # noqa: PLR2004
                return "exists"
            if _missing(exc):
                return "unsupported"
            raise
        self._checked(f"create {kind}")
        return "created"

    def create_cluster_object(self, body: dict[str, Any]) -> str:
        """Create a cluster-scoped object of any API; "unsupported" when the cluster does not serve its API."""
        return self._create_any(body, None)

    def create_namespaced_object(self, namespace: str, body: dict[str, Any]) -> str:
        """Create a namespaced object of any API: "created", "exists" or "unsupported"."""
        return self._create_any(body, namespace)

    def delete_cluster_object(self, api_version: str, kind: str, name: str) -> bool:
        """Delete a cluster-scoped object of any API; False when it (or its API) is not there."""
        return self._delete_any(api_version, kind, name, None)

    def delete_namespaced_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        return self._delete_any(api_version, kind, name, namespace)

    def _delete_any(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        extra: dict[str, Any] = {"namespace": namespace} if namespace is not None else {}
        try:
            self._client.delete(_generic(api_version, kind, namespaced=namespace is not None), name,
                                dry_run=self._dry_run, **extra)  # fmt: skip
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _missing(exc):
                return False
            raise
        self._checked(f"delete {kind}")
        return True

    def get_namespaced_object(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object of any namespaced API; None when it (or its API) is not there."""
        try:
            found = self._client.get(_generic(api_version, kind, namespaced=True), name, namespace=namespace)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _missing(exc):
                return None
            raise
        return _to_dict(found)

    def patch_namespaced_object(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        self._client.patch(_generic(api_version, kind, namespaced=True), name, patch, namespace=namespace,
                           patch_type=PatchType.MERGE, dry_run=self._dry_run)  # fmt: skip
        self._checked(f"patch {kind}")

    def can(self, group: str, resource: str, verb: str, name: str | None = None) -> bool:
        """Whether this identity may `verb` the resource, cluster-wide: the API server's own answer."""
        from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
        from lightkube.resources.authorization_v1 import SelfSubjectAccessReview

        attributes = ResourceAttributes(group=group, resource=resource, verb=verb, name=name)
        review = SelfSubjectAccessReview(spec=SelfSubjectAccessReviewSpec(resourceAttributes=attributes))
        answer = self._client.create(review)
        return bool(answer.status and answer.status.allowed)

    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> None:
        self._wrote(NetworkPolicy, str(body["metadata"]["name"]), namespace)
        policy = cast("NetworkPolicy", NetworkPolicy.from_dict(body))
        try:
            self._client.create(policy, namespace=namespace, dry_run=self._dry_run)
        except ApiError as exc:
            if exc.status.code != 409:  # noqa: PLR2004 - a retried create whose first try landed: the caller verifies it
                raise
        self._checked("create NetworkPolicy")


class ClusterConnector:
    """Builds (and caches per container) a gateway for one cluster: name, region and account.

    With a kubeconfig, only a context for exactly that cluster is used: a context named like the
    cluster, or named (or pointing at a cluster entry named) by its EKS ARN, as `aws eks
    update-kubeconfig` writes them. An ARN must agree with the finding's account and region.
    There is no fallback to the current context: a finding about another cluster must never act
    on this one. Without a kubeconfig, the cluster is looked up with eks:DescribeCluster in the
    finding's region and a token is signed.
    """

    def __init__(
        self,
        *,
        kubeconfig: Path | None,
        aws_session: Callable[[], Any],
        region: str | None,
        timeout: float = 10.0,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._aws_session = aws_session
        self._region = region
        self._clients: dict[tuple[str, str, str], tuple[RetryingClient, float]] = {}
        self._timeout = httpx2.Timeout(timeout)

    def close(self) -> None:
        for client, _ in self._clients.values():
            client.close()
        self._clients.clear()

    def gateway(self, cluster: str, region: str | None, *, dry_run: bool, account: str | None = None) -> KubeGateway:
        return KubeGateway(self._client(cluster, region, account), dry_run=dry_run)

    def _client(self, cluster: str, region: str | None, account: str | None) -> RetryingClient:
        # Clusters named alike in two regions or accounts are different clusters.
        key = (account or "", region or self._region or "", cluster)
        cached = self._clients.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        if cached:
            cached[0].close()  # its token expired
        try:
            if self._kubeconfig is not None:
                kc = KubeConfig.from_file(self._kubeconfig)
                context = context_for(kc, cluster, region, account)
                config = kc.get(context_name=context)
                client, expires = Client(config, timeout=self._timeout, field_manager="eks-responder"), float("inf")
            else:
                where = region or self._region
                if not where:
                    raise ClusterAccessError(f"no region known for cluster {cluster}")
                built = eks_kubeconfig(self._aws_session(), cluster, where, account)
                kc = KubeConfig.from_dict(built.kubeconfig)
                client = Client(kc, timeout=self._timeout, field_manager="eks-responder")
                expires = built.expires_at
        except ClusterAccessError:
            raise
        except Exception as exc:
            raise ClusterAccessError(f"cannot reach cluster {cluster}: {exc}") from exc
        self._clients[key] = (RetryingClient(client), expires)
        return self._clients[key][0]


_EKS_ARN = re.compile(r"^arn:aws[a-z-]*:eks:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):cluster/(?P<name>[^/]+)$")


def context_for(kc: KubeConfig, cluster: str, region: str | None, account: str | None) -> str:
    """The kubeconfig context for exactly this cluster, or ClusterAccessError saying why there is none."""
    contexts = kc.contexts or {}
    matches: list[str] = []
    mismatched: list[str] = []
    for name, context in contexts.items():
        names = {name, str(getattr(context, "cluster", "") or "")}
        arns = [m for m in (_EKS_ARN.match(n) for n in names) if m]
        if arns:
            arn = arns[0]
            if arn["name"] != cluster:
                continue
            if (region and arn["region"] != region) or (account and arn["account"] != account):
                mismatched.append(f"{name} (account {arn['account']}, region {arn['region']})")
                continue
            matches.append(name)
        elif name == cluster:
            matches.append(name)
    if len(matches) == 1:
        return matches[0]
    where = f"cluster {cluster} (account {account or '?'}, region {region or '?'})"
    if len(matches) > 1:
        raise ClusterAccessError(f"several kubeconfig contexts match {where}: {', '.join(sorted(matches))}")
    detail = f"; contexts for a cluster of that name elsewhere: {', '.join(mismatched)}" if mismatched else ""
    raise ClusterAccessError(
        f"no kubeconfig context for {where}{detail}. Name a context after the cluster or its EKS ARN; "
        "the responder never uses another cluster's context"
    )
