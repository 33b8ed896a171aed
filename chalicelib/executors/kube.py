"""The Kubernetes executor: the only module that speaks to an API server (through kube_http).

Every write goes out with server-side dry-run when the responder is in dry-run mode, so a
dry run is validated and authorised by the API server exactly like the real request.
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chalicelib.errors import ClusterAccessError
from chalicelib.executors import dry_run
from chalicelib.executors.eks_auth import eks_kubeconfig
from chalicelib.executors.kube_http import (
    ACCESS_REVIEW,
    CLUSTER_ROLE_BINDING,
    CONFIG_MAP,
    DAEMON_SET,
    EVENT,
    JOB,
    NETWORK_POLICY,
    NODE,
    POD,
    REPLICA_SET,
    ROLE_BINDING,
    SERVICE,
    SERVICE_ACCOUNT,
    ApiError,
    Kind,
    KubeClient,
    Kubeconfig,
    TransportError,
    generic,
)
from chalicelib.interfaces import RBACRule

# What resolving targets needs (owners of pods, nodes by provider id), beyond the actions.
RBAC: tuple[RBACRule, ...] = (
    RBACRule("", "pods", ("get", "list")),
    RBACRule("", "nodes", ("get", "list")),
    RBACRule("apps", "replicasets", ("list",)),
    RBACRule("batch", "jobs", ("list",)),
    RBACRule("", "serviceaccounts", ("get",)),  # a pod's IRSA role is an annotation of its service account
)

_NOT_FOUND = 404
_CONFLICT = 409


def _missing(exc: Exception) -> bool:
    """A 404: the object, or its whole API (a group nobody serves answers in plain text), is not there."""
    return isinstance(exc, ApiError) and exc.code == _NOT_FOUND


# 403 too: an API server that is starting answers "forbidden" until its authorizer has synced; a
# real refusal costs the same two short retries, then is reported.
TRANSIENT_STATUS = {403, 429, 500, 502, 503, 504}
ATTEMPTS = 3  # one call and two retries: a Kubernetes API that is down for longer is reported, not waited for
BACKOFF_BASE, BACKOFF_CAP = 0.2, 2.0
MAX_RETRY_AFTER = 10.0  # a server asking for longer is reported now rather than waited for


def transient(exc: BaseException) -> bool:
    """A failure worth one more try: a timeout, a dropped connection, throttling or a server error."""
    return isinstance(exc, TransportError) or (isinstance(exc, ApiError) and exc.code in TRANSIENT_STATUS)


def _wait(exc: BaseException, attempt: int) -> float | None:
    """How long to wait before the next try: what the server asked (Retry-After), else backoff with
    jitter; None when that would run past the invocation's deadline (less the time to record and tell)."""
    from chalicelib.invocation import DEADLINE_MARGIN, remaining_seconds

    asked: float | None = getattr(exc, "retry_after", None)
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
    if asked is not None:
        if asked > MAX_RETRY_AFTER:
            return None
        delay = max(delay, asked)
    left = remaining_seconds()
    if left is not None and left - DEADLINE_MARGIN < delay:
        return None
    return delay


class RetryingClient:
    """The REST client with bounded retries, exponential backoff and full jitter.

    Lists and logs are read whole inside the retry, so a connection lost halfway through a
    listing is retried too. A create retried after a lost response may find its object: callers
    treat 409 as "already there".
    """

    def __init__(
        self, client: KubeClient, *, attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self._attempts = attempts
        self._sleep = sleep
        self.server = client.server

    def _retry(self, call: Callable[[], Any]) -> Any:
        from chalicelib.invocation import check_deadline

        for attempt in range(self._attempts):
            check_deadline("the Kubernetes request")
            try:
                return call()
            except Exception as exc:
                if attempt + 1 >= self._attempts or not transient(exc):
                    raise
                delay = _wait(exc, attempt)
                if delay is None:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.get(*args, **kwargs))

    def items(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.items(*args, **kwargs))

    def log(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.log(*args, **kwargs))

    def patch(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.patch(*args, **kwargs))

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.delete(*args, **kwargs))

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: self._client.create(*args, **kwargs))

    def close(self) -> None:
        self._client.close()


