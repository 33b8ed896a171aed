"""The source-independent description of something that happened: what rules match on."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec


class Severity(enum.IntEnum):
    """GuardDuty's severity bands; other sources map onto the same four."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def from_score(cls, score: float) -> Severity:
        # Bands from the GuardDuty user guide; anything at or above 9.0 is Critical.
        if score >= 9.0:  # noqa: PLR2004
            return cls.CRITICAL
        if score >= 7.0:  # noqa: PLR2004
            return cls.HIGH
        if score >= 4.0:  # noqa: PLR2004
            return cls.MEDIUM
        return cls.LOW

    @classmethod
    def parse(cls, name: str) -> Severity:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            allowed = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {name!r} (one of: {allowed})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


# Image scanners' severity labels (ECR basic and enhanced scanning), the most severe first; the
# bands the top three map onto, and the score a finding without one of its own is given. Shared
# by the ECR source and the vulnerability gate, so the gate imports no source's event models.
SCAN_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
SCAN_BANDS = {"CRITICAL": Severity.CRITICAL, "HIGH": Severity.HIGH, "MEDIUM": Severity.MEDIUM}
SCAN_SCORES = {Severity.CRITICAL: 9.0, Severity.HIGH: 7.0, Severity.MEDIUM: 4.0, Severity.LOW: 1.0}


class ResourceKind(enum.StrEnum):
    """What the finding is about, as far as containment is concerned."""

    POD = "pod"  # a single pod is named
    WORKLOAD = "workload"  # a Deployment, DaemonSet, ...: resolved to its pods at run time
    NODE = "node"  # an EC2 worker node
    CLUSTER = "cluster"  # the cluster itself (API access, configuration)
    ACCESS_KEY = "access-key"  # IAM credentials
    KMS_KEY = "kms-key"  # a KMS key (CloudTrail and KMS events)
    IMAGE = "image"  # a container image digest (ECR and Inspector scan results)
    OTHER = "other"


class PrincipalKind(enum.StrEnum):
    IAM_ROLE = "iam-role"
    IAM_USER = "iam-user"
    SERVICE_ACCOUNT = "service-account"
    KUBERNETES_USER = "kubernetes-user"
    ANONYMOUS = "anonymous"
    INSTANCE_PROFILE = "instance-profile"


class PrincipalRole(enum.StrEnum):
    """How an identity is involved in the finding."""

    CALLER = "caller"  # made the Kubernetes API call
    CREDENTIALS = "credentials"  # its AWS credentials were used (IAM findings)
    WORKLOAD = "workload"  # the pod's service account
    NODE = "node"  # the node's instance profile


class WorkloadRef(msgspec.Struct, frozen=True):
    kind: str  # Kubernetes kind: Pod, Deployment, DaemonSet, ...
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


class PodRef(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    node: str | None = None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    name: str
    arn: str | None = None
    groups: tuple[str, ...] = ()
    involved_as: PrincipalRole = PrincipalRole.CALLER
    access_key_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "name": self.name,
            "arn": self.arn,
            "groups": list(self.groups),
            "involved_as": self.involved_as.value,
            "access_key_id": self.access_key_id,
        }


_IAM_ARN = re.compile(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):(role|user|assumed-role)/(.+)$")


def principal_from_arn(arn: str, involved_as: PrincipalRole, groups: tuple[str, ...] = ()) -> Principal | None:
    """An IAM role or user from an IAM or STS ARN (an assumed-role session becomes its role)."""
    match = _IAM_ARN.match(arn)
    if not match:
        return None
    account, kind, rest = match.groups()
    if kind == "assumed-role":
        role = rest.split("/", 1)[0]
        return Principal(PrincipalKind.IAM_ROLE, role, f"arn:aws:iam::{account}:role/{role}", groups, involved_as)
    name = rest.rsplit("/", 1)[-1]
    principal_kind = PrincipalKind.IAM_USER if kind == "user" else PrincipalKind.IAM_ROLE
    return Principal(principal_kind, name, arn, groups, involved_as)


class ApiCall(msgspec.Struct, frozen=True):
    """The Kubernetes API request an audit-log finding is about."""

    verb: str | None
    resource: str | None
    name: str | None
    namespace: str | None


