"""Act, release, compare: every action that changes something is put back from the prior state it
recorded — on the local kube-apiserver and moto, as the responder identity — and what cannot be
undone says so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.networking_v1 import NetworkPolicy

from chalicelib.entry import decisions
from chalicelib.executors.plans import PlanStore
from chalicelib.incident import Principal, PrincipalKind, PrincipalRole
from chalicelib.response.plan import Plan
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, incident, rules_with
from tests.integration.test_identity import TRUST, _with
from tests.integration.test_node_aws import Fleet, _ec2_incident, make_fleet

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"


@pytest.fixture
def fleet(aws_session: Any, cluster: Cluster) -> Fleet:
    return make_fleet(aws_session, cluster)


def act_then_release(
    make_responder: Any, store: PlanStore[Plan], action: str | dict[str, Any], found: Any, state: Callable[[], Any]
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(before, during, after, the release's result): acted on by one responder, released by another."""
    before = state()
    report = make_responder(rules_with(action), incidents_table=TABLE).handle(found, Mode.LIVE)
    assert [a.status.value for a in report.actions] == ["succeeded"], report.actions
    during = state()
    released = decisions.release(store, make_responder(rules_with(action), incidents_table=TABLE), found.id,
                                 steps=None, who="cli:test")  # fmt: skip
    return before, during, state(), released


def _metadata(admin: Client, kind: Any, name: str, namespace: str | None = None) -> Any:
    obj = admin.get(kind, name, namespace=namespace) if namespace else admin.get(kind, name)
    return obj.metadata.labels, obj.metadata.annotations


