"""Identifiers from events are checked against their documented syntax before anything uses them.

A namespace of `x/../kube-system` passes a string comparison with the protected list and, joined
into a request path, reaches `kube-system`; a region of `x|pwn> <!channel>` becomes part of a
console link. Every value an incident carries into a guardrail, a request path, a link or a
decision is checked here, once, at the boundary: an event with one that does not fit is an error.
"""

from __future__ import annotations

import math
import re
from typing import Any

from chalicelib.errors import EventError
from chalicelib.incident import (
    ApiCall,
    Incident,
    PodRef,
    Principal,
    PrincipalKind,
    PrincipalRole,
    ResourceKind,
    Severity,
    WorkloadRef,
    timestamp,
)

ACCOUNT = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
# EKS cluster names: letters, digits, hyphens and underscores, starting with a letter or digit.
CLUSTER = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
# Namespaces are DNS-1123 labels; pod and node names DNS-1123 subdomains.
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")
VPC = re.compile(r"^vpc-[0-9a-f]{8,17}$")
# IAM user, role and instance-profile names; ARNs of IAM and STS principals (paths allowed).
IAM_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
IAM_ARN = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:([a-z-]+/[\w+=,.@/-]{1,512}|root)$")
KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]{1,32}:\d{12}:key/(mrk-)?[a-f0-9-]{1,64}$")
ACCESS_KEY = re.compile(r"^[A-Z0-9]{16,128}$")
# Kubernetes user names are free text, but never control characters or markup.
USER_NAME = re.compile(r"^[^\x00-\x20\x7f<>|`]{1,512}$")
# Other object names (RBAC bindings may hold colons: system:controller:...): one request-path
# segment, never "." or "..", no "/" or "%".
OBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$")
WORKLOAD_KINDS = re.compile(r"^[A-Za-z]{1,63}$")
# Image references: registry, path, tag and digest characters only (they go into admission
# policies' CEL and Kyverno patterns, where a quote or a wildcard would change the rule). The
# digest's length is checked where an image is blocked: AWS's own examples shorten it.
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(@sha256:[a-z0-9]{1,64})?$", re.IGNORECASE)


def _fail(what: str, value: object) -> None:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."  # noqa: PLR2004
    raise EventError(f"{what} {shown} is not a valid {what}")


def check_envelope(event: dict[str, object]) -> None:
    """The EventBridge envelope's account and region, which EventBridge itself sets."""
    for key, syntax in (("account", ACCOUNT), ("region", REGION)):
        value = event.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not syntax.match(value):
            _fail(f"event {key}", value)


def _principal(principal: Principal) -> None:
    if principal.kind is PrincipalKind.SERVICE_ACCOUNT and principal.name.startswith("system:serviceaccount:"):
        # Its namespace and name become Kubernetes request paths and messages, like a pod's.
        namespace, _, name = principal.name.removeprefix("system:serviceaccount:").partition(":")
        if not LABEL.match(namespace) or not SUBDOMAIN.match(name):
            _fail("service account", principal.name)
    iam = principal.kind in (PrincipalKind.IAM_ROLE, PrincipalKind.IAM_USER, PrincipalKind.INSTANCE_PROFILE)
    if not (IAM_NAME if iam else USER_NAME).match(principal.name):
        _fail("principal name", principal.name)
    if principal.arn is not None and (not IAM_ARN.match(principal.arn) or "//" in principal.arn):
        _fail("principal ARN", principal.arn)
    if principal.access_key_id is not None and not ACCESS_KEY.match(principal.access_key_id):
        _fail("access key id", principal.access_key_id)


def check(incident: Incident) -> Incident:
    """The incident, when every identifier it carries fits its syntax; else EventError naming it."""
    if incident.account and not ACCOUNT.match(incident.account):
        _fail("account", incident.account)
    if incident.region and not REGION.match(incident.region):
        _fail("region", incident.region)
    if not math.isfinite(incident.score):
        _fail("severity score", incident.score)
    if incident.sample:
        # GuardDuty's generated samples name placeholders (GeneratedFindingKubernetesWorkloadNamespace)
        # and are never acted on: they are planned and reported, so only what builds links is checked.
        return incident
    incident = _degraded(incident)
    _kubernetes(incident)
    _aws(incident)
    return incident


