"""Who is behind an address: ENI -> instance -> EKS node, and for a VPC CNI pod address, the pod.

One `Attribution` per invocation: every ENI, instance and pod lookup is cached for the batch,
so a hundred findings about one node cost one `DescribeNetworkInterfaces`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.incident import Incident, PodRef, ResourceKind
from chalicelib.interfaces import IAMStatement

if TYPE_CHECKING:
    from chalicelib.interfaces import EC2API, KubeAPI

logger = logging.getLogger("eks_responder")

IAM: tuple[IAMStatement, ...] = (IAMStatement(("ec2:DescribeNetworkInterfaces", "ec2:DescribeInstances")),)
_CLUSTER_TAG = "eks:cluster-name"
_CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"


def cluster_of(instance: dict[str, Any]) -> str | None:
    tags = {t.get("Key", ""): t.get("Value", "") for t in instance.get("Tags") or []}
    if tags.get(_CLUSTER_TAG):
        return str(tags[_CLUSTER_TAG])
    return next(
        (str(key)[len(_CLUSTER_TAG_PREFIX) :] for key in tags if str(key).startswith(_CLUSTER_TAG_PREFIX)), None
    )


def _addresses(eni: dict[str, Any]) -> set[str]:
    found = {str(a.get("PrivateIpAddress")) for a in eni.get("PrivateIpAddresses") or []}
    found.add(str(eni.get("PrivateIpAddress")))
    found.update(str(a.get("Ipv6Address")) for a in eni.get("Ipv6Addresses") or [])
    return found


BATCH = 200  # values per EC2 filter


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + BATCH] for i in range(0, len(values), BATCH)]


def _in_vpc(incident: Incident, details: dict[str, str], vpc: str) -> Incident:
    """The incident keyed by the VPC its address is in too (two VPCs of one account may both use it);
    `details` gains the VPC."""
    from chalicelib import identifiers
    from chalicelib.flowlogs.incidents import incident_id

    if not identifiers.VPC.match(vpc) or "kind" not in details or "hour" not in details:
        return incident
    details["vpc"] = vpc
    return replace(incident, id=incident_id(details["kind"], incident.account, incident.region, details["address"],
                                            details["hour"], vpc))  # fmt: skip


class Attribution:
    def __init__(self, ec2: EC2API | None, kube: Callable[[str], KubeAPI] | None) -> None:
        self._ec2 = ec2
        self._kube = kube
        self._enis: dict[str, dict[str, Any] | None] = {}
        self._by_address: dict[str, dict[str, Any] | None] = {}
        self._instances: dict[str, dict[str, Any] | None] = {}
        self._pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._clusters: dict[str, KubeAPI | str] = {}  # a gateway, or why there is none

    # -- lookups, cached for the batch ----------------------------------------------------------

    def prefetch(self, incidents: list[Incident]) -> None:
        """Every interface and address a delivery's incidents name, looked up together: a few
        `DescribeNetworkInterfaces` (200 values each) instead of one or two per incident. An
        address two interfaces hold (two VPCs may both use it) is left to its own lookup, as is
        everything when the batch lookup fails."""
        if self._ec2 is None:
            return
        enis: dict[str, None] = {}
        local: list[tuple[str, list[str]]] = []
        for incident in incidents:
            logged = [i for i in incident.details.get("interfaces", "").split(",") if i.startswith("eni-")]
            enis.update(dict.fromkeys(logged))
            if incident.details.get("remote") != "yes" and incident.details.get("address"):
                local.append((incident.details["address"], logged))
        try:
            for chunk in _chunks([e for e in enis if e not in self._enis]):
                found = {str(eni.get("NetworkInterfaceId")): eni for eni in
                         self._ec2.network_interfaces({"network-interface-id": chunk})}  # fmt: skip
                self._enis.update({eni_id: found.get(eni_id) for eni_id in chunk})
            # Only the addresses none of their logging interfaces holds are looked up by address.
            addresses = dict.fromkeys(a for a, logged in local
                                      if not any(a in _addresses(self._enis.get(e) or {}) for e in logged))  # fmt: skip
            for family in ("addresses.private-ip-address", "ipv6-addresses.ipv6-address"):
                wanted = [a for a in addresses if (":" in a) == family.startswith("ipv6") and a not in self._by_address]
                for chunk in _chunks(wanted):
                    held: dict[str, list[dict[str, Any]]] = {}
                    for eni in self._ec2.network_interfaces({family: chunk}):
                        for address in _addresses(eni) & set(chunk):
                            held.setdefault(address, []).append(eni)
                    self._by_address.update({a: (held[a][0] if a in held else None) for a in chunk
                                             if len(held.get(a, [])) <= 1})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - each incident looks its own up instead
            logger.warning("batch interface lookup failed", extra={"error": str(exc)})

    def _interface(self, eni_id: str) -> dict[str, Any] | None:
        if eni_id not in self._enis and self._ec2 is not None:
            found = self._ec2.network_interfaces({"network-interface-id": [eni_id]})
            self._enis[eni_id] = found[0] if found else None
        return self._enis.get(eni_id)

    def _interface_with(self, address: str, logged: list[str]) -> dict[str, Any] | None:
        for eni_id in logged:
            eni = self._interface(eni_id)
            if eni is not None and address in _addresses(eni):
                return eni
        if address not in self._by_address and self._ec2 is not None:
            by = "ipv6-addresses.ipv6-address" if ":" in address else "addresses.private-ip-address"
            found = self._ec2.network_interfaces({by: [address]})
            self._by_address[address] = found[0] if found else None
        return self._by_address.get(address)

    def _instance(self, instance_id: str) -> dict[str, Any] | None:
        if instance_id not in self._instances and self._ec2 is not None:
            self._instances[instance_id] = self._ec2.describe_instance(instance_id)
        return self._instances.get(instance_id)

    def _cluster(self, name: str) -> KubeAPI | str:
        if name not in self._clusters:
            try:
                if self._kube is None:
                    raise RuntimeError("no Kubernetes access configured")
                self._clusters[name] = self._kube(name)
            except Exception as exc:  # noqa: BLE001 - the node can still be contained on the AWS side
                self._clusters[name] = f"cluster {name} not reachable: {exc}"
        return self._clusters[name]

    def _holders(self, cluster: str, address: str) -> list[dict[str, Any]] | str:
        """The pods (not on the host network) that hold the address, or why they could not be listed."""
        kube = self._cluster(cluster)
        if isinstance(kube, str):
            return kube
        key = (cluster, address)
        if key not in self._pods:
            try:
                listed = kube.pods_with_ip(address)
            except Exception as exc:  # noqa: BLE001
                return f"pods with address {address} not listed: {exc}"
            self._pods[key] = [p for p in listed if not (p.get("spec") or {}).get("hostNetwork") and _holds(p, address)]
        return self._pods[key]

    # -- attribution ----------------------------------------------------------------------------

    def attribute(self, incident: Incident) -> Incident:
        details = dict(incident.details)
        logged = [i for i in details.get("interfaces", "").split(",") if i.startswith("eni-")]
        try:
            if details.get("remote") == "yes":
                return self._remote(incident, details, logged)
            return self._local(incident, details, logged)
        except Exception as exc:  # noqa: BLE001 - unattributed is still reported
            logger.warning("attribution failed", extra={"incident_id": incident.id, "error": str(exc)})
            details["attribution"] = f"lookup failed: {exc}"
            return replace(incident, details=details)

    def _remote(self, incident: Incident, details: dict[str, str], logged: list[str]) -> Incident:
        """An internet source: what it reached are the ENIs that logged it."""
        instances: list[str] = []
        cluster = None
        for eni_id in logged:
            eni = self._interface(eni_id)
            instance_id = ((eni or {}).get("Attachment") or {}).get("InstanceId")
            if instance_id and instance_id not in instances:
                instances.append(instance_id)
                cluster = cluster or cluster_of(self._instance(instance_id) or {})
        if not instances:
            details["attribution"] = f"the ENIs that logged it ({', '.join(logged) or 'none'}) are not on instances"
            return replace(incident, details=details)
        where = f" of cluster {cluster}" if cluster else ""
        details["attribution"] = f"reached instance(s) {', '.join(instances)}{where}"
        return replace(incident, details=details, cluster=cluster, instance_ids=tuple(instances),
                       resource_kind=ResourceKind.NODE)  # fmt: skip

    def _local(self, incident: Incident, details: dict[str, str], logged: list[str]) -> Incident:
        address = details["address"]
        eni = self._interface_with(address, logged)
        if eni is None:
            details["attribution"] = f"no network interface in this account and region has address {address}"
            return replace(incident, details=details)
        incident = _in_vpc(incident, details, str(eni.get("VpcId") or ""))
        moved = _moved_since(eni, address, logged, _window(details.get("flows_between", "")))
        if moved:
            details["attribution"] = moved
            return replace(incident, details=details)
        instance_id = (eni.get("Attachment") or {}).get("InstanceId")
        if not instance_id:
            kind = eni.get("InterfaceType") or "interface"
            details["attribution"] = f"{address} is on {eni.get('NetworkInterfaceId')} ({kind}), not on an instance"
            return replace(incident, details=details)
        instance = self._instance(instance_id) or {}
        cluster = cluster_of(instance)
        found = replace(incident, instance_ids=(instance_id,), cluster=cluster, resource_kind=ResourceKind.NODE)
        if cluster is None:
            details["attribution"] = f"{address} is on instance {instance_id}, which carries no EKS cluster tag"
            return replace(found, details=details)
        if address == instance.get("PrivateIpAddress"):
            details["attribution"] = f"{address} is node {instance_id} of cluster {cluster} itself"
            return replace(found, details=details)
        return self._pod_behind(found, details, address, instance_id, cluster)

    def _pod_behind(
        self, found: Incident, details: dict[str, str], address: str, instance_id: str, cluster: str
    ) -> Incident:
        """The one pod running with the address when the flows were captured; the node when none did;
        every candidate, held for a human, when more than one did."""
        pods = self._holders(cluster, address)
        if isinstance(pods, str) or not pods:
            why = pods or f"no pod has address {address}"
            details["attribution"] = f"{address} is on node {instance_id} of cluster {cluster}; {why}"
            return replace(found, details=details)
        window = _window(details.get("flows_between", ""))
        running = [p for p in pods if _ran_during(p, window)]
        if not running:
            # A finished pod keeps its address after the address went to another: never contained for it.
            gone = ", ".join(sorted(_name(p) for p in pods))
            details["attribution"] = (f"{address} is on node {instance_id} of cluster {cluster}; the pods that had it "
                                      f"({gone}) were not running when the flows were captured")  # fmt: skip
            return replace(found, details=details)
        refs = tuple(_ref(p) for p in sorted(running, key=_name))
        if len(refs) > 1:
            named = " and ".join(str(r) for r in refs)
            details["attribution"] = (f"{address} was held by {len(refs)} running pods on node {instance_id} of "
                                      f"cluster {cluster}: {named}; which one sent the flows is not known")  # fmt: skip
            hold = f"address {address} was held by {named}: approve the steps of the one that sent the flows"
            return replace(found, details=details, pods=refs, namespace=None, resource_kind=ResourceKind.POD, hold=hold)
        (ref,) = refs
        meta = running[0]["metadata"]
        # The owner is reported, not targeted: one pod's connections say nothing about its replicas.
        owner = next((f"{o['kind']}/{o['name']}" for o in meta.get("ownerReferences") or [] if o.get("controller")), "")
        details["attribution"] = f"{address} is pod {ref} on node {ref.node or instance_id} of cluster {cluster}"
        details["owner"] = owner
        return replace(found, details=details, pods=(ref,), namespace=ref.namespace, resource_kind=ResourceKind.POD)


# A pod starts, or its containers finish, within the capture window's own one-minute-or-so slack.
_SLACK = 60
_FINISHED = ("Succeeded", "Failed")


def _moved_since(eni: dict[str, Any], address: str, logged: list[str], window: tuple[int, int] | None) -> str:
    """Why the interface holding the address now is not the one that held it when the flows were
    captured ("" when nothing says so): the address is on another interface than the one that logged
    it, or the interface was attached to its instance after the flows."""
    eni_id = str(eni.get("NetworkInterfaceId") or "")
    if logged and eni_id not in logged:
        return (f"{address} is now on {eni_id}, not on the interface that logged the flows ({', '.join(logged[:3])}): "
                "it moved since, so whoever holds it now is not acted on")  # fmt: skip
    attachment = eni.get("Attachment") or {}
    attached = attachment.get("AttachTime")
    at = int(attached.timestamp()) if isinstance(attached, datetime) else _seconds(attached)
    if window is not None and at is not None and at > window[1] + _SLACK:
        return (f"{eni_id} was attached to {attachment.get('InstanceId')} after the flows were captured: that "
                "instance did not hold the address then, and is not acted on")  # fmt: skip
    return ""


def _holds(pod: dict[str, Any], address: str) -> bool:
    status = pod.get("status") or {}
    held = {str(a.get("ip")) for a in status.get("podIPs") or [] if isinstance(a, dict)}
    return address in held or status.get("podIP") == address


def _window(text: str) -> tuple[int, int] | None:
    first, _, last = text.partition("-")
    return (int(first), int(last)) if first.isdigit() and last.isdigit() else None


def _seconds(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _ran_during(pod: dict[str, Any], window: tuple[int, int] | None) -> bool:
    """Whether the pod could have sent the flows: running when they were captured (or, with no
    capture times in the format, running now). Started after them, finished or deleted before them,
    it could not."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    started = _seconds(status.get("startTime")) or _seconds(meta.get("creationTimestamp"))
    deleted = _seconds(meta.get("deletionTimestamp"))
    finished = status.get("phase") in _FINISHED
    ended = [_seconds(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for c in status.get("containerStatuses") or [] if isinstance(c, dict)]  # fmt: skip
    if window is None:
        return not finished and deleted is None
    first, last = window
    if started is not None and started > last + _SLACK:
        return False
    if deleted is not None and deleted < first - _SLACK:
        return False
    if finished:
        known = [e for e in ended if e is not None]
        return bool(known) and max(known) >= first - _SLACK
    return True


def _name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _ref(pod: dict[str, Any]) -> PodRef:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    return PodRef(str(meta["namespace"]), str(meta["name"]), spec.get("nodeName"))
