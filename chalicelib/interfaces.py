"""The shared interfaces: what an action is given (the gateways to Kubernetes, EC2, IAM, KMS, images,
evidence and shared caps, as protocols), what it declares (`IAMStatement`, `RBACRule`), what it returns
(`Outcome`, `ActionResult`) and the marks it leaves. Actions and executors both import this module and
never each other: an executor implements a protocol here, an action calls it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from chalicelib.settings import MANAGED_BY

if TYPE_CHECKING:
    from datetime import datetime

TargetKind = Literal["pod", "node", "instance", "role", "user", "principal", "binding", "key", "image", "cluster"]

# Labels and annotations the responder writes. Every object it touches carries them.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INCIDENT_LABEL = "eks-responder.io/incident"
INCIDENT_ANNOTATION = "eks-responder.io/incident-ids"  # every incident that touched it, oldest first
QUARANTINE_LABEL = "eks-responder.io/quarantine"
INVESTIGATION_LABEL = "eks-responder.io/under-investigation"
CORDONED_AT_ANNOTATION = "eks-responder.io/cordoned-at"
PRIOR_ANNOTATION_PREFIX = "eks-responder.io/prior-"
QUARANTINE_TAINT = "eks-responder.io/quarantine"
QUARANTINE_POLICY = "eks-responder-quarantine"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(text: str) -> str:
    """A Kubernetes label value for `text`: itself when valid, else a readable, valid cut."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):  # noqa: PLR2004
        return text
    cleaned = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[:63].strip("-_.")
    return cleaned or "unknown"


def responder_marks(incident_id: str, current: dict[str, Any] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations that say "the responder did this, for this incident".

    On an object another incident already marked, the incident label keeps the first incident
    (so findings about the same pod do not relabel it back and forth) and the annotation lists
    every incident.
    """
    meta = (current or {}).get("metadata") or {}
    first = (meta.get("labels") or {}).get(INCIDENT_LABEL)
    seen = [i for i in ((meta.get("annotations") or {}).get(INCIDENT_ANNOTATION) or "").split(",") if i]
    if incident_id not in seen:
        seen.append(incident_id)
    labels = {MANAGED_BY_LABEL: MANAGED_BY, INCIDENT_LABEL: first or label_value(incident_id)}
    annotations = {INCIDENT_ANNOTATION: ",".join(seen)}
    return labels, annotations


@dataclass(frozen=True)
class IAMStatement:
    """An IAM permission an action needs. `{account}`, `{region}`, ... are filled per stage.

    `conditions` is an IAM Condition block, e.g. {"Null": {"aws:ResourceTag/eks:cluster-name": "false"}}.
    """

    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    conditions: dict[str, dict[str, str]] | None = field(default=None, hash=False, compare=False)
    effect: Literal["Allow", "Deny"] = "Allow"


class RBACRule(msgspec.Struct, frozen=True):
    """A Kubernetes permission an action needs (one resource, its verbs)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()  # empty: every object of the resource


class Status(enum.StrEnum):
    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting-approval"  # held until a human approves the step
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    REJECTED = "rejected"  # a human said no


@dataclass(frozen=True)
class Target:
    """What one action runs on: a pod or a node. `exists` is False for a pod already gone."""

    kind: TargetKind
    name: str
    namespace: str | None = None
    resolved: bool = True  # False in an offline plan, where the name only describes the target
    exists: bool = True
    skip_reason: str | None = None  # known not to be actionable (a Fargate node, ...)
    attributes: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Outcome:
    """What an action reports back: the responder adds timing and names."""

    status: Status
    detail: str
    prior: dict[str, Any] | None = None
    already: bool = False  # nothing to do: the target is already so (another incident may have done it)


def checked(claim: str, wrong: str | None, prior: dict[str, Any] | None = None) -> Outcome:
    """A write's outcome from what was read back after it: the claim, or that it does not hold (a
    failed step that keeps its prior state, so a release can still put back what did change)."""
    if wrong:
        return Outcome(Status.FAILED, f"{claim} requested, but it does not hold: read back {wrong}", prior)
    return Outcome(Status.SUCCEEDED, f"{claim} (read back)", prior)


@dataclass(frozen=True)
class ActionResult:
    action: str
    target: str
    status: Status
    detail: str
    duration_ms: float = 0.0
    prior: dict[str, Any] | None = None
    step: int | None = None  # the plan's step number: what an approval or a release names
    approval_required: bool = False
    at: str | None = None  # when it finished (ISO 8601 UTC): the incident's timeline
    transient: bool = False  # failed on a passing fault (timeout, throttling, server error): worth delivering again

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "action": self.action,
            "target": self.target,
            "status": self.status.value,
            "detail": self.detail,
            "duration_ms": round(self.duration_ms, 1),
            "prior": self.prior,
        }
        if self.step is not None:
            found["step"] = self.step
        if self.approval_required:
            found["approval"] = "required"
        if self.at is not None:
            found["at"] = self.at
        if self.transient:
            found["transient"] = True
        return found


