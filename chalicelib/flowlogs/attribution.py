"""Who is behind an address: ENI -> instance -> EKS node, and for a VPC CNI pod address, the pod.

One `Attribution` per invocation: every ENI, instance and pod lookup is cached for the batch,
so a hundred findings about one node cost one `DescribeNetworkInterfaces`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib.actions.base import IAMStatement
from chalicelib.incident import Incident, PodRef, ResourceKind

if TYPE_CHECKING:
    from chalicelib.actions.base import EC2API, KubeAPI

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


def _in_vpc(incident: Incident, details: dict[str, str], vpc: str) -> Incident:
    """The incident keyed by the VPC its address is in too (two VPCs of one account may both use it);
    `details` gains the VPC."""
    from chalicelib.sources import identifiers
    from chalicelib.sources.flowlogs import incident_id

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
        self._pods: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._clusters: dict[str, KubeAPI | str] = {}  # a gateway, or why there is none

    # -- lookups, cached for the batch ----------------------------------------------------------

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

    def _pod(self, cluster: str, address: str) -> dict[str, Any] | str | None:
        kube = self._cluster(cluster)
        if isinstance(kube, str):
            return kube
        key = (cluster, address)
        if key not in self._pods:
            try:
                pods = [p for p in kube.pods_with_ip(address) if not (p.get("spec") or {}).get("hostNetwork")]
            except Exception as exc:  # noqa: BLE001
                return f"pods with address {address} not listed: {exc}"
            self._pods[key] = pods[0] if pods else None
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
        pod = self._pod(cluster, address)
        if isinstance(pod, str) or pod is None:
            why = pod or f"no pod has address {address}"
            details["attribution"] = f"{address} is on node {instance_id} of cluster {cluster}; {why}"
            return replace(found, details=details)
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ref = PodRef(str(meta["namespace"]), str(meta["name"]), spec.get("nodeName"))
        # The owner is reported, not targeted: one pod's connections say nothing about its replicas.
        owner = next((f"{o['kind']}/{o['name']}" for o in meta.get("ownerReferences") or [] if o.get("controller")), "")
        details["attribution"] = f"{address} is pod {ref} on node {ref.node or instance_id} of cluster {cluster}"
        details["owner"] = owner
        return replace(found, details=details, pods=(ref,), namespace=ref.namespace, resource_kind=ResourceKind.POD)