@pytest.mark.parametrize("action", ["k8s:label-pod", "k8s:label-node"])
def test_labels_are_put_back(
    action: str, cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    found = incident(namespace=cluster.namespace, pods=("web",))
    if action == "k8s:label-node":
        state = lambda: _metadata(admin, Node, "node-a")  # noqa: E731
    else:
        state = lambda: _metadata(admin, Pod, "web", cluster.namespace)  # noqa: E731
    before, during, after, released = act_then_release(make_responder, store, action, found, state)
    assert during != before
    assert after == before
    assert [a["status"] for a in released["actions"]] == ["succeeded"]


def test_a_cordon_is_lifted_and_only_its_taint_removed(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    found = incident(namespace=cluster.namespace, pods=("web",))

    def state() -> Any:
        spec = admin.get(Node, "node-a").spec
        return bool(spec.unschedulable), sorted(t.key for t in spec.taints or [])

    before, during, after, released = act_then_release(make_responder, store, "k8s:cordon-node", found, state)
    assert during[0] is True
    assert "eks-responder.io/quarantine" in during[1]
    assert after == before, released


def test_instance_protection_is_turned_back(fleet: Fleet, make_responder: Any, store: PlanStore[Plan]) -> None:
    target = fleet.instances[0]

    def state() -> Any:
        groups = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=[target])["AutoScalingInstances"]
        shutdown = fleet.attribute(target, "instanceInitiatedShutdownBehavior")
        return fleet.attribute(target, "disableApiTermination"), shutdown, groups[0]["ProtectedFromScaleIn"]

    before, during, after, _ = act_then_release(make_responder, store, "ec2:protect-instance",
                                                _ec2_incident(target), state)  # fmt: skip
    assert during == (True, "stop", True)
    assert after == before


def test_network_acl_denies_are_removed(fleet: Fleet, make_responder: Any, store: PlanStore[Plan]) -> None:
    target = fleet.instances[0]
    before, during, after, released = act_then_release(
        make_responder, store, "ec2:block-ip", _ec2_incident(target, remote=("81.2.69.144",)),
        lambda: sorted(str(e) for e in fleet.acl_entries(target)),
    )  # fmt: skip
    assert len(during) == len(before) + 2
    assert after == before
    assert "removed #" in released["actions"][0]["detail"]


def test_a_deny_another_incident_relies_on_is_kept_until_it_is_released_too(
    fleet: Fleet, make_responder: Any, store: PlanStore[Plan]
) -> None:
    """Two incidents block the same address: releasing the first (which made the deny) keeps it,
    naming the incident that still relies on it; releasing the second removes it."""
    target = fleet.instances[0]
    before = sorted(str(e) for e in fleet.acl_entries(target))
    first = _ec2_incident(target, remote=("81.2.69.144",))
    second = replace(first, id=f"{first.id}-second")
    responder = make_responder(rules_with("ec2:block-ip"), incidents_table=TABLE)
    made = responder.handle(first, Mode.LIVE).actions[0]
    joined = responder.handle(second, Mode.LIVE).actions[0]
    assert (made.status.value, joined.status.value) == ("succeeded", "succeeded"), joined.detail
    assert "relies on those denies too" in joined.detail
    denies = [e for e in fleet.acl_entries(target) if e.get("CidrBlock") == "81.2.69.144/32"]
    assert len(denies) == 2
    kept = decisions.release(store, responder, first.id, steps=None, who="cli:test")
    assert f"still relied on by incident {second.id}" in kept["actions"][0]["detail"], kept
    assert [e for e in fleet.acl_entries(target) if e.get("CidrBlock") == "81.2.69.144/32"] == denies
    last = decisions.release(store, responder, second.id, steps=None, who="cli:test")
    assert "removed #" in last["actions"][0]["detail"], last
    assert sorted(str(e) for e in fleet.acl_entries(target)) == before


def test_a_changed_acl_entry_is_left_alone_unless_forced(
    fleet: Fleet,
    make_responder: Any,
    store: PlanStore[Plan],
) -> None:
    target = fleet.instances[0]
    found = _ec2_incident(target, remote=("81.2.69.144",))
    report = make_responder(rules_with("ec2:block-ip"), incidents_table=TABLE).handle(found, Mode.LIVE)
    (added, _) = report.actions[0].prior["entries_added"]
    acl = report.actions[0].prior["network_acl"]
    fleet.ec2.replace_network_acl_entry(NetworkAclId=acl, RuleNumber=added["RuleNumber"], Protocol="-1",
                                        RuleAction="deny", Egress=False, CidrBlock="198.51.100.0/24")  # fmt: skip
    responder = make_responder(rules_with("ec2:block-ip"), incidents_table=TABLE)
    kept = decisions.release(store, responder, found.id, steps=None, who="cli:test")
    assert kept["actions"][0]["status"] == "skipped"
    assert "changed since the block" in kept["actions"][0]["detail"]
    assert any(e.get("CidrBlock") == "198.51.100.0/24" for e in fleet.acl_entries(target))
    forced = decisions.release(store, responder, found.id, steps=None, who="cli:test", force=True)
    assert forced["actions"][0]["status"] == "succeeded"
    assert not any(e.get("CidrBlock") == "198.51.100.0/24" for e in fleet.acl_entries(target))


def test_revoked_sessions_work_again(aws_session: Any, make_responder: Any, store: PlanStore[Plan]) -> None:
    iam = aws_session.client("iam")
    arn = iam.create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    found = _with(Principal(PrincipalKind.IAM_ROLE, "developer", arn))
    before, during, after, released = act_then_release(
        make_responder, store, "iam:revoke-role-sessions", found,
        lambda: iam.list_role_policies(RoleName="developer")["PolicyNames"],
    )  # fmt: skip
    assert during == ["eks-responder-revoke-older-sessions"]
    assert after == before == []
    assert "removed" in released["actions"][0]["detail"]


def test_deactivated_keys_are_active_again(aws_session: Any, make_responder: Any, store: PlanStore[Plan]) -> None:
    iam = aws_session.client("iam")
    arn = iam.create_user(UserName="ci-bot")["User"]["Arn"]
    leaked = iam.create_access_key(UserName="ci-bot")["AccessKey"]["AccessKeyId"]
    found = _with(Principal(PrincipalKind.IAM_USER, "ci-bot", arn, (), PrincipalRole.CREDENTIALS, leaked))
    before, during, after, _ = act_then_release(
        make_responder, store, "iam:deactivate-access-keys", found,
        lambda: [k["Status"] for k in iam.list_access_keys(UserName="ci-bot")["AccessKeyMetadata"]],
    )  # fmt: skip
    assert (before, during, after) == (["Active"], ["Inactive"], ["Active"])


def test_a_second_release_and_a_dry_run_change_nothing(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    found = incident(namespace=cluster.namespace, pods=("web",))
    make_responder(rules_with("k8s:label-pod"), incidents_table=TABLE).handle(found, Mode.LIVE)
    labelled = _metadata(admin, Pod, "web", cluster.namespace)
    responder = make_responder(rules_with("k8s:label-pod"), incidents_table=TABLE)
    dry = decisions.release(store, responder, found.id, steps=None, who="cli:test", dry_run=True)
    assert dry["actions"][0]["status"] == "planned"
    assert _metadata(admin, Pod, "web", cluster.namespace) == labelled
    decisions.release(store, responder, found.id, steps=None, who="cli:test")
    again = decisions.release(store, responder, found.id, steps=None, who="cli:test")
    assert "already released" in again["said"]
    assert "actions" not in again


def test_an_isolated_pod_rejoins_its_workload_and_the_quarantine_policy_goes(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    from lightkube.resources.networking_v1 import NetworkPolicy

    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a", labels={"app": "web", "tier": "front"})
    dns = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 53}]}]}
    cluster.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "allow-dns", "namespace": cluster.namespace}, "spec": dns})  # fmt: skip

    def state() -> Any:
        policies = {
            p.metadata.name: p.spec.podSelector.to_dict()
            for p in admin.list(NetworkPolicy, namespace=cluster.namespace)
        }
        return _metadata(admin, Pod, "web", cluster.namespace)[0], policies

    found = incident(namespace=cluster.namespace, pods=("web",))
    before, during, after, released = act_then_release(make_responder, store, "k8s:isolate-pod", found, state)
    assert during[0].get("eks-responder.io/quarantine") == "true"
    assert "eks-responder-quarantine" in during[1]
    assert after[1] == before[1]  # the quarantine policy gone, allow-dns's selector restored
    assert {k: v for k, v in after[0].items() if not k.startswith(("eks-responder", "app.kubernetes.io"))} == before[0]
    assert "deleted NetworkPolicy" in released["actions"][0]["detail"]


