"""Worker nodes as EKS runs them: Karpenter, node groups (Cluster Autoscaler), EKS Auto Mode,
Bottlerocket and Windows, on the local API server with moto for the instances. The node playbook
keeps the evidence in place (the autoscaler's own annotations), does not attempt what cannot work
there (each step says why), and every change is released."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from chalicelib.actions.k8s import compute
from chalicelib.entry import decisions
from chalicelib.executors.plans import PlanStore
from chalicelib.incident import ResourceKind
from chalicelib.response.plan import Plan
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, incident, rules_with
from tests.integration.test_node_aws import CLUSTER_TAGS, EC2_FINDING

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"
KARPENTER = {compute.KARPENTER_NODEPOOL_LABEL: "default"}
AUTO = {compute.COMPUTE_TYPE_LABEL: "auto", compute.KARPENTER_NODEPOOL_LABEL: "general-purpose"}
NODE_GROUP = {"eks.amazonaws.com/nodegroup": "general"}
LABELS = {"karpenter": KARPENTER, "auto": AUTO, "node-group": NODE_GROUP}
KEEPS = {"karpenter": {compute.DO_NOT_DISRUPT: "true"}, "auto": {compute.DO_NOT_DISRUPT: "true"},
         "node-group": {compute.SCALE_DOWN_DISABLED: "true"}}  # fmt: skip
POD_KEEPS = {"karpenter": {compute.DO_NOT_DISRUPT: "true"}, "node-group": {compute.SAFE_TO_EVICT: "false"}}
REFUSED_ON_AUTO = ("ec2:protect-instance", "ec2:capture-memory", "ec2:remove-from-service", "ec2:isolate-instance")


def _node(aws_session: Any, cluster: Cluster, name: str, labels: dict[str, str], os_image: str | None = None) -> str:
    """A worker node and its EC2 instance (tagged as the cluster's); the instance id."""
    ec2 = aws_session.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": CLUSTER_TAGS}]
    where = {"AvailabilityZone": "us-east-1a"}
    (made,) = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large", Placement=where,
                                TagSpecifications=tags)["Instances"]  # fmt: skip
    instance_id = str(made["InstanceId"])
    cluster.node(name, instance_id, labels)
    if os_image:
        info = {"osImage": os_image, "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "",
                "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "",
                "operatingSystem": "linux", "systemUUID": ""}  # fmt: skip
        cluster.admin.patch(Node.Status, name, {"status": {"nodeInfo": info}}, patch_type=PatchType.MERGE)
    return instance_id


def _as_ec2_describes(aws_session: Any, instance_id: str, **fields: Any) -> None:
    """What EC2 says of an EC2 managed instance (`Operator`) or a Windows one (`Platform`), which moto
    does not model: added to its DescribeInstances answer for that instance, as the client parses it."""

    def described(parsed: dict[str, Any], **_: Any) -> None:
        for reservation in parsed.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("InstanceId") == instance_id:
                    instance.update(fields)

    aws_session.events.register("after-call.ec2.DescribeInstances", described)


def _annotations(admin: Client, kind: Any, name: str, namespace: str | None = None) -> dict[str, str]:
    obj = admin.get(kind, name, namespace=namespace) if namespace else admin.get(kind, name)
    return dict(obj.metadata.annotations or {})


def _node_finding(instance_id: str) -> Any:
    return incident(instance_ids=(instance_id,), kind=ResourceKind.NODE, type_=EC2_FINDING)