class KubeGateway:
    """The API server behind the small KubeAPI protocol the actions use."""

    def __init__(self, client: KubeClient | RetryingClient, *, dry_run: bool) -> None:
        self._client = client
        self._dry_run = dry_run
        # One gateway serves one incident: an object read once is not read again by the next step,
        # until this gateway writes it (then the next read, a verification say, goes to the server).
        self._read: dict[tuple[str, str | None, str], dict[str, Any] | None] = {}

    def _get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        key = (kind.plural, namespace, name)
        if key not in self._read:
            try:
                self._read[key] = self._client.get(kind, name, namespace)
            except ApiError as exc:
                if exc.code != _NOT_FOUND:
                    raise
                self._read[key] = None
        found = self._read[key]
        return copy.deepcopy(found) if found is not None else None  # callers may change what they get

    def _wrote(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        self._read.pop((kind.plural, namespace, name), None)

    def _answered(self, kind: Kind, name: str, namespace: str | None, answer: Any) -> None:
        """The server's answer to a patch is the object as it stands after it (admission included):
        the next step reads it from there instead of asking again."""
        if isinstance(answer, dict) and answer.get("metadata"):
            self._read[(kind.plural, namespace, name)] = answer

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(POD, name, namespace)

    def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._client.items(POD, namespace))

    def pods_with_ip(self, ip: str) -> list[dict[str, Any]]:
        """Pods of every namespace with this address (hostNetwork pods share their node's)."""
        return list(self._client.items(POD, "*", fields={"status.podIP": ip}))

    def list_replicasets(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._client.items(REPLICA_SET, namespace))

    def list_jobs(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._client.items(JOB, namespace))

    def _checked(self, call: str) -> None:
        if self._dry_run:
            dry_run.checked(f"Kubernetes {call}", "server-side dryRun=All")

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._wrote(POD, name, namespace)
        self._answered(POD, name, namespace, self._client.patch(POD, name, patch, namespace, dry_run=self._dry_run))
        self._checked("patch pod")

    def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None) -> None:
        self._wrote(POD, name, namespace)
        self._client.delete(POD, name, namespace, dry_run=self._dry_run, grace_period=grace_period_seconds)
        self._checked("delete pod")

    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return list(self._client.items(EVENT, namespace, fields={"involvedObject.name": name}))

    def pod_log(self, namespace: str, name: str, container: str, tail_lines: int) -> str:
        return str(self._client.log(name, namespace, container, tail_lines))

    def get_node(self, name: str) -> dict[str, Any] | None:
        return self._get(NODE, name)

    def list_nodes(self) -> list[dict[str, Any]]:
        return list(self._client.items(NODE))

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        self._wrote(NODE, name)
        self._answered(NODE, name, None, self._client.patch(NODE, name, patch, dry_run=self._dry_run))
        self._checked("patch node")

    def get_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(NETWORK_POLICY, name, namespace)

    def list_network_policies(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._client.items(NETWORK_POLICY, namespace))

    def delete_network_policy(self, namespace: str, name: str) -> None:
        self._wrote(NETWORK_POLICY, name, namespace)
        try:
            self._client.delete(NETWORK_POLICY, name, namespace, dry_run=self._dry_run)
        except ApiError as exc:
            if exc.code != _NOT_FOUND:
                raise
        self._checked("delete NetworkPolicy")

    def patch_network_policy(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._wrote(NETWORK_POLICY, name, namespace)
        self._client.patch(NETWORK_POLICY, name, patch, namespace, dry_run=self._dry_run)
        self._checked("patch NetworkPolicy")

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._client.items(SERVICE, namespace))

    def list_daemonsets(self) -> list[dict[str, Any]]:
        return list(self._client.items(DAEMON_SET, "*"))

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(SERVICE_ACCOUNT, name, namespace)

    def list_bindings(self) -> list[dict[str, Any]]:
        cluster_wide = list(self._client.items(CLUSTER_ROLE_BINDING))
        namespaced = list(self._client.items(ROLE_BINDING, "*"))
        for binding in cluster_wide:
            binding["kind"] = "ClusterRoleBinding"
        for binding in namespaced:
            binding["kind"] = "RoleBinding"
        return cluster_wide + namespaced

    def get_binding(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        if kind == "ClusterRoleBinding":
            return self._get(CLUSTER_ROLE_BINDING, name)
        return self._get(ROLE_BINDING, name, namespace)

    def delete_binding(self, kind: str, namespace: str | None, name: str) -> None:
        self._wrote(CLUSTER_ROLE_BINDING, name)
        self._wrote(ROLE_BINDING, name, namespace)
        if kind == "ClusterRoleBinding":
            self._client.delete(CLUSTER_ROLE_BINDING, name, dry_run=self._dry_run)
        else:
            self._client.delete(ROLE_BINDING, name, namespace, dry_run=self._dry_run)
        self._checked(f"delete {kind}")

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(CONFIG_MAP, name, namespace)

    def replace_config_map_data(
        self, namespace: str, name: str, data: Mapping[str, str | None], resource_version: str
    ) -> None:
        # The resourceVersion makes the write fail, rather than lose an edit made since we read it.
        self._wrote(CONFIG_MAP, name, namespace)
        patch = {"metadata": {"resourceVersion": resource_version}, "data": data}
        self._client.patch(CONFIG_MAP, name, patch, namespace, dry_run=self._dry_run)
        self._checked("patch configmap")

    def _create_any(self, body: dict[str, Any], namespace: str | None) -> str:
        """Create an object of any API: "created", "exists" or "unsupported" (the API is not served)."""
        kind = str(body["kind"])
        resource = generic(str(body["apiVersion"]), kind, namespaced=namespace is not None)
        try:
            self._client.create(resource, body, namespace, dry_run=self._dry_run)
        except ApiError as exc:
            if exc.code == _CONFLICT:
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
        try:
            self._client.delete(generic(api_version, kind, namespaced=namespace is not None), name, namespace,
                                dry_run=self._dry_run)  # fmt: skip
        except ApiError as exc:
            if _missing(exc):
                return False
            raise
        self._checked(f"delete {kind}")
        return True

    def admission_policy_in_force(self, name: str) -> bool | str:
        """True when the ValidatingAdmissionPolicy `name` and its binding of the same name are there and
        the binding denies with that policy; otherwise what is missing, in words."""
        kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
        found = []
        for kind in kinds:
            try:
                found.append(
                    dict(self._client.get(generic("admissionregistration.k8s.io/v1", kind, namespaced=False), name))
                )
            except ApiError as exc:
                if _missing(exc):
                    return f"the cluster has no {kind} {name} (apply deploy/rbac/image-blocks.yaml)"
                raise
        spec = found[1].get("spec") or {}
        if spec.get("policyName") != name or "Deny" not in (spec.get("validationActions") or []):
            return f"ValidatingAdmissionPolicyBinding {name} does not deny with policy {name}"
        return True

    def get_namespaced_object(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object of any namespaced API; None when it (or its API) is not there."""
        try:
            return dict(self._client.get(generic(api_version, kind, namespaced=True), name, namespace))
        except ApiError as exc:
            if _missing(exc):
                return None
            raise

    def patch_namespaced_object(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        self._client.patch(generic(api_version, kind, namespaced=True), name, patch, namespace, dry_run=self._dry_run)
        self._checked(f"patch {kind}")

    def can(self, group: str, resource: str, verb: str, name: str | None = None) -> bool:
        """Whether this identity may `verb` the resource, cluster-wide: the API server's own answer."""
        attributes = {"group": group, "resource": resource, "verb": verb, **({"name": name} if name else {})}
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attributes}}  # fmt: skip
        answer = self._client.create(ACCESS_REVIEW, review)
        return bool((answer.get("status") or {}).get("allowed"))

    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> None:
        self._wrote(NETWORK_POLICY, str(body["metadata"]["name"]), namespace)
        policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **body}
        try:
            self._client.create(NETWORK_POLICY, policy, namespace, dry_run=self._dry_run)
        except ApiError as exc:
            if exc.code != _CONFLICT:  # a retried create whose first try landed: the caller verifies it
                raise
        self._checked("create NetworkPolicy")