def test_the_quarantine_policy_stays_while_another_pod_needs_it(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    from lightkube.resources.networking_v1 import NetworkPolicy

    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    cluster.pod("api", "node-a")
    first, second = (incident(namespace=cluster.namespace, pods=(p,)) for p in ("web", "api"))
    for found in (first, second):
        make_responder(rules_with("k8s:isolate-pod"), incidents_table=TABLE).handle(found, Mode.LIVE)
    released = decisions.release(store, make_responder(rules_with("k8s:isolate-pod"), incidents_table=TABLE),
                                 first.id, steps=None, who="cli:test")  # fmt: skip
    assert "still quarantined" in released["actions"][0]["detail"]
    assert "eks-responder-quarantine" in [
        p.metadata.name for p in admin.list(NetworkPolicy, namespace=cluster.namespace)
    ]


def test_an_isolated_instance_gets_its_groups_back_and_the_group_goes(
    fleet: Fleet, make_responder: Any, store: PlanStore[Plan]
) -> None:
    target = fleet.instances[0]

    def state() -> Any:
        groups = sorted(g["GroupId"] for g in fleet.ec2.describe_security_groups()["SecurityGroups"])
        return fleet.interface_groups(target), groups

    before, during, after, released = act_then_release(make_responder, store, "ec2:isolate-instance",
                                                       _ec2_incident(target), state)  # fmt: skip
    assert during != before
    assert after == before, released["actions"][0]["detail"]
    assert "deleted isolation group" in released["actions"][0]["detail"]


def test_an_image_block_is_lifted(cluster: Cluster, make_responder: Any, store: PlanStore[Plan]) -> None:
    import uuid

    from chalicelib.actions.k8s.block_image import policy_name
    from tests.integration.test_block_image import REPOSITORY, image_blocks, scan

    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    found = replace(scan(digest), cluster="local")
    name = policy_name(f"{REPOSITORY}@{digest}")
    before, during, after, released = act_then_release(
        make_responder, store, "k8s:block-image", found, lambda: sorted(image_blocks(cluster))
    )
    assert (before, during, after) == ([], [name], [])
    assert f"removed {name} from ConfigMap eks-responder/eks-responder-image-blocks" in released["actions"][0]["detail"]


def test_a_kyverno_image_block_is_lifted(
    cluster: Cluster, make_responder: Any, store: PlanStore[Plan], kyverno_api: None, without_image_blocks: None
) -> None:
    import uuid

    from chalicelib.actions.k8s.block_image import policy_name
    from tests.integration.test_block_image import REPOSITORY, ClusterPolicy, scan

    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    found = replace(scan(digest), cluster="local")
    name = policy_name(f"{REPOSITORY}@{digest}")

    def state() -> Any:
        return [p.metadata.name for p in cluster.admin.list(ClusterPolicy) if p.metadata.name == name]

    before, during, after, released = act_then_release(make_responder, store, "k8s:block-image", found, state)
    assert (before, during, after) == ([], [name], [])
    assert f"deleted ClusterPolicy {name}" in released["actions"][0]["detail"]


def test_a_node_taken_out_of_service_goes_back_into_it(
    fleet: Fleet, aws_session: Any, make_responder: Any, store: PlanStore[Plan]
) -> None:
    target = fleet.instances[0]
    described = fleet.ec2.describe_instances(InstanceIds=[target])["Reservations"][0]["Instances"][0]
    address, vpc = described["PrivateIpAddress"], described["VpcId"]
    elbv2 = aws_session.client("elbv2")
    by_instance = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    by_ip = elbv2.create_target_group(Name="pods", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")[
        "TargetGroups"
    ][0]
    elbv2.register_targets(TargetGroupArn=by_instance["TargetGroupArn"],
                           Targets=[{"Id": target, "Port": 80}, {"Id": fleet.instances[1], "Port": 80}])  # fmt: skip
    elbv2.register_targets(TargetGroupArn=by_ip["TargetGroupArn"], Targets=[{"Id": address, "Port": 8080}])

    def state() -> Any:
        registered = sorted(
            (group["TargetGroupName"], t["Target"]["Id"])
            for group in (by_instance, by_ip)
            for t in elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
        )
        asg = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["eks-general"])
        group = asg["AutoScalingGroups"][0]
        lifecycle = {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}
        return registered, lifecycle.get(target), group["DesiredCapacity"]

    before, during, after, released = act_then_release(
        make_responder, store, "ec2:remove-from-service", _ec2_incident(target), state
    )
    assert before == (sorted([("pods", address), ("web", fleet.instances[1]), ("web", target)]), "InService", 2)
    # out of service: in neither group (by id nor by address), Standby, and the group's capacity kept
    assert during == ([("web", fleet.instances[1])], "Standby", 2)
    # back in both groups and InService; leaving Standby adds the instance to the desired capacity,
    # so the replacement the group launched meanwhile stays (the release says so)
    assert after == (before[0], "InService", 3)
    assert [a["status"] for a in released["actions"]] == ["succeeded"]


