"""Seed the local stack with a small EKS-like cluster named `demo`.

Four worker nodes whose providerIDs are EC2 instances created in moto (tagged as EKS nodes),
a Deployment with its ReplicaSet and pods, a DaemonSet, a bare pod, a kube-system pod, and
the responder's generated ClusterRole. moto's random generator is seeded, so instance ids are
the same on every run: the project's events/ name them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import yaml
from lightkube import Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from chalicelib.generate.permissions import BOUNDS_FILE, CLUSTER_ROLE_FILE, IMAGE_BLOCKS_FILE

if TYPE_CHECKING:
    from devstack.stack import LocalStack

CLUSTER = "demo"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
MOTO_SEED = 42
# What moto (pinned) hands out after seeding with MOTO_SEED; events/ refer to these.
EXPECTED_NODES = (
    ("i-cd9226b0ed9ce5ec6", "ip-10-55-144-105.ec2.internal"),
    ("i-6f3abc05c946c59a9", "ip-10-182-96-189.ec2.internal"),
    ("i-7733adfa936a8baee", "ip-10-163-206-7.ec2.internal"),
    ("i-8230151cfc191d475", "ip-10-24-214-92.ec2.internal"),
)
EVIDENCE_BUCKET = "eks-responder-evidence-demo"
AVML_STAND_IN = b"#!/bin/sh\n# stands in for the AVML binary: the local stack runs no node\n"
AVML_SHA256 = hashlib.sha256(AVML_STAND_IN).hexdigest()
NODE_GROUP_ASG = "eks-general-demo"
DEVELOPER_ROLE = "developer"
CONTRACTOR_ROLE = "contractor"  # the caller of the Tor finding
NODE_ROLE = "eks-demo-general-node"
NODE_PROFILE = "eks-demo-general-node"


@dataclass(frozen=True)
class SeededCluster:
    nodes: dict[str, str]  # instance id -> node name
    evidence_bucket: str
    topic_arn: str = ""
    queue_url: str = ""


def admin_client(stack: LocalStack) -> Client:
    return Client(KubeConfig.from_file(stack.admin_kubeconfig), field_manager="devstack")


def _uid(obj: Any) -> str:
    uid: str = obj.metadata.uid
    return uid


def until_established(client: Client, crd: str, timeout: float = 60.0) -> None:
    """Poll the CRD until the server serves its API. A watch would do, but a current server answers a
    watch from a resourceVersion its CRD cache has not reached yet with "Too large resource version"."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(CustomResourceDefinition, crd).status
        if status and any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
            return
        time.sleep(0.05)  # polling a condition, not waiting for time to pass
    raise RuntimeError(f"{crd} was not established within {timeout:.0f} s")


def _apply(client: Client, obj: dict[str, Any]) -> None:
    client.apply(from_dict(obj), field_manager="devstack", force=True)


def _pod(
    namespace: str,
    name: str,
    node: str,
    labels: dict[str, str],
    owner: dict[str, Any] | None = None,
    image: str = "public.ecr.aws/nginx/nginx:1.27",
    privileged: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner:
        meta["ownerReferences"] = [{**owner, "controller": True, "blockOwnerDeletion": True}]
    container: dict[str, Any] = {"name": "main", "image": image}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node, "containers": [container]}}


