"""Turn an incident into the pods and nodes actions run on.

Offline (a plan), targets are described from the finding alone. Against a cluster, workloads
are resolved to their pods by owner references, pods to nodes by `spec.nodeName`, and EC2
instances to nodes by `spec.providerID` (`aws:///<az>/<instance-id>`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from chalicelib.actions.k8s import compute
from chalicelib.incident import Incident, ResourceKind
from chalicelib.interfaces import IdentityAPI, KubeAPI, Target
from chalicelib.response import identities
from chalicelib.sources.runtime_coverage import AGENT_CHECK

FARGATE_LABEL = "eks.amazonaws.com/compute-type"
FARGATE_REASON = "a Fargate pod has no node to cordon or EC2 instance to isolate"


class Targets(msgspec.Struct):
    pods: list[Target] = msgspec.field(default_factory=list)
    nodes: list[Target] = msgspec.field(default_factory=list)
    instances: list[Target] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    # Identities and bindings are looked up only when a rule has an action for them.
    lazy: dict[str, Callable[[], list[Target]]] = msgspec.field(default_factory=dict)
    _resolved: dict[str, list[Target]] = msgspec.field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Target]:
        eager = {"pod": self.pods, "node": self.nodes, "instance": self.instances}
        if kind in eager:
            return eager[kind]
        if kind not in self._resolved:
            self._resolved[kind] = self.lazy[kind]() if kind in self.lazy else []
        return self._resolved[kind]

    def look_up_identities(self, incident: Incident, kube: KubeAPI | None, identity: IdentityAPI | None) -> None:
        self.lazy = {
            "role": lambda: identities.roles(incident, kube, identity, self.notes),
            "user": lambda: identities.users(incident),
            "principal": lambda: identities.eks_principals(incident),
            "binding": lambda: identities.bindings(incident, kube),
            "key": lambda: [Target("key", arn) for arn in incident.key_arns],
            "image": lambda: [Target("image", image) for image in incident.images],
            "cluster": lambda: identities.clusters(incident, identity, self.notes),
        }

    def add_instance(self, instance_id: str, skip_reason: str | None = None, on: dict[str, str] | None = None) -> None:
        """`on`: what runs the node the instance is (its compute and OS), when it is one."""
        if instance_id not in {t.name for t in self.instances}:
            self.instances.append(Target("instance", instance_id, skip_reason=skip_reason, attributes=dict(on or {})))


def offline(incident: Incident) -> Targets:
    found = Targets()
    for pod in incident.pods:
        found.pods.append(Target("pod", pod.name, pod.namespace))
    if incident.resource_kind is ResourceKind.IMAGE:
        for image in incident.images:
            found.pods.append(Target("pod", f"<pods running {digest_of(image)}>", resolved=False))
    for workload in incident.workloads:
        if workload.kind != "Pod":
            found.pods.append(
                Target("pod", f"<pods of {workload.kind} {workload.name}>", workload.namespace, resolved=False)
            )
    for node in incident.nodes:
        found.nodes.append(Target("node", node))
    if incident.details.get("agent_check") == AGENT_CHECK:
        found.nodes.append(Target("node", "<nodes without a running GuardDuty agent>", resolved=False))
    for instance in incident.instance_ids:
        found.nodes.append(Target("node", f"<node of instance {instance}>", resolved=False))
    if not found.nodes:
        for pod_target in found.pods:
            found.nodes.append(Target("node", f"<node running pod {pod_target}>", resolved=False))
    for instance_id in incident.instance_ids:
        found.add_instance(instance_id)
    if not found.instances:
        for node_target in found.nodes:
            described = node_target.name.strip("<>") if not node_target.resolved else f"node {node_target}"
            found.instances.append(Target("instance", f"<instance of {described}>", resolved=False))
    found.look_up_identities(incident, None, None)
    return found


def aws_only(incident: Incident, why: str) -> Targets:
    """When the cluster cannot be reached: the instances the finding names, and why."""
    found = Targets(notes=[f"cluster unreachable ({why}); acting on the instances the finding names"])
    for instance_id in incident.instance_ids:
        found.add_instance(instance_id)
    return found


def _owner(obj: dict[str, Any]) -> tuple[str, str] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller", True):
            return str(ref.get("kind")), str(ref.get("name"))
    return None


def _pods_of(kube: KubeAPI, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = kube.list_pods(namespace)
    if kind == "Deployment":
        owners = {
            ("ReplicaSet", (rs.get("metadata") or {}).get("name"))
            for rs in kube.list_replicasets(namespace)
            if _owner(rs) == ("Deployment", name)
        }
    elif kind == "CronJob":
        owners = {
            ("Job", (job.get("metadata") or {}).get("name"))
            for job in kube.list_jobs(namespace)
            if _owner(job) == ("CronJob", name)
        }
    else:
        owners = {(kind, name)}
    return [p for p in pods if _owner(p) in owners]


def digest_of(image: str) -> str:
    return image.rsplit("@", 1)[-1] if "@" in image else image


def owner_of(pod: dict[str, Any]) -> str:
    owner = _owner(pod)
    return f"{owner[0]}/{owner[1]}" if owner else "no owner"


def pods_running(kube: KubeAPI, digest: str) -> list[dict[str, Any]]:
    """Pods (all namespaces) whose running image (status imageID) or requested image is the digest."""
    found = []
    for pod in kube.list_pods("*"):
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        spec = pod.get("spec") or {}
        images = [str(s.get("imageID", "")) for s in statuses] + [
            str(c.get("image", "")) for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        ]
        if any(image.endswith(digest) for image in images):
            found.append(pod)
    return found


def _instance_of(node: dict[str, Any]) -> str | None:
    provider = (node.get("spec") or {}).get("providerID") or ""
    tail = provider.rsplit("/", 1)[-1]
    return tail if provider.startswith("aws://") and tail.startswith("i-") else None


AGENT_NAMESPACE = "amazon-guardduty"
AGENT_PREFIX = "aws-guardduty-agent-"  # the pods of GuardDuty's DaemonSet


def nodes_without_agent(kube: KubeAPI) -> list[str]:
    """Nodes where no GuardDuty agent pod is running and ready (Fargate nodes never run one)."""
    watched = set()
    for pod in kube.list_pods(AGENT_NAMESPACE):
        if not str(pod["metadata"]["name"]).startswith(AGENT_PREFIX):
            continue
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        if status.get("phase") == "Running" and statuses and all(c.get("ready") for c in statuses):
            watched.add((pod.get("spec") or {}).get("nodeName"))
    quiet = []
    for node in kube.list_nodes():
        labels = (node.get("metadata") or {}).get("labels") or {}
        if labels.get("eks.amazonaws.com/compute-type") == "fargate":
            continue
        if node["metadata"]["name"] not in watched:
            quiet.append(str(node["metadata"]["name"]))
    return sorted(quiet)


def resolve(incident: Incident, kube: KubeAPI) -> Targets:
    """Pods of the finding (workloads expanded), then its nodes and their EC2 instances.

    Node actions go to the nodes the finding names (by name or instance); only when it names
    none do they go to the nodes running its pods (a privileged pod escalates to its node).
    """
    found = Targets()
    pod_nodes: list[str] = []

    def add_pod(namespace: str, name: str, pod: dict[str, Any] | None) -> None:
        if any(p.namespace == namespace and p.name == name for p in found.pods):
            return
        # The uid tells a pod from its replacement of the same name (a StatefulSet's): an approval
        # given for one never acts on the other.
        uid = str(((pod or {}).get("metadata") or {}).get("uid") or "")
        node = ((pod or {}).get("spec") or {}).get("nodeName")
        kept = {"uid": uid} if uid else {}
        found.pods.append(
            Target(
                "pod", name, namespace, exists=pod is not None, attributes={**kept, **({"node": node} if node else {})}
            )
        )
        if node and node not in pod_nodes:
            pod_nodes.append(str(node))

    for ref in incident.pods:
        add_pod(ref.namespace, ref.name, kube.get_pod(ref.namespace, ref.name))
    if incident.resource_kind is ResourceKind.IMAGE:
        for image in incident.images:
            running = pods_running(kube, digest_of(image))
            described = ", ".join(
                f"{p['metadata']['namespace']}/{p['metadata']['name']} ({owner_of(p)})" for p in running
            )
            found.notes.append(f"{len(running)} pod(s) run {digest_of(image)}" + (f": {described}" if running else ""))
            for pod in running:
                add_pod(str(pod["metadata"]["namespace"]), str(pod["metadata"]["name"]), pod)
    for workload in incident.workloads:
        if workload.kind == "Pod":
            continue
        pods = _pods_of(kube, workload.kind, workload.namespace, workload.name)
        found.notes.append(f"{workload} resolved to {len(pods)} pod(s)")
        for pod in pods:
            add_pod(workload.namespace, str(pod["metadata"]["name"]), pod)

    for name in incident.nodes:
        found.nodes.append(Target("node", name, exists=kube.get_node(name) is not None))
    if incident.details.get("agent_check") == AGENT_CHECK:
        quiet = nodes_without_agent(kube)
        named = f": {', '.join(quiet)}" if quiet else ""
        found.notes.append(f"{len(quiet)} node(s) without a running GuardDuty agent{named}")
        found.nodes.extend(Target("node", name) for name in quiet)
    if found.nodes or incident.instance_ids or pod_nodes:
        _map_nodes_and_instances(incident, kube, found, pod_nodes)
    return found


def _runs_on(node: str, on: dict[str, str]) -> list[str]:
    """What the report says once about a node whose compute or OS rules steps out."""
    said = []
    if on.get("compute") == compute.AUTO:
        said.append(f"node {node} is labelled an EKS Auto Mode node: once EC2 confirms its instance is managed, "
                    "the direct changes AWS refuses there (security groups, termination protection, SSM commands) "
                    "are not attempted; cordon, taints, pod isolation and do-not-disrupt hold it instead")  # fmt: skip
    if on.get("os") == compute.BOTTLEROCKET:
        said.append(
            f"node {node} runs Bottlerocket: no shell for a memory-capture script (its admin container, by hand)"
        )
    if on.get("os") == compute.WINDOWS:
        said.append(f"node {node} is a Windows node: the Linux memory capture does not apply")
    return said


def _map_nodes_and_instances(incident: Incident, kube: KubeAPI, found: Targets, pod_nodes: list[str]) -> None:
    """Instance ids to nodes (providerID), nodes to instances; Fargate nodes have neither."""
    # The nodes named or running the pods are read by name; the whole list only when an instance
    # is on none of them (Kubernetes selects nodes by no field that holds the instance id).
    named = dict.fromkeys([*(t.name for t in found.nodes), *pod_nodes])
    nodes = {name: node for name in named if (node := kube.get_node(name)) is not None}
    by_instance = {_instance_of(n): name for name, n in nodes.items()}
    if any(instance_id not in by_instance for instance_id in incident.instance_ids):
        nodes = {str(n["metadata"]["name"]): n for n in kube.list_nodes()}
        by_instance = {_instance_of(n): name for name, n in nodes.items()}
    for instance_id in incident.instance_ids:
        node_name = by_instance.get(instance_id)
        if node_name is None:
            found.notes.append(f"instance {instance_id} is not a node of cluster {incident.cluster}")
        elif node_name not in {n.name for n in found.nodes}:
            found.nodes.append(Target("node", node_name))
        found.add_instance(instance_id)
    if not found.nodes:
        found.nodes.extend(Target("node", name) for name in pod_nodes)
    for pod in found.pods:  # a pod under investigation is kept on its node as the node's autoscaler reads it
        if pod.attributes.get("node") in nodes:
            pod.attributes["node_compute"] = compute.compute_of(nodes[pod.attributes["node"]])
    for index, target in enumerate(found.nodes):
        node = nodes.get(target.name) or {}
        labels = (node.get("metadata") or {}).get("labels") or {}
        if labels.get(FARGATE_LABEL) == "fargate":
            found.nodes[index] = Target("node", target.name, skip_reason=FARGATE_REASON)
            found.notes.append(f"node {target.name} is a Fargate node: nothing to cordon or isolate")
            continue
        on = compute.attributes(node) if node else {}
        target.attributes.update(on)
        found.notes.extend(_runs_on(target.name, on))
        node_instance = _instance_of(node)
        if node_instance:
            found.add_instance(node_instance, on=on)
            next(t for t in found.instances if t.name == node_instance).attributes.update(on)