class ClusterConnector:
    """Builds (and caches per container) a gateway for one cluster: name, region and account.

    With a kubeconfig, only a context for exactly that cluster is used: a context named like the
    cluster, or named (or pointing at a cluster entry named) by its EKS ARN, as `aws eks
    update-kubeconfig` writes them. An ARN must agree with the finding's account and region. A
    plain name (`prod`) says neither, so it stands only for the hub's own cluster of that name in the
    hub's region (`plain_names`, off for a member account's connector): a member's finding about its
    own `prod` must never reach the hub's. There is no fallback to the current context: a finding
    about another cluster must never act on this one. Without a kubeconfig, the cluster is looked up
    with eks:DescribeCluster in the finding's region (and account) and a token is signed.
    """

    def __init__(
        self,
        *,
        kubeconfig: Path | None,
        aws_session: Callable[[], Any],
        region: str | None,
        timeout: float = 10.0,
        plain_names: bool = True,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._plain_names = plain_names
        self._aws_session = aws_session
        self._region = region
        self._clients: dict[tuple[str, str, str], tuple[RetryingClient, float]] = {}
        self._timeout = timeout

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
                kc = Kubeconfig.from_file(self._kubeconfig)
                home = self._region if self._plain_names else None
                access = kc.access(context_for(kc, cluster, region, account, plain_names=self._plain_names, home=home))
                expires = float("inf")
            else:
                where = region or self._region
                if not where:
                    raise ClusterAccessError(f"no region known for cluster {cluster}")
                built = eks_kubeconfig(self._aws_session(), cluster, where, account)
                access = Kubeconfig(built.kubeconfig).access(cluster)
                expires = built.expires_at
            client = KubeClient(access, timeout=self._timeout, field_manager="eks-responder")
        except ClusterAccessError:
            raise
        except Exception as exc:
            raise ClusterAccessError(f"cannot reach cluster {cluster}: {exc}") from exc
        self._clients[key] = (RetryingClient(client), expires)
        return self._clients[key][0]


_EKS_ARN = re.compile(r"^arn:aws[a-z-]*:eks:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):cluster/(?P<name>[^/]+)$")


def context_for(
    kc: Kubeconfig,
    cluster: str,
    region: str | None,
    account: str | None,
    *,
    plain_names: bool = True,
    home: str | None = None,
) -> str:
    """The kubeconfig context for exactly this cluster, or ClusterAccessError saying why there is none.
    A plain-named context counts only where `plain_names` allows (the hub's own account) and, when
    the hub's region `home` is known, only for a cluster in that region."""
    matches: list[str] = []
    mismatched: list[str] = []
    for name in kc.contexts:
        names = {name, kc.context_cluster(name)}
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
            if not plain_names:
                mismatched.append(f"{name} (a plain name stands for the hub's own cluster: name a member's by its ARN)")
            elif home and region and region != home:
                mismatched.append(f"{name} (a plain name stands for the cluster in {home})")
            else:
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