@pytest.mark.parametrize("kind", ["karpenter", "node-group", "auto"])
def test_the_node_playbook_keeps_the_evidence_in_place_and_does_only_what_can_work(
    kind: str, aws_session: Any, cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    instance_id = _node(aws_session, cluster, "node-a", LABELS[kind])
    _node(aws_session, cluster, "node-b", LABELS[kind])  # never the last Ready node of its group
    if kind == "auto":
        _as_ec2_describes(aws_session, instance_id, Operator={"Managed": True, "Principal": "eks.amazonaws.com"})
    found = _node_finding(instance_id)

    report = make_responder(incidents_table=TABLE).handle(found, Mode.LIVE)
    by_action = {r.action: r for r in report.actions}

    annotations = _annotations(admin, Node, "node-a")
    for key, value in KEEPS[kind].items():
        assert annotations.get(key) == value, annotations
    others = set(compute.AUTOSCALER_ANNOTATIONS) - set(KEEPS[kind])
    assert not others & set(annotations)  # only the mark this node's autoscaler reads
    assert "kept from its autoscaler" in by_action["k8s:label-node"].detail
    assert admin.get(Node, "node-a").spec.unschedulable is True
    if kind == "auto":
        for action in REFUSED_ON_AUTO:
            assert by_action[action].status.value == "skipped", by_action[action].detail
            assert "is an EKS Auto Mode node, and its EC2 managed instance refuses" in by_action[action].detail
        assert by_action["ec2:snapshot-volumes"].status.value == "succeeded"  # attempted: allowed on its volumes
        assert any("EKS Auto Mode node" in note for note in report.notes), report.notes
        groups = aws_session.client("ec2").describe_instances(InstanceIds=[instance_id])
        assert "isolation" not in str(groups)  # no security group was moved
    else:
        assert by_action["ec2:isolate-instance"].status.value == "succeeded", by_action["ec2:isolate-instance"].detail

    released = decisions.release(store, make_responder(incidents_table=TABLE), found.id, steps=None, who="cli:test")
    assert not {k for k in _annotations(admin, Node, "node-a") if k in compute.AUTOSCALER_ANNOTATIONS}
    assert not admin.get(Node, "node-a").spec.unschedulable
    assert all(a["status"] in {"succeeded", "skipped"} for a in released["actions"]), released["actions"]


def test_a_node_that_only_says_it_is_auto_mode_is_isolated_like_any(
    aws_session: Any, cluster: Cluster, make_responder: Any
) -> None:
    """A compromised node's kubelet can label its own Node: the claim that would spare its instance
    holds only when EC2 confirms the instance is managed."""
    instance_id = _node(aws_session, cluster, "node-a", AUTO)
    _node(aws_session, cluster, "node-b", AUTO)
    report = make_responder().handle(_node_finding(instance_id), Mode.LIVE)
    by_action = {r.action: r for r in report.actions}
    assert by_action["ec2:isolate-instance"].status.value == "succeeded", by_action["ec2:isolate-instance"].detail
    assert by_action["ec2:protect-instance"].status.value == "succeeded"
    assert any("EC2 says the instance is not a managed instance" in note for note in report.notes), report.notes


@pytest.mark.parametrize("kind", ["karpenter", "node-group"])
def test_a_pod_under_investigation_keeps_its_node(
    kind: str, aws_session: Any, cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    _node(aws_session, cluster, "node-a", LABELS[kind])
    pod = cluster.pod("web", "node-a")
    found = incident(namespace=cluster.namespace, pods=(pod,))

    report = make_responder(rules_with("k8s:label-pod"), incidents_table=TABLE).handle(found, Mode.LIVE)

    assert [a.status.value for a in report.actions] == ["succeeded"], report.actions
    assert POD_KEEPS[kind].items() <= _annotations(admin, Pod, pod, cluster.namespace).items()
    decisions.release(store, make_responder(rules_with("k8s:label-pod"), incidents_table=TABLE), found.id,
                      steps=None, who="cli:test")  # fmt: skip
    assert not set(POD_KEEPS[kind]) & set(_annotations(admin, Pod, pod, cluster.namespace))


@pytest.mark.parametrize(
    ("os_image", "labels", "said"),
    [
        ("Bottlerocket OS 1.26.0 (aws-k8s-1.33)", NODE_GROUP, "Bottlerocket has no shell for the capture"),
        ("Windows Server 2022 Datacenter", {**NODE_GROUP, "kubernetes.io/os": "windows"}, "script is for Linux"),
    ],
    ids=["bottlerocket", "windows"],
)  # fmt: skip
def test_memory_capture_is_not_attempted_where_it_cannot_work(
    os_image: str, labels: dict[str, str], said: str, aws_session: Any, cluster: Cluster, make_responder: Any
) -> None:
    instance_id = _node(aws_session, cluster, "node-a", labels, os_image)
    if "windows" in labels.values():
        _as_ec2_describes(aws_session, instance_id, Platform="windows")
    capture = {"action": "ec2:capture-memory"}
    report = make_responder(rules_with(capture, "k8s:label-node")).handle(_node_finding(instance_id), Mode.LIVE)
    (captured, labelled) = report.actions
    assert captured.status.value == "skipped"
    assert said in captured.detail, captured.detail
    assert labelled.status.value == "succeeded"  # the rest of the plan goes on
    assert any(os_image.split(maxsplit=1)[0] in note or "Windows node" in note for note in report.notes), report.notes