def _degraded(incident: Incident) -> Incident:
    """The incident without the accessory fields that fail their syntax (a principal, its access key,
    an image), each named in `details["malformed"]` (never with its value): everything else the
    finding proves is still done, and the steps that needed what was dropped say they had nothing."""
    from dataclasses import replace

    notes: list[str] = []
    principals = []
    for principal in incident.principals:
        try:
            _principal(principal)
        except EventError:
            keyless = replace(principal, access_key_id=None)
            try:
                _principal(keyless)
            except EventError:
                notes.append(f"one {principal.kind.value} principal (its name or ARN is not one)")
                continue
            notes.append(f"the access key id of {keyless.name} (not an access key id)")
            principal = keyless  # noqa: PLW2901 - the same principal, its malformed key left out
        principals.append(principal)
    images = tuple(i for i in incident.images if IMAGE.match(i) and ".." not in i and "//" not in i)
    if len(images) < len(incident.images):
        notes.append(f"{len(incident.images) - len(images)} image reference(s) (not image references)")
    if not notes:
        return incident
    details = {**incident.details, "malformed": "; ".join(notes) + ": left out"}
    return replace(incident, principals=tuple(principals), images=images, details=details)


def _kubernetes(incident: Incident) -> None:
    """Names that become Kubernetes request paths."""
    if incident.cluster is not None and not CLUSTER.match(incident.cluster):
        _fail("cluster name", incident.cluster)
    if incident.namespace is not None and not LABEL.match(incident.namespace):
        _fail("namespace", incident.namespace)
    for pod in incident.pods:
        if not LABEL.match(pod.namespace) or not SUBDOMAIN.match(pod.name):
            _fail("pod", f"{pod.namespace}/{pod.name}")
    for workload in incident.workloads:
        namespaced = not workload.namespace or LABEL.match(workload.namespace)
        if not WORKLOAD_KINDS.match(workload.kind) or not namespaced or not SUBDOMAIN.match(workload.name):
            _fail("workload", f"{workload.kind}/{workload.namespace}/{workload.name}")
    for node in incident.nodes:
        if not SUBDOMAIN.match(node):
            _fail("node name", node)
    call = incident.api_call
    if call is not None:
        if call.namespace is not None and not LABEL.match(call.namespace):
            _fail("API call namespace", call.namespace)
        if call.name is not None and not OBJECT.match(call.name):
            _fail("API call resource name", call.name)


def _aws(incident: Incident) -> None:
    """Identifiers that become AWS request parameters, ARNs and admission rules."""
    for instance in incident.instance_ids:
        if not INSTANCE.match(instance):
            _fail("instance id", instance)
    for principal in incident.principals:
        _principal(principal)
    for key in incident.key_arns:
        if not KEY_ARN.match(key):
            _fail("KMS key ARN", key)
    for image in incident.images:
        if not IMAGE.match(image) or ".." in image or "//" in image:
            _fail("image reference", image)


def incident_from_state(data: dict[str, Any]) -> Incident:
    """The incident `incident_state` wrote, checked again at the boundary like any other."""
    call = data.get("api_call")
    incident = Incident(
        id=str(data["id"]), source=str(data["source"]), type=str(data["type"]), title=str(data["title"]),
        severity=Severity.parse(str(data["severity"])), score=float(data["score"]), account=str(data["account"]),
        region=str(data["region"]), resource_kind=ResourceKind(data["resource_kind"]),
        cluster=data.get("cluster"), namespace=data.get("namespace"),
        workloads=tuple(WorkloadRef(*w) for w in data.get("workloads", [])),
        pods=tuple(PodRef(*p) for p in data.get("pods", [])),
        nodes=tuple(data.get("nodes", [])), instance_ids=tuple(data.get("instance_ids", [])),
        principals=tuple(
            Principal(PrincipalKind(k), n, a, tuple(g), PrincipalRole(r), key)
            for k, n, a, g, r, key in data.get("principals", [])
        ),
        images=tuple(data.get("images", [])), remote_ips=tuple(data.get("remote_ips", [])),
        privileged=bool(data.get("privileged")), sample=bool(data.get("sample")), event_id=data.get("event_id"),
        raw_ref=data.get("raw_ref"), finding_arn=data.get("finding_arn"), count=int(data.get("count", 1)),
        api_call=ApiCall(*call) if call else None,
        key_arns=tuple(data.get("key_arns", [])), failed=bool(data.get("failed")), hold=str(data.get("hold") or ""),
        unverified=str(data.get("unverified") or ""),
        details={str(k): str(v) for k, v in (data.get("details") or {}).items()},
        observed_at=timestamp(data.get("observed_at")),
    )  # fmt: skip
    return check(incident)