def test_a_pods_branch_eni_is_isolated_and_put_back(
    cluster: Cluster, admin: Client, aws_session: Any, make_responder: Any, store: PlanStore[Plan]
) -> None:
    import json

    from lightkube.types import PatchType

    ec2 = aws_session.client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]
    app = ec2.create_security_group(GroupName="payments-db-access", Description="x", VpcId=subnet["VpcId"])["GroupId"]
    branch = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Groups=[app])["NetworkInterface"]
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    annotation = [{"eniId": branch["NetworkInterfaceId"], "privateIp": branch["PrivateIpAddress"], "vlanId": 1}]
    admin.patch(Pod, "web", {"metadata": {"annotations": {"vpc.amazonaws.com/pod-eni": json.dumps(annotation)}}},
                namespace=cluster.namespace, patch_type=PatchType.MERGE)  # fmt: skip
    admin.patch(Pod.Status, "web", {"status": {"podIP": branch["PrivateIpAddress"]}}, namespace=cluster.namespace,
                patch_type=PatchType.MERGE)  # fmt: skip

    def state() -> list[str]:
        described = ec2.describe_network_interfaces(NetworkInterfaceIds=[branch["NetworkInterfaceId"]])
        return [g["GroupId"] for g in described["NetworkInterfaces"][0]["Groups"]]

    found = incident(namespace=cluster.namespace, pods=("web",))
    before, during, after, released = act_then_release(make_responder, store, "ec2:isolate-pod-eni", found, state)
    assert before == [app]
    (isolation,) = during
    group = ec2.describe_security_groups(GroupIds=[isolation])["SecurityGroups"][0]
    assert (group["IpPermissions"], group["IpPermissionsEgress"]) == ([], [])  # rule-less
    assert after == before
    assert [a["status"] for a in released["actions"]] == ["succeeded"]