@dataclass(frozen=True)
class Incident:
    """One finding, normalised. Nothing downstream of a source reads the raw event."""

    id: str
    source: str
    type: str
    title: str
    severity: Severity
    score: float
    account: str
    region: str
    resource_kind: ResourceKind
    cluster: str | None = None
    namespace: str | None = None
    workloads: tuple[WorkloadRef, ...] = ()
    pods: tuple[PodRef, ...] = ()
    nodes: tuple[str, ...] = ()
    instance_ids: tuple[str, ...] = ()
    principals: tuple[Principal, ...] = ()
    images: tuple[str, ...] = ()
    remote_ips: tuple[str, ...] = ()
    privileged: bool = False  # a privileged container, host namespaces or a host path mount
    sample: bool = False  # a generated sample finding: planned and reported, never acted on
    event_id: str | None = None
    raw_ref: str | None = None  # where the original event can be found (path, event id, finding ARN)
    # The GuardDuty or Inspector finding's ARN (what Security Hub knows it by): a reference, not identity.
    finding_arn: str | None = field(default=None, compare=False, hash=False)
    count: int = 1
    api_call: ApiCall | None = None
    key_arns: tuple[str, ...] = ()  # KMS keys the event is about
    failed: bool = False  # the API call the event records failed: nothing changed
    # Why every step waits for a human whatever the rules say (an address two running pods had): "" if none.
    hold: str = ""
    # Why the incident is only reported (a Security Hub copy whose native finding could not be read back):
    # planned, told, never acted on, and never recorded as handled. "" if it is what it says.
    unverified: str = ""
    details: dict[str, str] = field(default_factory=dict, compare=False, hash=False)  # source-specific facts
    # When the finding was last updated (GuardDuty's updatedAt, CloudTrail's eventTime, else the event's
    # time): where time to contain starts. A copy and its native twin may differ: not part of equality.
    observed_at: str | None = field(default=None, compare=False, hash=False)

    @property
    def tactic(self) -> str:
        """`Execution` from `Execution:Kubernetes/ExecInKubeSystemPod`."""
        return self.type.split(":", 1)[0]

    @property
    def resource_type(self) -> str:
        """`Kubernetes` from `Execution:Kubernetes/ExecInKubeSystemPod`."""
        rest = self.type.split(":", 1)[-1]
        return rest.split("/", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "title": self.title,
            "severity": self.severity.label,
            "score": self.score,
            "account": self.account,
            "region": self.region,
            "resource_kind": self.resource_kind.value,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "workload": str(self.workloads[0]) if self.workloads else None,
            "workloads": [str(w) for w in self.workloads],
            "pods": [str(p) for p in self.pods],
            "node": self.nodes[0] if self.nodes else None,
            "nodes": list(self.nodes),
            "instance_id": self.instance_ids[0] if self.instance_ids else None,
            "instance_ids": list(self.instance_ids),
            "principals": [p.to_dict() for p in self.principals],
            "images": list(self.images),
            "remote_ips": list(self.remote_ips),
            "privileged": self.privileged,
            "sample": self.sample,
            "count": self.count,
            "key_arns": list(self.key_arns),
            "failed": self.failed,
            "hold": self.hold,
            "unverified": self.unverified,
            "details": dict(self.details),
            "event_id": self.event_id,
            "raw_ref": self.raw_ref,
            "finding_arn": self.finding_arn,
            "observed_at": self.observed_at,
        }


_LATEST_PLAUSIBLE = timedelta(days=1)  # a clock a little ahead is fine; a date in the future is not a time


def timestamp(value: object) -> str | None:
    """An event's time as ISO 8601 UTC, or None when it is not one (hostile or missing)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:  # noqa: PLR2004
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year < 2000 or parsed > datetime.now(UTC) + _LATEST_PLAUSIBLE:  # noqa: PLR2004
        return None
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")


def incident_state(incident: Incident) -> dict[str, Any]:
    """Everything the incident holds (`Incident.to_dict` is the report's shape, and loses some)."""
    return {
        "id": incident.id, "source": incident.source, "type": incident.type, "title": incident.title,
        "severity": incident.severity.label, "score": incident.score, "account": incident.account,
        "region": incident.region, "resource_kind": incident.resource_kind.value, "cluster": incident.cluster,
        "namespace": incident.namespace,
        "workloads": [[w.kind, w.namespace, w.name] for w in incident.workloads],
        "pods": [[p.namespace, p.name, p.node] for p in incident.pods],
        "nodes": list(incident.nodes), "instance_ids": list(incident.instance_ids),
        "principals": [
            [p.kind.value, p.name, p.arn, list(p.groups), p.involved_as.value, p.access_key_id]
            for p in incident.principals
        ],
        "images": list(incident.images), "remote_ips": list(incident.remote_ips),
        "privileged": incident.privileged, "sample": incident.sample, "event_id": incident.event_id,
        "raw_ref": incident.raw_ref, "finding_arn": incident.finding_arn, "count": incident.count,
        "api_call": None if incident.api_call is None else [
            incident.api_call.verb, incident.api_call.resource, incident.api_call.name, incident.api_call.namespace
        ],
        "key_arns": list(incident.key_arns), "failed": incident.failed, "hold": incident.hold,
        "unverified": incident.unverified,
        "details": dict(incident.details),
        "observed_at": incident.observed_at,
    }  # fmt: skip