def _template(labels: dict[str, str], image: str) -> dict[str, Any]:
    return {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main", "image": image}]}}


def _aws(stack: LocalStack) -> dict[str, str]:
    for path in ("/moto-api/reset", f"/moto-api/seed?a={MOTO_SEED}"):
        request = urllib.request.Request(f"{stack.moto_url}{path}", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=stack.moto_url)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [
        {"Key": "eks:cluster-name", "Value": CLUSTER},
        {"Key": f"kubernetes.io/cluster/{CLUSTER}", "Value": "owned"},
        {"Key": "eks:nodegroup-name", "Value": "general"},
    ]
    reservation = ec2.run_instances(
        ImageId=image,
        MinCount=3,
        MaxCount=3,
        InstanceType="m5.large",
        Placement={"AvailabilityZone": f"{REGION}a"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    more = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="m5.large",
        Placement={"AvailabilityZone": f"{REGION}a"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    found = tuple((i["InstanceId"], i["PrivateDnsName"]) for i in reservation["Instances"] + more["Instances"])
    if found != EXPECTED_NODES:
        raise RuntimeError(
            f"moto handed out different instances than events/ expect: {found}; "
            "update EXPECTED_NODES in devstack/seed.py and the instance ids in events/"
        )
    _node_group(session, stack, ec2, image, [instance for instance, _ in found])
    _identities(session, stack)
    _registry(session, stack)
    s3 = session.client("s3", endpoint_url=stack.moto_url)
    s3.create_bucket(Bucket=EVIDENCE_BUCKET)
    # ec2:capture-memory's set-up, as docs/memory-capture.md tells: the tool in the bucket, the document bound to it
    s3.put_object(Bucket=EVIDENCE_BUCKET, Key="evidence/tools/avml", Body=AVML_STAND_IN)
    from deploy.prerequisites import memory_capture_document

    memory_capture_document(session.client("ssm", endpoint_url=stack.moto_url), "local", EVIDENCE_BUCKET)
    return dict(found)


# What ECR's basic scan found in the `reports` image: the list the responder reads for the alert.
REPORTS_FINDINGS = (
    ("CVE-2023-38545", "CRITICAL", "curl", "7.88.1", "9.8"),
    ("CVE-2022-37434", "CRITICAL", "zlib", "1.2.12", "9.8"),
    ("CVE-2024-6387", "HIGH", "openssh", "9.2p1", "8.1"),
    ("CVE-2023-4911", "HIGH", "glibc", "2.36", "7.8"),
    ("CVE-2023-5678", "MEDIUM", "openssl", "3.0.11", "5.3"),
)


def _registry(session: Any, stack: LocalStack) -> None:
    """The `reports` repository, its scanned image, and the findings events/ecr reports in counts."""
    ecr = session.client("ecr", endpoint_url=stack.moto_url)
    repository = REPORTS_IMAGE.rsplit("/", 1)[1]
    ecr.create_repository(repositoryName=repository)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag="2.3.1",
                  imageDigest=REPORTS_DIGEST)  # fmt: skip
    ecr.start_image_scan(repositoryName=repository, imageId={"imageDigest": REPORTS_DIGEST})
    findings = [
        {"name": cve, "severity": severity, "uri": f"https://nvd.nist.gov/vuln/detail/{cve}",
         "attributes": [{"key": "package_name", "value": package}, {"key": "package_version", "value": version},
                        {"key": "CVSS3_SCORE", "value": score}]}
        for cve, severity, package, version, score in REPORTS_FINDINGS
    ]  # fmt: skip
    counts: dict[str, int] = {}
    for _, severity, *_ in REPORTS_FINDINGS:
        counts[severity] = counts.get(severity, 0) + 1
    result = {"registryId": ACCOUNT, "repositoryName": repository, "imageId": {"imageDigest": REPORTS_DIGEST},
              "imageScanStatus": {"status": "COMPLETE"},
              "imageScanFindings": {"findings": findings, "findingSeverityCounts": counts}}  # fmt: skip
    body = json.dumps({"results": [result], "region": REGION}).encode()
    url = f"{stack.moto_url}/moto-api/static/ecr/scan-finding-results"
    with urllib.request.urlopen(urllib.request.Request(url, body, method="POST"), timeout=10):
        pass


def _identities(session: Any, stack: LocalStack) -> None:
    """The IAM roles the events name: a developer (mapped in aws-auth) and the nodes' role."""
    iam = session.client("iam", endpoint_url=stack.moto_url)
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    for role in (DEVELOPER_ROLE, CONTRACTOR_ROLE, NODE_ROLE):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    iam.create_instance_profile(InstanceProfileName=NODE_PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=NODE_PROFILE, RoleName=NODE_ROLE)


def _node_group(session: Any, stack: LocalStack, ec2: Any, image: str, instances: list[str]) -> None:
    """The Auto Scaling group of node group `general`, and a VPC CNI secondary ENI on the first node."""
    autoscaling = session.client("autoscaling", endpoint_url=stack.moto_url)
    ec2.create_launch_template(LaunchTemplateName="eks-demo-general", LaunchTemplateData={"ImageId": image})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=NODE_GROUP_ASG,
        LaunchTemplate={"LaunchTemplateName": "eks-demo-general"},
        MinSize=0,
        MaxSize=8,
        DesiredCapacity=0,
        AvailabilityZones=[f"{REGION}a"],
        Tags=[{"Key": "eks:cluster-name", "Value": CLUSTER, "PropagateAtLaunch": True}],
    )
    autoscaling.attach_instances(InstanceIds=instances, AutoScalingGroupName=NODE_GROUP_ASG)
    first = ec2.describe_instances(InstanceIds=instances[:1])["Reservations"][0]["Instances"][0]
    secondary = ec2.create_network_interface(SubnetId=first["SubnetId"], Description="aws-K8S-" + instances[0])
    made = (secondary["NetworkInterface"]["NetworkInterfaceId"], secondary["NetworkInterface"]["PrivateIpAddress"])
    if made != POD_INTERFACE:
        raise RuntimeError(f"moto handed out {made}, not {POD_INTERFACE}: update POD_INTERFACE and events/flowlogs/")
    ec2.attach_network_interface(
        NetworkInterfaceId=secondary["NetworkInterface"]["NetworkInterfaceId"], InstanceId=instances[0], DeviceIndex=1
    )
    # A load balancer's target groups: every node by instance (a NodePort), and a pod by address (IP mode).
    elbv2 = session.client("elbv2", endpoint_url=stack.moto_url)
    nodes = elbv2.create_target_group(Name="demo-web-nodes", Protocol="HTTP", Port=30080, VpcId=first["VpcId"])
    elbv2.register_targets(TargetGroupArn=nodes["TargetGroups"][0]["TargetGroupArn"],
                           Targets=[{"Id": i, "Port": 30080} for i in instances])  # fmt: skip
    pods = elbv2.create_target_group(Name="demo-web-pods", Protocol="HTTP", Port=8080, VpcId=first["VpcId"],
                                     TargetType="ip")  # fmt: skip
    elbv2.register_targets(TargetGroupArn=pods["TargetGroups"][0]["TargetGroupArn"],
                           Targets=[{"Id": POD_INTERFACE[1], "Port": 8080}])  # fmt: skip


def seed(stack: LocalStack) -> SeededCluster:
    nodes = _aws(stack)
    with admin_client(stack) as client:
        _kubernetes(client, nodes)
    topic, queue = _notifications(stack)
    return SeededCluster(nodes, EVIDENCE_BUCKET, topic, queue)


def _notifications(stack: LocalStack) -> tuple[str, str]:
    """An SNS topic for incident reports, with an SQS subscriber to read them back."""
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    sns, sqs = session.client("sns", endpoint_url=stack.moto_url), session.client("sqs", endpoint_url=stack.moto_url)
    topic = sns.create_topic(Name="eks-responder-demo-incidents")["TopicArn"]
    queue = sqs.create_queue(QueueName="incidents")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return str(topic), str(queue)


KYVERNO_CRD = Path(__file__).parent / "kyverno-clusterpolicy-crd.yaml"


def _kubernetes(client: Client, nodes: dict[str, str]) -> None:
    # As the deploy checklist has an administrator do: the ClusterRole, the standing image-blocks
    # policy and the bounds on the responder's own identity, all enforced by the server.
    for manifest in (CLUSTER_ROLE_FILE, IMAGE_BLOCKS_FILE, BOUNDS_FILE):
        for doc in yaml.safe_load_all(manifest.read_text()):
            _apply(client, doc)
    # Kyverno's API too (the CRD only), for the bounds' Kyverno form and clusters that use it.
    _apply(client, yaml.safe_load(KYVERNO_CRD.read_text()))
    until_established(client, "clusterpolicies.kyverno.io")
    for namespace in ("payments", "tools", "monitoring", "eks-responder"):
        _apply(client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    names = list(nodes.values())
    for instance, node in nodes.items():
        _apply(
            client,
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node,
                    "labels": {
                        "kubernetes.io/hostname": node,
                        "eks.amazonaws.com/nodegroup": "general",
                        "topology.kubernetes.io/zone": f"{REGION}a",
                    },
                },
                "spec": {"providerID": f"aws:///{REGION}a/{instance}"},
            },
        )
        # No kubelet reports it here; the responder never isolates a group's last Ready node.
        ready = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}
        client.patch(Node.Status, node, ready, patch_type=PatchType.MERGE)

    web = {"app": "web"}
    deployment = client.create(
        from_dict(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "payments"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": web},
                    "template": _template(web, "public.ecr.aws/nginx/nginx:1.27"),
                },
            }
        )
    )
    rs_labels = {**web, "pod-template-hash": "5d9c7b8f6"}
    replicaset = client.create(
        from_dict(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": "web-5d9c7b8f6",
                    "namespace": "payments",
                    "labels": rs_labels,
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": "web",
                            "uid": _uid(deployment),
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": rs_labels},
                    "template": _template(rs_labels, "public.ecr.aws/nginx/nginx:1.27"),
                },
            }
        )
    )
    rs_owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b8f6", "uid": _uid(replicaset)}
    for index, suffix in enumerate(("x7k2p", "q9m4t")):
        client.create(from_dict(_pod("payments", f"web-5d9c7b8f6-{suffix}", names[index], rs_labels, rs_owner)))

    agent = {"app": "node-agent"}
    daemonset = client.create(
        from_dict(
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "node-agent", "namespace": "monitoring"},
                "spec": {
                    "selector": {"matchLabels": agent},
                    "template": _template(agent, "public.ecr.aws/docker/library/busybox:1.36"),
                },
            }
        )
    )
    ds_owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-agent", "uid": _uid(daemonset)}
    for index, node in enumerate(names[:3]):
        client.create(
            from_dict(
                _pod(
                    "monitoring",
                    f"node-agent-{'abc'[index]}4f9z",
                    node,
                    agent,
                    ds_owner,
                    image="public.ecr.aws/docker/library/busybox:1.36",
                )
            )
        )

    client.create(
        from_dict(
            _pod(
                "tools",
                "debug-shell",
                names[0],
                {"app": "debug-shell"},
                image="public.ecr.aws/docker/library/alpine:3.20",
                privileged=True,
            )
        )
    )
    client.create(
        from_dict(
            _pod(
                "kube-system",
                "aws-node-7xk2m",
                names[1],
                {"k8s-app": "aws-node"},
                image="602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.18.0",
            )
        )
    )
    _scanned_image(client, names)
    _flow_pod(client, names[0])
    _rbac_and_aws_auth(client)


