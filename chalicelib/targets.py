"""Turn an incident into the pods and nodes actions run on.

Offline (a plan), targets are described from the finding alone. Against a cluster, workloads
are resolved to their pods by owner references, pods to nodes by `spec.nodeName`, and EC2
instances to nodes by `spec.providerID` (`aws:///<az>/<instance-id>`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.actions.base import KubeAPI, Target
from chalicelib.incident import Incident


@dataclass
class Targets:
    pods: list[Target] = field(default_factory=list)
    nodes: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Target]:
        return self.pods if kind == "pod" else self.nodes


def offline(incident: Incident) -> Targets:
    found = Targets()
    for pod in incident.pods:
        found.pods.append(Target("pod", pod.name, pod.namespace))
    for workload in incident.workloads:
        if workload.kind != "Pod":
            found.pods.append(
                Target("pod", f"<pods of {workload.kind} {workload.name}>", workload.namespace, resolved=False)
            )
    for node in incident.nodes:
        found.nodes.append(Target("node", node))
    for instance in incident.instance_ids:
        found.nodes.append(Target("node", f"<node of instance {instance}>", resolved=False))
    if not found.nodes:
        for pod_target in found.pods:
            found.nodes.append(Target("node", f"<node running pod {pod_target}>", resolved=False))
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


def _instance_of(node: dict[str, Any]) -> str | None:
    provider = (node.get("spec") or {}).get("providerID") or ""
    tail = provider.rsplit("/", 1)[-1]
    return tail if provider.startswith("aws://") and tail.startswith("i-") else None


def resolve(incident: Incident, kube: KubeAPI) -> Targets:
    found = Targets()
    seen_pods: set[tuple[str, str]] = set()

    def add_pod(namespace: str, name: str, pod: dict[str, Any] | None) -> None:
        if (namespace, name) in seen_pods:
            return
        seen_pods.add((namespace, name))
        found.pods.append(Target("pod", name, namespace, exists=pod is not None))
        node = ((pod or {}).get("spec") or {}).get("nodeName")
        if node and node not in {n.name for n in found.nodes}:
            found.nodes.append(Target("node", str(node)))

    for ref in incident.pods:
        add_pod(ref.namespace, ref.name, kube.get_pod(ref.namespace, ref.name))
    for workload in incident.workloads:
        if workload.kind == "Pod":
            continue
        pods = _pods_of(kube, workload.kind, workload.namespace, workload.name)
        found.notes.append(f"{workload} resolved to {len(pods)} pod(s)")
        for pod in pods:
            add_pod(workload.namespace, str(pod["metadata"]["name"]), pod)

    for name in incident.nodes:
        if name not in {n.name for n in found.nodes}:
            found.nodes.append(Target("node", name, exists=kube.get_node(name) is not None))
    if incident.instance_ids:
        by_instance = {_instance_of(n): str(n["metadata"]["name"]) for n in kube.list_nodes()}
        for instance in incident.instance_ids:
            node_name = by_instance.get(instance)
            if node_name is None:
                found.notes.append(f"instance {instance} is not a node of cluster {incident.cluster}")
            elif node_name not in {n.name for n in found.nodes}:
                found.nodes.append(Target("node", node_name))
    return found