def test_a_pod_without_a_branch_eni_is_left_to_its_network_policy(cluster: Cluster, make_responder: Any) -> None:
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    (result,) = (
        make_responder(rules_with("ec2:isolate-pod-eni"))
        .handle(incident(namespace=cluster.namespace, pods=("web",)), Mode.LIVE)
        .actions
    )
    assert (result.status.value, result.detail) == (
        "skipped", f"pod {cluster.namespace}/web has no branch ENI (security groups for pods not in use)")  # fmt: skip


def test_an_annotation_naming_another_eni_moves_nothing(
    cluster: Cluster, admin: Client, aws_session: Any, make_responder: Any
) -> None:
    import json

    from lightkube.types import PatchType

    ec2 = aws_session.client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]
    database = ec2.create_security_group(GroupName="database", Description="x", VpcId=subnet["VpcId"])["GroupId"]
    theirs = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Groups=[database])["NetworkInterface"]
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    # whoever can edit the pod writes another ENI (a database's) into the annotation
    hostile = json.dumps([{"eniId": theirs["NetworkInterfaceId"], "privateIp": theirs["PrivateIpAddress"]}])
    admin.patch(Pod, "web", {"metadata": {"annotations": {"vpc.amazonaws.com/pod-eni": hostile}}},
                namespace=cluster.namespace, patch_type=PatchType.MERGE)  # fmt: skip
    admin.patch(Pod.Status, "web", {"status": {"podIP": "10.99.0.7"}}, namespace=cluster.namespace,
                patch_type=PatchType.MERGE)  # fmt: skip
    (result,) = (
        make_responder(rules_with("ec2:isolate-pod-eni"))
        .handle(incident(namespace=cluster.namespace, pods=("web",)), Mode.LIVE)
        .actions
    )
    assert result.status.value == "skipped"
    assert "does not carry the pod's address 10.99.0.7: not moved" in result.detail
    groups = ec2.describe_network_interfaces(NetworkInterfaceIds=[theirs["NetworkInterfaceId"]])["NetworkInterfaces"]
    assert [g["GroupId"] for g in groups[0]["Groups"]] == [database]