# The VPC CNI interface moto hands out for the first node (seeded), and the pod address on it that
# events/flowlogs/ records traffic from.
POD_INTERFACE = ("eni-6d08f04177e28436f", "172.31.7.251")


def _flow_pod(client: Client, node: str) -> None:
    """A pod whose address (on the node's VPC CNI interface) the demo's flow logs show."""
    client.create(from_dict(_pod("payments", "invoice-worker", node, {"app": "invoice-worker"})))
    # As a kubelet reports it; started before the capture window of events/flowlogs/ (2025-11-28 09:00).
    status = {"status": {"podIP": POD_INTERFACE[1], "podIPs": [{"ip": POD_INTERFACE[1]}], "phase": "Running",
                         "startTime": "2025-11-28T00:00:00Z"}}  # fmt: skip
    client.patch(Pod.Status, "invoice-worker", status, namespace="payments", patch_type=PatchType.MERGE)


# The digest events/ecr/ecr-image-scan-critical-reports.json reports with Critical findings.
REPORTS_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/reports"
REPORTS_DIGEST = "sha256:9c1f4a7e2b8d3c6f5a0e1d2c3b4a59687f6e5d4c3b2a1908f7e6d5c4b3a29180"


def _scanned_image(client: Client, nodes: list[str]) -> None:
    """Two pods run the scanned digest: one asked for it, one pulled it by tag (the kubelet's imageID)."""
    client.create(from_dict(_pod("tools", "reports-cron", nodes[2], {"app": "reports"},
                                 image=f"{REPORTS_IMAGE}@{REPORTS_DIGEST}")))  # fmt: skip
    client.create(from_dict(_pod("payments", "reports-api", nodes[3], {"app": "reports"},
                                 image=f"{REPORTS_IMAGE}:2.3.1")))  # fmt: skip
    status = {"status": {"containerStatuses": [{
        "name": "main", "image": f"{REPORTS_IMAGE}:2.3.1", "imageID": f"{REPORTS_IMAGE}@{REPORTS_DIGEST}",
        "ready": True, "restartCount": 0, "state": {"running": {}},
    }]}}  # fmt: skip
    client.patch(Pod.Status, "reports-api", status, namespace="payments", patch_type=PatchType.MERGE)


