"""What `make demo` does, checked: the project's events replayed live on the seeded cluster."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import yaml
from lightkube.resources.core_v1 import ConfigMap, Node, Pod
from lightkube.resources.networking_v1 import NetworkPolicy

from chalicelib.commands.cli import main
from chalicelib.interfaces import QUARANTINE_LABEL
from devstack import seed, stack
from tests.conftest import EVENTS

pytestmark = pytest.mark.integration


@dataclass
class Demo:
    running: stack.LocalStack
    nodes: dict[str, str]
    code: int
    results: dict[str, dict[str, Any]]

    def replay(self) -> tuple[int, dict[str, dict[str, Any]]]:
        env = {**self.running.env(), "EVIDENCE_BUCKET": seed.EVIDENCE_BUCKET, "DRY_RUN": "false"}
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
            for key, value in env.items():
                patch.setenv(key, value)
            code = main(["replay", "--json", "--live", "--apply", str(EVENTS)])
        found: dict[str, dict[str, Any]] = {}
        for line in out.getvalue().splitlines():
            row = json.loads(line)
            name = row["event"].rsplit("/", 1)[-1]
            # A flow-log file gives one row per incident: name, name#1, ...
            key = next(k for k in (name, *(f"{name}#{i}" for i in range(1, 100))) if k not in found)
            found[key] = row
        return code, found


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """`make demo`, once per module: the seeded stack and the live replay of events/."""
    with stack.start() as running:
        seeded = seed.seed(running)
        found = Demo(running, seeded.nodes, 0, {})
        found.code, found.results = found.replay()
        yield found


def running_client(running: stack.LocalStack, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=running.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _statuses(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["action"], a["target"], a["status"]) for a in result.get("actions", [])]


def _cordoned(results: dict[str, dict[str, Any]]) -> list[str]:
    return [t for r in results.values() for a, t, s in _statuses(r) if a == "k8s:cordon-node" and s == "succeeded"]


def test_pods_and_nodes_are_contained(demo: Demo) -> None:
    results, nodes = demo.results, demo.nodes
    assert demo.code == 0
    # A pod finding isolates that pod; its Deployment sibling is left serving until its own finding.
    shell = results["execution-runtime-reverse-shell.json"]
    assert shell["mode"] == "live"
    # The attack sequence (replayed first) isolated both web pods already.
    assert ("k8s:isolate-pod", "payments/web-5d9c7b8f6-x7k2p", "skipped") in _statuses(shell)
    sequence = _statuses(results["attack-sequence-eks-compromised-cluster.json"])
    assert ("k8s:isolate-pod", "payments/web-5d9c7b8f6-x7k2p", "succeeded") in sequence
    # its node was already taken by the instance-group sequence (replayed just before): cordoned once
    assert ("k8s:cordon-node", nodes["i-cd9226b0ed9ce5ec6"], "skipped") in sequence
    group = _statuses(results["attack-sequence-ec2-compromised-instance-group-worker-nodes.json"])
    assert ("k8s:cordon-node", nodes["i-cd9226b0ed9ce5ec6"], "succeeded") in group
    assert ("ec2:remove-from-service", "i-cd9226b0ed9ce5ec6", "succeeded") in group

    # The DaemonSet resolves to its three pods.
    daemonset = _statuses(results["backdoor-runtime-c2-activity-dns-daemonset.json"])
    assert sorted(t for a, t, s in daemonset if a == "k8s:isolate-pod" and s == "succeeded") == [
        "monitoring/node-agent-a4f9z", "monitoring/node-agent-b4f9z", "monitoring/node-agent-c4f9z",
    ]  # fmt: skip

    # kube-system is protected; the cordon cap (3 an hour) holds back the fourth node.
    kube_system = _statuses(results["execution-kubernetes-exec-in-kube-system-pod.json"])
    assert ("k8s:isolate-pod", "kube-system/aws-node-7xk2m", "skipped") in kube_system
    cordoned = _cordoned(results)
    assert len(cordoned) == 3
    capped = {
        a["action"]: a for a in results["privilege-escalation-runtime-runc-container-escape-node.json"]["actions"]
    }
    assert "MAX_NODES_CORDONED_PER_HOUR=3" in capped["k8s:cordon-node"]["detail"]
    assert "MAX_INSTANCES_ISOLATED_PER_HOUR=3" in capped["ec2:isolate-instance"]["detail"]
    assert capped["ec2:protect-instance"]["status"] == "succeeded"  # protection and evidence are never capped
    assert capped["ec2:snapshot-volumes"]["status"] == "succeeded"


def test_the_node_playbook_runs_on_the_aws_side(demo: Demo) -> None:
    results, nodes, running = demo.results, demo.nodes, demo.running
    cordoned = _cordoned(results)
    # On the AWS side: three instances isolated (every ENI), protected, snapshotted; the miner's pool denied.
    isolated = [
        t for r in results.values() for a, t, s in _statuses(r) if a == "ec2:isolate-instance" and s == "succeeded"
    ]
    assert sorted(isolated) == sorted(i for i, n in nodes.items() if n in cordoned)
    ec2 = running_client(running, "ec2")
    first = ec2.describe_instances(InstanceIds=["i-cd9226b0ed9ce5ec6"])["Reservations"][0]["Instances"][0]
    groups = {g["GroupName"] for e in first["NetworkInterfaces"] for g in e["Groups"]}
    assert len(first["NetworkInterfaces"]) == 2
    (name,) = groups
    assert name.startswith(f"eks-responder-isolation-{first['VpcId']}-")
    denied = {
        (e["CidrBlock"], e["Egress"])
        for acl in ec2.describe_network_acls()["NetworkAcls"]
        for e in acl["Entries"]
        if e["RuleAction"] == "deny" and e["RuleNumber"] < 32767
    }
    # Out of service: Standby in its node group (capacity kept), in no target group by id or address
    autoscaling, elbv2 = running_client(running, "autoscaling"), running_client(running, "elbv2")
    (state,) = autoscaling.describe_auto_scaling_instances(InstanceIds=["i-cd9226b0ed9ce5ec6"])["AutoScalingInstances"]
    assert state["LifecycleState"] == "Standby"
    addresses = {a["PrivateIpAddress"] for e in first["NetworkInterfaces"] for a in e["PrivateIpAddresses"]}
    registered = {
        t["Target"]["Id"]
        for g in elbv2.describe_target_groups()["TargetGroups"]
        for t in elbv2.describe_target_health(TargetGroupArn=g["TargetGroupArn"])["TargetHealthDescriptions"]
    }
    assert not registered & {"i-cd9226b0ed9ce5ec6", *addresses}
    assert set(nodes) - set(isolated) <= registered  # the nodes left serving still serve
    # The miner's pool GuardDuty names, in and out. The flow logs' mining-port remote and SSH source are
    # suspected by a port alone: their deny waits for a human (test_flow_logs_contain_the_pod_behind_the_address).
    assert denied == {("81.2.69.192/32", egress) for egress in (False, True)}


def test_flow_logs_contain_the_pod_behind_the_address(demo: Demo) -> None:
    mining, ssh = demo.results["vpc-flow-logs-demo.log"], demo.results["vpc-flow-logs-demo.log#1"]
    assert mining["delivery"]["records"] == 10
    assert mining["delivery"]["nodata_or_skipdata"] == 1
    assert mining["incident"]["type"] == "Impact:FlowLogs/MiningPoolConnection"
    assert mining["incident"]["pods"] == ["payments/invoice-worker"]
    assert mining["rule"] == "flow-pod-contacts-threats"
    assert {a["action"]: a["status"] for a in mining["actions"]}["k8s:isolate-pod"] == "succeeded"
    assert {a["action"]: a["status"] for a in mining["actions"]}["ec2:block-ip"] == "awaiting-approval"
    assert any("ec2:block-ip waits for a human: 81.2.69.77 is suspected by a port heuristic" in n
               for n in mining["notes"])  # fmt: skip
    assert ssh["incident"]["type"] == "InitialAccess:FlowLogs/AdminPortFromInternet"
    assert ssh["incident"]["instance_id"] == "i-7733adfa936a8baee"
    # Lateral movement: the same pod swept the kubelet port of 70 internal addresses
    sweep = demo.results["vpc-flow-logs-lateral-movement.log"]
    assert sweep["incident"]["type"] == "Discovery:FlowLogs/InternalAddressSweep"
    assert sweep["incident"]["pods"] == ["payments/invoice-worker"]
    assert sweep["rule"] == "flow-pod-contacts-threats"
    with seed.admin_client(demo.running) as client:
        pod = client.get(Pod, "invoice-worker", namespace="payments")
    assert (pod.metadata.labels or {}).get(QUARANTINE_LABEL) == "true"


def test_reports_and_identities(demo: Demo) -> None:
    results, running = demo.results, demo.running
    # The sample finding changed nothing; low severity and configuration issues only report.
    assert {s for _, _, s in _statuses(results["sample-privilege-escalation-privileged-container.json"])} == {"planned"}
    assert results["execution-runtime-suspicious-shell-created-low.json"]["actions"] == []
    assert results["policy-kubernetes-anonymous-access-granted.json"]["rule"] == "dangerous-binding"

    # Identities: the caller's role revoked and unmapped; the dangerous bindings gone; the node role spared.
    caller = {a: (t, st) for a, t, st in _statuses(results["credential-access-kubernetes-malicious-ip-caller.json"])}
    assert caller["iam:revoke-role-sessions"] == ("arn:aws:iam::123456789012:role/developer", "succeeded")
    assert caller["eks:delete-access-entry"] == ("arn:aws:iam::123456789012:role/developer", "succeeded")
    bindings = _statuses(results["policy-kubernetes-anonymous-access-granted.json"])
    assert bindings == [("k8s:delete-rolebinding", "anonymous-view", "succeeded")]
    admin_binding = _statuses(results["policy-kubernetes-admin-access-to-default-service-account.json"])
    assert admin_binding == [("k8s:delete-rolebinding", "tools/default-admin", "succeeded")]
    pinned, revoked = results["unauthorized-access-instance-credential-exfiltration-outside-aws.json"]["actions"][:2]
    # The node role is shared by every node of the group: its earlier sessions are pinned to their
    # instances (the nodes keep working), never revoked; the instance is contained as well.
    node_role = "arn:aws:iam::123456789012:role/eks-demo-general-node"
    assert (pinned["action"], pinned["target"], pinned["status"]) == ("iam:pin-instance-credentials", node_role,
                                                                     "succeeded")  # fmt: skip
    assert (revoked["target"], revoked["status"]) == (node_role, "skipped")
    assert revoked["detail"].startswith("spared: eks-demo-general-node is a node (EC2 instance) role")
    iam = running_client(running, "iam")
    assert iam.list_role_policies(RoleName="developer")["PolicyNames"] == ["eks-responder-revoke-older-sessions"]
    assert iam.list_role_policies(RoleName="eks-demo-general-node")["PolicyNames"] == [
        "eks-responder-pin-instance-credentials"
    ]


def test_cluster_state_after_the_replay(demo: Demo) -> None:
    running, cordoned = demo.running, _cordoned(demo.results)
    with seed.admin_client(running) as admin:
        pods = {
            f"{p.metadata.namespace}/{p.metadata.name}": p.metadata.labels or {} for p in admin.list(Pod, namespace="*")
        }
        assert pods["tools/debug-shell"].get(QUARANTINE_LABEL) == "true"
        assert QUARANTINE_LABEL not in pods["kube-system/aws-node-7xk2m"]
        mapped = yaml.safe_load(admin.get(ConfigMap, "aws-auth", namespace="kube-system").data["mapRoles"])
        assert [m["rolearn"].rsplit("/", 1)[-1] for m in mapped] == ["eks-demo-general-node"]
        unschedulable = sorted(n.metadata.name for n in admin.list(Node) if n.spec.unschedulable)
        assert unschedulable == sorted(cordoned)
        assert {p.metadata.namespace for p in admin.list(NetworkPolicy, namespace="*")} == {
            "payments",
            "monitoring",
            "tools",
        }


def test_replaying_everything_again_changes_nothing(demo: Demo) -> None:
    code, again = demo.replay()
    assert code == 0
    changed = [(name, a, t) for name, r in again.items() for a, t, s in _statuses(r) if s == "succeeded"]
    assert changed == []
