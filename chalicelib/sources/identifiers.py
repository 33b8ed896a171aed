"""Identifiers from events are checked against their documented syntax before anything uses them.

A namespace of `x/../kube-system` passes a string comparison with the protected list and, joined
into a request path, reaches `kube-system`; a region of `x|pwn> <!channel>` becomes part of a
console link. Every value an incident carries into a guardrail, a request path, a link or a
decision is checked here, once, at the boundary: an event with one that does not fit is an error.
"""

from __future__ import annotations

import math
import re

from chalicelib.errors import EventError
from chalicelib.incident import Incident

ACCOUNT = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
# EKS cluster names: letters, digits, hyphens and underscores, starting with a letter or digit.
CLUSTER = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
# Namespaces are DNS-1123 labels; pod and node names DNS-1123 subdomains.
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")
WORKLOAD_KINDS = re.compile(r"^[A-Za-z]{1,63}$")


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
    for instance in incident.instance_ids:
        if not INSTANCE.match(instance):
            _fail("instance id", instance)
    return incident
