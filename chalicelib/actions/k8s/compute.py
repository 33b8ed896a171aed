"""What runs a node, read from the node itself, and what that means for a response.

- an autoscaler would remove a cordoned, under-used node and the evidence on it: Karpenter (and
  EKS Auto Mode, which runs it) honours `karpenter.sh/do-not-disrupt` on the node and its pods,
  Cluster Autoscaler `scale-down-disabled` on the node and `safe-to-evict: "false"` on a pod;
- EKS Auto Mode's nodes are EC2 managed instances: direct EC2 changes to them are refused;
- Bottlerocket has no shell for a capture script; Windows runs none of the Linux tools.

The classification goes on each node, instance and pod target (`compute`, `os`), so a guardrail
can refuse a step that cannot work there with its reason, and the labelling steps add the marks
that keep the evidence in place.
"""

from __future__ import annotations

from typing import Any

COMPUTE_TYPE_LABEL = "eks.amazonaws.com/compute-type"
KARPENTER_NODEPOOL_LABEL = "karpenter.sh/nodepool"
OS_LABEL = "kubernetes.io/os"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
# Every annotation the responder may set that is not its own, with the one value it sets (the one
# that keeps the node): what the admission bounds allow, besides removing them on a release.
AUTOSCALER_ANNOTATIONS = {DO_NOT_DISRUPT: "true", SCALE_DOWN_DISABLED: "true", SAFE_TO_EVICT: "false"}

FARGATE, AUTO, KARPENTER, NODE_GROUP = "fargate", "auto", "karpenter", "node-group"
BOTTLEROCKET, WINDOWS, LINUX = "bottlerocket", "windows", "linux"

COMPUTE_NAMES = {
    FARGATE: "a Fargate node",
    AUTO: "an EKS Auto Mode node (an EC2 managed instance)",
    KARPENTER: "a Karpenter node",
    NODE_GROUP: "a node-group node",
}


def compute_of(node: dict[str, Any]) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    kind = labels.get(COMPUTE_TYPE_LABEL)
    if kind == FARGATE:
        return FARGATE
    if kind == AUTO:
        return AUTO
    if KARPENTER_NODEPOOL_LABEL in labels:
        return KARPENTER
    return NODE_GROUP  # a managed or self-managed group: an ASG, scaled by Cluster Autoscaler where it runs


def os_of(node: dict[str, Any]) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    image = str((((node.get("status") or {}).get("nodeInfo")) or {}).get("osImage") or "")
    if labels.get(OS_LABEL) == WINDOWS or "windows" in image.lower():
        return WINDOWS
    if "bottlerocket" in image.lower():
        return BOTTLEROCKET
    return LINUX


def attributes(node: dict[str, Any]) -> dict[str, str]:
    """What a target on (or of) this node carries."""
    return {"compute": compute_of(node), "os": os_of(node)}


def keep_in_place(compute: str | None, kind: str) -> dict[str, str]:
    """The annotations that keep an autoscaler from removing a node under investigation, or the
    node of a pod under investigation (`kind`: node or pod); none when the node is not known."""
    if compute in {AUTO, KARPENTER}:
        key = DO_NOT_DISRUPT
    elif compute == NODE_GROUP:
        key = SCALE_DOWN_DISABLED if kind == "node" else SAFE_TO_EVICT
    else:
        return {}
    return {key: AUTOSCALER_ANNOTATIONS[key]}