class KubeAPI(Protocol):
    """The Kubernetes calls actions make. Objects are plain dicts, as the API returns them.

    The implementation (executors.kube) applies server-side dry-run to every write when the
    responder runs in dry-run mode, so a dry run is authorised exactly like the real one.
    """

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list_pods(self, namespace: str) -> list[dict[str, Any]]: ...
    def pods_with_ip(self, ip: str) -> list[dict[str, Any]]: ...
    def list_replicasets(self, namespace: str) -> list[dict[str, Any]]: ...
    def list_jobs(self, namespace: str) -> list[dict[str, Any]]: ...
    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...
    def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None) -> None: ...
    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]: ...
    def pod_log(self, namespace: str, name: str, container: str, tail_lines: int) -> str: ...
    def get_node(self, name: str) -> dict[str, Any] | None: ...
    def list_nodes(self) -> list[dict[str, Any]]: ...
    def patch_node(self, name: str, patch: dict[str, Any]) -> None: ...
    def get_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list_network_policies(self, namespace: str) -> list[dict[str, Any]]: ...
    def delete_network_policy(self, namespace: str, name: str) -> None: ...
    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> None: ...
    def delete_cluster_object(self, api_version: str, kind: str, name: str) -> bool: ...
    def patch_network_policy(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...
    def list_services(self, namespace: str) -> list[dict[str, Any]]: ...
    def list_daemonsets(self) -> list[dict[str, Any]]: ...
    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list_bindings(self) -> list[dict[str, Any]]: ...
    def get_binding(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...
    def delete_binding(self, kind: str, namespace: str | None, name: str) -> None: ...
    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_cluster_object(self, body: dict[str, Any]) -> str: ...  # "created", "exists" or "unsupported"
    def get_namespaced_object(self, api_version: str, kind: str, namespace: str,
                              name: str) -> dict[str, Any] | None: ...  # fmt: skip
    def create_namespaced_object(self, namespace: str, body: dict[str, Any]) -> str: ...  # as create_cluster_object
    def patch_namespaced_object(self, api_version: str, kind: str, namespace: str, name: str,
                                patch: dict[str, Any]) -> None: ...  # fmt: skip
    def delete_namespaced_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool: ...
    def replace_config_map_data(
        self, namespace: str, name: str, data: Mapping[str, str | None], resource_version: str
    ) -> None: ...  # a None value removes the key
    def admission_policy_in_force(self, name: str) -> bool | str: ...  # True, or what is missing


class EC2API(Protocol):
    """The EC2 and Auto Scaling calls actions make. Objects are dicts, as boto3 returns them.

    In dry-run mode the implementation (executors.aws) sends every EC2 write with DryRun=True
    and treats "would have succeeded" as success, so a dry run proves the IAM permissions too.
    Auto Scaling has no dry run: its writes are skipped in dry-run mode.
    """

    dry_run: bool

    def describe_instance(self, instance_id: str) -> dict[str, Any] | None: ...
    def describe_instances(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    def network_interfaces(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    def security_groups(self, vpc_id: str, tags: dict[str, str]) -> list[dict[str, Any]]: ...
    def security_group(self, group_id: str) -> dict[str, Any] | None: ...
    def create_security_group(self, vpc_id: str, name: str, description: str, tags: dict[str, str]) -> str: ...
    def revoke_all_rules(self, group_id: str) -> tuple[int, int]: ...
    def allow_all_traffic(self, group_id: str) -> None: ...
    def allow_https_to(self, group_id: str, destinations: list[str]) -> None: ...
    def set_interface_groups(self, interface_id: str, group_ids: list[str]) -> None: ...
    def delete_security_group(self, group_id: str) -> None: ...
    def instance_attribute(self, instance_id: str, attribute: str) -> Any: ...
    def set_instance_attribute(self, instance_id: str, attribute: str, value: Any) -> None: ...
    def tag(self, resource_ids: list[str], tags: dict[str, str]) -> None: ...
    def auto_scaling_of(self, instance_id: str) -> dict[str, Any] | None: ...
    def set_scale_in_protection(self, group: str, instance_id: str, *, protected: bool) -> None: ...
    def enter_standby(self, group: str, instance_id: str) -> None: ...
    def start_malware_scan(self, instance_arn: str) -> str | None: ...
    def send_command(self, document: str, instance_id: str, parameters: dict[str, list[str]], comment: str,
                     timeout_seconds: int) -> str | None: ...  # fmt: skip
    def exit_standby(self, group: str, instance_id: str) -> None: ...
    def targets_in(self, vpc_id: str, ids: set[str]) -> list[dict[str, Any]]: ...
    def deregister(self, entries: list[dict[str, Any]]) -> None: ...
    def register(self, entries: list[dict[str, Any]]) -> None: ...
    def detach_from_group(self, group: str, instance_id: str) -> None: ...
    def snapshots_of(self, volume_id: str, tags: dict[str, str]) -> list[dict[str, Any]]: ...
    def create_snapshot(self, volume_id: str, description: str, tags: dict[str, str]) -> str: ...
    def network_acl_of(self, subnet_id: str) -> dict[str, Any] | None: ...
    def network_acl_by_id(self, acl_id: str) -> dict[str, Any] | None: ...
    def nat_gateway_addresses(self, vpc_id: str) -> set[str]: ...
    def aws_service_ranges(self) -> dict[str, list[str]]: ...
    def add_acl_deny(self, acl_id: str, rule_number: int, cidr: str, *, egress: bool) -> None: ...
    def remove_acl_entry(self, acl_id: str, rule_number: int, *, egress: bool) -> None: ...


class IdentityAPI(Protocol):
    """The IAM, STS and EKS calls the identity actions make. IAM and EKS have no dry run: in
    dry-run mode the implementation reads but sends no write."""

    dry_run: bool

    def caller_arn(self) -> str: ...
    def get_role(self, name: str) -> dict[str, Any] | None: ...
    def user_tags(self, name: str) -> list[dict[str, Any]]: ...
    def role_policy(self, role: str, policy: str) -> dict[str, Any] | None: ...
    def put_role_policy(self, role: str, policy: str, document: dict[str, Any]) -> None: ...
    def delete_role_policy(self, role: str, policy: str) -> None: ...
    def access_keys(self, user: str) -> list[dict[str, Any]]: ...
    def set_access_key_status(self, user: str, key_id: str, status: str) -> None: ...
    def instance_profile_roles(self, profile: str) -> list[str]: ...
    def pod_identity_roles(self, cluster: str, namespace: str, service_account: str) -> list[str]: ...
    def pod_identity_associations(self, cluster: str, namespace: str, service_account: str) -> list[dict[str, Any]]: ...
    def delete_pod_identity_association(self, cluster: str, association_id: str) -> None: ...
    def access_entry(self, cluster: str, principal_arn: str) -> dict[str, Any] | None: ...
    def delete_access_entry(self, cluster: str, principal_arn: str) -> None: ...
    def cluster_endpoint(self, cluster: str) -> dict[str, Any] | None: ...  # resourcesVpcConfig; None: no such cluster
    def set_public_access_cidrs(self, cluster: str, cidrs: list[str]) -> None: ...


class KeysAPI(Protocol):
    """The KMS calls key actions make, which keys are protected, and their last known good policy.
    KMS has no dry run for these calls: in dry-run mode writes are not sent."""

    dry_run: bool

    def describe_key(self, key: str) -> dict[str, Any] | None: ...
    def cancel_key_deletion(self, key: str) -> None: ...
    def enable_key(self, key: str) -> None: ...
    def rotation_enabled(self, key: str) -> bool: ...
    def enable_key_rotation(self, key: str) -> None: ...
    def key_policy(self, key: str) -> str: ...
    def put_key_policy(self, key: str, policy: str) -> None: ...
    def grants(self, key: str) -> list[dict[str, Any]]: ...
    def revoke_grant(self, key: str, grant_id: str) -> None: ...
    def why_protected(self, arn: str) -> str | None: ...
    def good_policy_before(self, ident: str, when: datetime | None) -> dict[str, Any] | None: ...
    def distrust_policy(self, ident: str, sha: str, written_by: str, written_at: str) -> bool: ...


class ImagesAPI(Protocol):
    """Where an image's digest lives in an ECR registry (executors.image_places)."""

    def holding(self, region: str, registry: str, digest: str, wanted: Callable[[str], bool]) -> list[str]: ...


class EvidenceSink(Protocol):
    """Where captured evidence goes: a local folder or an S3 prefix."""

    def exists(self, key: str) -> bool: ...
    def put(self, key: str, data: bytes, content_type: str) -> str: ...
    def location(self, key: str) -> str: ...
    def read(self, key: str, limit: int) -> bytes | None: ...
    def presign(self, key: str, method: str, seconds: int) -> str | None: ...


class CapStore(Protocol):
    """Blast-radius caps shared by every invocation (executors.caps): atomic slot leases, and the
    incidents that hold a shared effect (one deny several incidents rely on)."""

    def reserve(self, kind: str, scope: str, cap: int, target: str, incident: str, now: datetime) -> int | None: ...
    def release(self, kind: str, scope: str, index: int, target: str) -> None: ...
    def holders(self, kind: str, scope: str, cap: int, now: datetime) -> set[str]: ...  # targets leased this hour
    def first_to_reach(self, kind: str, scope: str, now: datetime) -> bool: ...
    def hold(self, effect: str, incident: str, made: dict[str, Any] | None = None) -> None: ...
    def let_go(self, effect: str, incident: str) -> tuple[list[str], dict[str, Any] | None]: ...
    def held_by(self, effect: str) -> tuple[list[str], dict[str, Any] | None]: ...
    def remade(self, effect: str, made: dict[str, Any]) -> None: ...  # the effect is now as `made` says


_RANK = {"CRITICAL": 4, "HIGH": 3, "MEDIUM": 2, "LOW": 1}


class Vulnerability(msgspec.Struct, frozen=True):
    id: str  # CVE-2021-3711, or the scanner's own id
    severity: str  # CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED
    score: float | None = None  # CVSS (v3 when given, else v2)
    package: str = ""
    fix_available: str = ""  # yes / no / partial, when the scanner says
    exploit_available: str = ""

    @property
    def rank(self) -> tuple[int, float]:
        return _RANK.get(self.severity.upper(), 0), self.score or 0.0

    def line(self) -> str:
        facts = [self.id, self.severity.upper()]
        if self.score is not None:
            facts.append(f"CVSS {self.score:g}")
        if self.package:
            facts.append(self.package)
        if self.fix_available:
            facts.append(f"fix {self.fix_available}")
        return " ".join(facts)