def test_a_quarantine_another_incident_relies_on_stays_until_the_last_release(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    """Two incidents about one pod: the second finds it isolated (and marks it for itself) and holds
    the isolation too. Releasing the first keeps the pod isolated and says who still relies on it;
    releasing the second puts the pod back as it was before the first."""
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    before = _metadata(admin, Pod, "web", cluster.namespace)
    first = incident(namespace=cluster.namespace, pods=("web",))
    second = replace(first, id=f"{first.id}-second")
    responder = make_responder(rules_with("k8s:isolate-pod"), incidents_table=TABLE)
    made = responder.handle(first, Mode.LIVE).actions[0]
    joined = responder.handle(second, Mode.LIVE).actions[0]
    assert (made.status.value, joined.status.value) == ("succeeded", "succeeded"), joined.detail
    kept = decisions.release(store, responder, first.id, steps=None, who="cli:test")
    assert kept["actions"][0]["detail"] == f"release: kept, still relied on by incident {second.id}"
    labels, _ = _metadata(admin, Pod, "web", cluster.namespace)
    assert labels["eks-responder.io/quarantine"] == "true"
    assert list(admin.list(NetworkPolicy, namespace=cluster.namespace))
    last = decisions.release(store, responder, second.id, steps=None, who="cli:test")
    assert last["actions"][0]["status"] == "succeeded", last
    assert _metadata(admin, Pod, "web", cluster.namespace)[0] == before[0]
    assert not list(admin.list(NetworkPolicy, namespace=cluster.namespace))


def test_a_cordon_found_in_place_is_held_and_lifted_only_by_the_last_release(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    first = incident(namespace=cluster.namespace, pods=("web",))
    second = replace(first, id=f"{first.id}-second")
    responder = make_responder(rules_with("k8s:cordon-node"), incidents_table=TABLE)
    assert responder.handle(first, Mode.LIVE).actions[0].status.value == "succeeded"
    joined = responder.handle(second, Mode.LIVE).actions[0]
    assert joined.status.value == "succeeded", joined.detail
    assert "already cordoned; this incident relies on it too" in joined.detail
    kept = decisions.release(store, responder, first.id, steps=None, who="cli:test")
    assert kept["actions"][0]["detail"] == f"release: kept, still relied on by incident {second.id}"
    assert admin.get(Node, "node-a").spec.unschedulable is True
    last = decisions.release(store, responder, second.id, steps=None, who="cli:test")
    assert last["actions"][0]["status"] == "succeeded", last
    assert not admin.get(Node, "node-a").spec.unschedulable
    assert not [t for t in admin.get(Node, "node-a").spec.taints or [] if t.key == "eks-responder.io/quarantine"]


def test_stronger_evidence_evicts_a_heuristic_deny_and_puts_it_back_when_released(
    fleet: Fleet, make_responder: Any, store: PlanStore[Plan]
) -> None:
    """The deny budget is spent by confidence: a heuristic deny (approved by a human) fills what it
    may; a threat-listed C2 found then evicts it, says so, and puts it back when it is released."""
    target = fleet.instances[0]
    responder = make_responder(rules_with("ec2:block-ip"), incidents_table=TABLE, max_acl_denies_per_subnet=4)
    weak = replace(_ec2_incident(target, remote=("81.2.69.50",)), id="weak-pool",
                   details={"remote_evidence": "heuristic", "detector": "mining-pool"})  # fmt: skip
    waiting = responder.handle(weak, Mode.LIVE).actions[0]
    assert waiting.status.value == "awaiting-approval"
    approved = decisions.decide(store, weak.id, approve=True, steps=None, who="U1",
                                run=lambda i: decisions.carry_out(store, responder, i, ()))  # fmt: skip
    assert [a["status"] for a in approved["carried_out"]["actions"]] == ["succeeded"], approved
    listed = {e.get("CidrBlock") for e in fleet.acl_entries(target)}
    assert "81.2.69.50/32" in listed
    other = replace(_ec2_incident(target, remote=("81.2.69.60", "81.2.69.61")), id="c2",
                    details={"remote_evidence": "strong", "detector": "threat-list"})  # fmt: skip
    strong = responder.handle(other, Mode.LIVE).actions[0]
    assert strong.status.value == "succeeded", strong.detail
    assert "to make room, evicted the heuristic deny of 81.2.69.50/32 (incident weak-pool)" in strong.detail
    listed = {e.get("CidrBlock") for e in fleet.acl_entries(target)}
    assert {"81.2.69.60/32", "81.2.69.61/32"} <= listed
    assert "81.2.69.50/32" not in listed
    released = decisions.release(store, responder, other.id, steps=None, who="cli:test")
    assert "put back the heuristic denies it had evicted" in released["actions"][0]["detail"], released
    listed = {e.get("CidrBlock") for e in fleet.acl_entries(target)}
    assert "81.2.69.50/32" in listed
    assert not {"81.2.69.60/32", "81.2.69.61/32"} & listed
    # The heuristic incident's own release then removes what was put back.
    decisions.release(store, responder, weak.id, steps=None, who="cli:test")
    assert "81.2.69.50/32" not in {e.get("CidrBlock") for e in fleet.acl_entries(target)}


def test_an_isolation_made_while_the_table_throttles_is_kept_and_still_released(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.executors.caps import CapLeases

    def throttled(*_: object, **__: object) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(CapLeases, "hold", throttled)
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    before = _metadata(admin, Pod, "web", cluster.namespace)
    found = incident(namespace=cluster.namespace, pods=("web",))
    responder = make_responder(rules_with("k8s:isolate-pod"), incidents_table=TABLE)
    (step,) = responder.handle(found, Mode.LIVE).actions
    assert step.status.value == "succeeded", step.detail
    assert "not recorded as shared (ProvisionedThroughputExceededException)" in step.detail
    released = decisions.release(store, responder, found.id, steps=None, who="cli:test")
    assert released["actions"][0]["status"] == "succeeded", released
    assert _metadata(admin, Pod, "web", cluster.namespace)[0] == before[0]