def _rbac_and_aws_auth(client: Client) -> None:
    """What identity findings act on: two dangerous bindings and the aws-auth mappings."""
    rbac = "rbac.authorization.k8s.io"
    anonymous = {"apiGroup": rbac, "kind": "User", "name": "system:anonymous"}
    default_sa = {"kind": "ServiceAccount", "name": "default", "namespace": "tools"}
    for kind, meta, role, subject in (
        ("ClusterRoleBinding", {"name": "anonymous-view"}, "view", anonymous),
        ("RoleBinding", {"name": "default-admin", "namespace": "tools"}, "cluster-admin", default_sa),
    ):
        role_ref = {"apiGroup": rbac, "kind": "ClusterRole", "name": role}
        client.create(
            from_dict(
                {"apiVersion": f"{rbac}/v1", "kind": kind, "metadata": meta, "roleRef": role_ref, "subjects": [subject]}
            )
        )
    developer = {"username": "developer:{{SessionName}}", "groups": ["developers"]}
    nodes = {"username": "system:node:{{EC2PrivateDNSName}}", "groups": ["system:bootstrappers", "system:nodes"]}
    # Each entry its own lists, as eksctl writes them (a shared list would be dumped as a YAML alias).
    roles = [
        {"rolearn": f"arn:aws:iam::{ACCOUNT}:role/{DEVELOPER_ROLE}", **copy.deepcopy(developer)},
        {"rolearn": f"arn:aws:iam::{ACCOUNT}:role/{CONTRACTOR_ROLE}", **copy.deepcopy(developer)},
        {"rolearn": f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}", **nodes},
    ]
    aws_auth = {"name": "aws-auth", "namespace": "kube-system"}
    client.create(
        from_dict(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": aws_auth, "data": {"mapRoles": yaml.safe_dump(roles)}}
        )
    )
