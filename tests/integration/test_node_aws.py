"""Containing a compromised worker node on the AWS side, against moto in server mode."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node

from chalicelib.actions.ec2.block_ip import free_rule_number
from chalicelib.actions.ec2.common import INCIDENT_TAG, ISOLATION_GROUP_TAG
from chalicelib.incident import ResourceKind
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration
CLUSTER_TAGS = [{"Key": "eks:cluster-name", "Value": "local"}, {"Key": "eks:nodegroup-name", "Value": "general"}]
EC2_FINDING = "CryptoCurrency:EC2/BitcoinTool.B!DNS"


@dataclass
class Fleet:
    ec2: Any
    autoscaling: Any
    instances: list[str] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # instance -> node

    def instance(self, instance_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][
            0
        ]
        return found

    def interface_groups(self, instance_id: str) -> dict[str, list[str]]:
        return {
            e["NetworkInterfaceId"]: sorted(g["GroupId"] for g in e["Groups"])
            for e in self.instance(instance_id)["NetworkInterfaces"]
        }

    def snapshots(self) -> list[dict[str, Any]]:
        tagged = [{"Name": "tag-key", "Values": [INCIDENT_TAG]}]  # moto also lists its AMIs' snapshots
        return list(self.ec2.describe_snapshots(OwnerIds=["self"], Filters=tagged)["Snapshots"])

    def acl_entries(self, instance_id: str) -> list[dict[str, Any]]:
        subnet = self.instance(instance_id)["SubnetId"]
        acl = self.ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])
        return list(acl["NetworkAcls"][0]["Entries"])

    def attribute(self, instance_id: str, name: str) -> Any:
        key = name[0].upper() + name[1:]
        return self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=name)[key]["Value"]

    def state(self) -> dict[str, Any]:
        return {
            "groups": {i: self.interface_groups(i) for i in self.instances},
            "snapshots": sorted(s["SnapshotId"] for s in self.snapshots()),
            "acl": sorted(str(e) for e in self.acl_entries(self.instances[0])),
            "protection": {i: self.attribute(i, "disableApiTermination") for i in self.instances},
            "security_groups": sorted(g["GroupId"] for g in self.ec2.describe_security_groups()["SecurityGroups"]),
        }


@pytest.fixture
def fleet(aws_session: Any, cluster: Cluster) -> Fleet:
    return make_fleet(aws_session, cluster)


def make_fleet(aws_session: Any, cluster: Cluster) -> Fleet:
    """Two worker nodes of node group `general` in an Auto Scaling group; the first has a secondary ENI."""
    ec2 = aws_session.client("ec2")
    autoscaling = aws_session.client("autoscaling")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    made = ec2.run_instances(
        ImageId=image,
        MinCount=2,
        MaxCount=2,
        InstanceType="m5.large",
        Placement={"AvailabilityZone": "us-east-1a"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": CLUSTER_TAGS}],
    )["Instances"]
    ids = [i["InstanceId"] for i in made]
    secondary = ec2.create_network_interface(SubnetId=made[0]["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=secondary, InstanceId=ids[0], DeviceIndex=1)
    ec2.create_launch_template(LaunchTemplateName="nodes", LaunchTemplateData={"ImageId": image})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="eks-general",
        LaunchTemplate={"LaunchTemplateName": "nodes"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=0,
        AvailabilityZones=["us-east-1a"],
        # Managed node groups tag their Auto Scaling group so; the generated policy requires it.
        Tags=[{"Key": "eks:cluster-name", "Value": "local", "PropagateAtLaunch": True}],
    )
    autoscaling.attach_instances(InstanceIds=ids, AutoScalingGroupName="eks-general")
    found = Fleet(ec2, autoscaling, ids)
    for index, instance_id in enumerate(ids):
        found.nodes[instance_id] = cluster.node(
            f"node-{index}", instance_id, {"eks.amazonaws.com/nodegroup": "general"}
        )
    return found


def _ec2_incident(*instances: str, remote: tuple[str, ...] = ("81.2.69.144",)) -> Any:
    from dataclasses import replace

    found = incident(instance_ids=instances, kind=ResourceKind.NODE, type_=EC2_FINDING)
    return replace(found, remote_ips=remote)


def _by_action(report: Any) -> dict[str, Any]:
    return {r.action: r for r in report.actions}


def test_node_playbook_isolates_protects_and_snapshots(fleet: Fleet, admin: Client, make_responder: Any) -> None:
    # GIVEN an EC2 finding on a worker node
    target = fleet.instances[0]
    before = fleet.interface_groups(target)
    found = _ec2_incident(target)
    # WHEN the default node playbook runs live
    report = make_responder().handle(found, Mode.LIVE)
    # THEN every action succeeded, in the order AWS recommends
    assert [(r.action, r.status.value) for r in report.actions] == [
        ("ec2:protect-instance", "succeeded"),
        ("ec2:snapshot-volumes", "succeeded"),
        ("ec2:capture-memory", "skipped"),  # not set up here (AVML_SHA256): tests/integration/test_memory_capture.py
        ("k8s:label-node", "succeeded"),
        ("k8s:cordon-node", "succeeded"),
        ("ec2:remove-from-service", "succeeded"),
        ("ec2:isolate-instance", "succeeded"),
        ("ec2:block-ip", "succeeded"),
    ], [r.detail for r in report.actions]
    # out of service: Standby in its group, which keeps its capacity
    (state,) = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=[target])["AutoScalingInstances"]
    assert state["LifecycleState"] == "Standby"
    # the instance ends with only the isolation group on every ENI, primary and secondary
    after = fleet.interface_groups(target)
    assert set(after) == set(before)
    assert len(after) == 2
    (group,) = {g for groups in after.values() for g in groups}
    sg = fleet.ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    assert sg["IpPermissions"] == []
    assert sg["IpPermissionsEgress"] == []
    assert {t["Key"]: t["Value"] for t in sg["Tags"]}[ISOLATION_GROUP_TAG] == "true"
    # the other node keeps its groups
    assert group not in str(fleet.interface_groups(fleet.instances[1]))
    # termination and scale-in protection are on, shutdown stops
    assert fleet.attribute(target, "disableApiTermination") is True
    assert fleet.attribute(target, "instanceInitiatedShutdownBehavior") == "stop"
    asg = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=[target])["AutoScalingInstances"][0]
    assert asg["ProtectedFromScaleIn"] is True
    # every volume has a tagged snapshot
    volumes = {m["Ebs"]["VolumeId"]: m["DeviceName"] for m in fleet.instance(target)["BlockDeviceMappings"]}
    snaps = {s["VolumeId"]: {t["Key"]: t["Value"] for t in s["Tags"]} for s in fleet.snapshots()}
    assert set(snaps) == set(volumes)
    for volume, device in volumes.items():
        assert snaps[volume][INCIDENT_TAG] == found.id
        assert snaps[volume]["eks-responder:instance"] == target
        assert snaps[volume]["eks-responder:device"] == device
        assert snaps[volume]["eks-responder:finding-type"] == EC2_FINDING
    # the remote address is denied both ways, before the allow rules
    denies = [
        e for e in fleet.acl_entries(target) if e["RuleAction"] == "deny" and e.get("CidrBlock") == "81.2.69.144/32"
    ]
    assert sorted(e["Egress"] for e in denies) == [False, True]
    assert all(e["RuleNumber"] < 100 for e in denies)
    # and the node is cordoned
    assert admin.get(Node, fleet.nodes[target]).spec.unschedulable is True
    # the report names instance, ENIs and snapshots
    results = _by_action(report)
    assert all(eni in results["ec2:isolate-instance"].detail for eni in before)
    assert all(s["SnapshotId"] in results["ec2:snapshot-volumes"].detail for s in fleet.snapshots())


def test_a_tagged_group_with_rules_is_never_trusted_as_it_is(fleet: Fleet, make_responder: Any) -> None:
    # GIVEN someone who can create security groups made one that looks like the isolation group
    target = fleet.instances[0]
    vpc = fleet.instance(target)["VpcId"]
    tags = [{"Key": ISOLATION_GROUP_TAG, "Value": "true"}]
    spec = [{"ResourceType": "security-group", "Tags": tags}]
    decoy = fleet.ec2.create_security_group(GroupName="decoy", Description="x", VpcId=vpc, TagSpecifications=spec)
    fleet.ec2.authorize_security_group_ingress(
        GroupId=decoy["GroupId"], IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    # ... and an earlier isolation group of ours that somebody has since opened up
    ours = [*tags, {"Key": "managed-by", "Value": "eks-responder"}]
    opened = fleet.ec2.create_security_group(
        GroupName="opened", Description="x", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": ours}],
    )["GroupId"]  # fmt: skip
    fleet.ec2.authorize_security_group_ingress(
        GroupId=opened,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    # WHEN the instance is isolated
    report = make_responder(rules_with("ec2:isolate-instance")).handle(_ec2_incident(target), Mode.LIVE)
    (result,) = report.actions
    assert result.status.value == "succeeded", result.detail
    # THEN the decoy is ignored, our group's rules are removed (and recorded), and it is verified
    assert f"ignored {decoy['GroupId']}" in result.detail
    assert "removed 1 inbound and 1 outbound rule(s)" in result.detail
    assert "verified" in result.detail
    assert {g for groups in fleet.interface_groups(target).values() for g in groups} == {opened}
    sg = fleet.ec2.describe_security_groups(GroupIds=[opened])["SecurityGroups"][0]
    assert (sg["IpPermissions"], sg["IpPermissionsEgress"]) == ([], [])
    assert result.prior is not None
    assert result.prior["isolation_group_rules_removed"]["inbound"][0]["FromPort"] == 22


def test_isolation_cuts_tracked_connections_through_a_transient_open_group(fleet: Fleet, make_responder: Any) -> None:
    from tests.integration.iam_calls import RECORDED

    target = fleet.instances[0]
    enis = set(fleet.interface_groups(target))
    before = len(RECORDED)
    (result,) = make_responder(rules_with("ec2:isolate-instance")).handle(_ec2_incident(target), Mode.LIVE).actions
    assert result.status.value == "succeeded", result.detail
    calls = RECORDED[before:]
    opened = [c for c in calls if c.operation in {"AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress"}]
    (transient,) = {c.params["GroupId"] for c in opened}
    # the transient group allowed every protocol from and to everywhere (IPv4 and IPv6): nothing tracked
    for call in opened:
        (rule,) = call.params["IpPermissions"]
        assert (rule["IpProtocol"], rule["IpRanges"], rule["Ipv6Ranges"]) == (
            "-1", [{"CidrIp": "0.0.0.0/0"}], [{"CidrIpv6": "::/0"}])  # fmt: skip
    # each ENI went through it, and straight on to the isolation group, nothing in between
    moves = [(c.params["NetworkInterfaceId"], c.params["Groups"]) for c in calls
             if c.operation == "ModifyNetworkInterfaceAttribute"]  # fmt: skip
    isolation = {g for groups in fleet.interface_groups(target).values() for g in groups}
    assert moves == [m for eni in sorted(enis, key=[m[0] for m in moves].index)
                     for m in ((eni, [transient]), (eni, sorted(isolation)))]  # fmt: skip
    # and it is gone afterwards: the node is left only in the rule-less group
    assert not fleet.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [transient]}])[
        "SecurityGroups"
    ]
    assert f"cut tracked connections through transient group {transient}" in result.detail
    assert f"deleted transient group {transient}" in result.detail


def test_isolation_can_keep_tracked_connections_when_asked(fleet: Fleet, make_responder: Any) -> None:
    from tests.integration.iam_calls import RECORDED

    before = len(RECORDED)
    step = {"action": "ec2:isolate-instance", "params": {"cut_established_connections": False}}
    (result,) = make_responder(rules_with(step)).handle(_ec2_incident(fleet.instances[0]), Mode.LIVE).actions
    assert result.status.value == "succeeded", result.detail
    assert not [c for c in RECORDED[before:] if c.operation.startswith("AuthorizeSecurityGroup")]
    assert "transient" not in result.detail


def test_a_second_run_changes_nothing(fleet: Fleet, make_responder: Any) -> None:
    found = _ec2_incident(fleet.instances[0])
    responder = make_responder()
    responder.handle(found, Mode.LIVE)
    before = fleet.state()
    again = responder.handle(found, Mode.LIVE)
    assert {r.status.value for r in again.actions} == {"skipped"}, [r.detail for r in again.actions]
    assert fleet.state() == before


def test_recorded_prior_state_restores_the_original_groups(fleet: Fleet, make_responder: Any) -> None:
    target = fleet.instances[0]
    original = fleet.interface_groups(target)
    report = make_responder(rules_with("ec2:isolate-instance")).handle(_ec2_incident(target), Mode.LIVE)
    prior = report.actions[0].prior
    assert prior is not None
    assert fleet.interface_groups(target) != original
    # WHEN an operator undoes the isolation from the recorded prior state
    for eni, groups in prior["network_interfaces"].items():
        fleet.ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=groups)
    # THEN the instance is back as it was
    assert fleet.interface_groups(target) == original


def test_dry_run_changes_nothing_in_aws(fleet: Fleet, make_responder: Any) -> None:
    before = fleet.state()
    # ec2:block-ip is left out: moto ignores DryRun on CreateNetworkAclEntry (AWS honours it).
    rules = rules_with("ec2:protect-instance", "ec2:snapshot-volumes", "ec2:isolate-instance")
    report = make_responder(rules).handle(_ec2_incident(fleet.instances[0]), Mode.DRY_RUN)
    assert {r.status.value for r in report.actions} == {"planned"}, [r.detail for r in report.actions]
    details = {r.action: r.detail for r in report.actions}
    assert "ec2:ModifyInstanceAttribute checked by the API (DryRun), not applied" in details["ec2:protect-instance"]
    # Auto Scaling has no dry run: the report says the call was not sent rather than "accepted".
    assert "autoscaling:SetInstanceProtection not sent (the API has no dry run)" in details["ec2:protect-instance"]
    assert "ec2:CreateSnapshot checked by the API (DryRun)" in details["ec2:snapshot-volumes"]
    assert "ec2:ModifyNetworkInterfaceAttribute checked by the API (DryRun)" in details["ec2:isolate-instance"]
    assert fleet.state() == before


def test_never_the_last_ready_node_of_a_node_group(fleet: Fleet, admin: Client, make_responder: Any) -> None:
    # The other node of the group is not Ready: isolating this one would leave the group with none.
    other = fleet.nodes[fleet.instances[1]]
    admin.patch(Node.Status, other, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    report = make_responder(rules_with("ec2:isolate-instance", "ec2:protect-instance")).handle(
        _ec2_incident(fleet.instances[0]), Mode.LIVE
    )
    isolate, protect = report.actions
    assert isolate.status.value == "skipped"
    assert "last Ready node of node group general" in isolate.detail
    assert protect.status.value == "succeeded"


def test_instance_cap_per_cluster_per_hour(fleet: Fleet, make_responder: Any) -> None:
    responder = make_responder(rules_with("ec2:isolate-instance"), max_instances_isolated_per_hour=1)
    report = responder.handle(_ec2_incident(*fleet.instances), Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["succeeded", "skipped"]
    assert "MAX_INSTANCES_ISOLATED_PER_HOUR=1" in report.actions[1].detail


def test_protected_instances_by_setting_and_by_tag(fleet: Fleet, make_responder: Any) -> None:
    first, second = fleet.instances
    fleet.ec2.create_tags(Resources=[second], Tags=[{"Key": "eks-responder:protected", "Value": "true"}])
    responder = make_responder(rules_with("ec2:isolate-instance"), protected_instances=(first,))
    report = responder.handle(_ec2_incident(first, second), Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["skipped", "skipped"]
    assert "PROTECTED_INSTANCES" in report.actions[0].detail
    assert "eks-responder:protected=true" in report.actions[1].detail


def test_detach_from_the_auto_scaling_group(fleet: Fleet, make_responder: Any) -> None:
    rules = rules_with({"action": "ec2:protect-instance", "params": {"detach_from_group": True}})
    report = make_responder(rules).handle(_ec2_incident(fleet.instances[0]), Mode.LIVE)
    assert "detached from eks-general" in report.actions[0].detail
    assert report.actions[0].prior["auto_scaling_group"] == "eks-general"
    left = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=[fleet.instances[0]])["AutoScalingInstances"]
    assert left == []


def test_a_deny_numbered_after_the_allow_rule_is_not_taken_for_a_block(fleet: Fleet, make_responder: Any) -> None:
    # GIVEN a deny for the address that an earlier allow rule makes useless (rules are read in order)
    target = fleet.instances[0]
    subnet = fleet.instance(target)["SubnetId"]
    acls = fleet.ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])
    acl = acls["NetworkAcls"][0]["NetworkAclId"]
    for egress in (False, True):
        fleet.ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=200, Protocol="-1", RuleAction="deny",
                                           Egress=egress, CidrBlock="81.2.69.144/32")  # fmt: skip
    # WHEN the address is blocked
    report = make_responder(rules_with("ec2:block-ip")).handle(_ec2_incident(target), Mode.LIVE)
    # THEN a deny before the allow rules is added and verified
    (result,) = report.actions
    assert result.status.value == "succeeded", result.detail
    assert "verified" in result.detail
    early = [e for e in fleet.acl_entries(target) if e.get("CidrBlock") == "81.2.69.144/32" and e["RuleNumber"] < 100]
    assert sorted(e["Egress"] for e in early) == [False, True]


def test_public_resolvers_are_never_blocked_and_the_acl_has_a_cap(fleet: Fleet, make_responder: Any) -> None:
    target = fleet.instances[0]
    before = fleet.acl_entries(target)
    report = make_responder(rules_with("ec2:block-ip")).handle(_ec2_incident(target, remote=("8.8.8.8",)), Mode.LIVE)
    assert report.actions[0].status.value == "skipped"
    assert "never blocked (NEVER_BLOCK" in report.actions[0].detail
    assert fleet.acl_entries(target) == before
    # A burst of distinct addresses fills the ACL only up to the cap.
    capped = make_responder(rules_with("ec2:block-ip"), max_acl_denies_per_subnet=4)
    first = capped.handle(_ec2_incident(target, remote=("81.2.69.1", "81.2.69.2")), Mode.LIVE)
    assert first.actions[0].status.value == "succeeded"
    second = capped.handle(replace(_ec2_incident(target, remote=("81.2.69.3",)), id="another"), Mode.LIVE)
    assert second.actions[0].status.value == "skipped"
    assert "MAX_ACL_DENIES_PER_SUBNET=4" in second.actions[0].detail
    assert "81.2.69.3/32" not in str(fleet.acl_entries(target))


def test_private_addresses_are_never_blocked(fleet: Fleet, make_responder: Any) -> None:
    before = fleet.acl_entries(fleet.instances[0])
    report = make_responder(rules_with("ec2:block-ip")).handle(
        _ec2_incident(fleet.instances[0], remote=("10.0.0.23", "169.254.169.254")), Mode.LIVE
    )
    assert report.actions[0].status.value == "skipped"
    assert "only private or reserved addresses" in report.actions[0].detail
    assert fleet.acl_entries(fleet.instances[0]) == before


def test_aws_containment_goes_on_when_the_cluster_is_unreachable(
    fleet: Fleet, make_responder: Any, tmp_path: Any
) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text(
        '{"apiVersion": "v1", "kind": "Config", "current-context": "x",'
        ' "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:9"}}],'
        ' "users": [{"name": "x", "user": {"token": "t"}}],'
        ' "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}'
    )
    rules = rules_with("k8s:cordon-node", "ec2:protect-instance")
    responder = make_responder(rules)
    responder._connector._kubeconfig = broken
    report = responder.handle(_ec2_incident(fleet.instances[0]), Mode.LIVE)
    cordon, protect = report.actions
    assert cordon.status.value == "failed"
    assert protect.status.value == "succeeded"
    assert any("cluster unreachable" in note for note in report.notes)
    # the last-Ready check cannot run without the cluster, so isolation refuses rather than guesses
    isolate = make_responder(rules_with("ec2:isolate-instance"))
    isolate._connector._kubeconfig = broken
    assert isolate.handle(_ec2_incident(fleet.instances[0]), Mode.LIVE).actions[0].status.value == "failed"


def test_fargate_pods_have_no_node_to_isolate(cluster: Cluster, make_responder: Any, aws_session: Any) -> None:
    node = cluster.node("fargate-ip-10-0-1-5.ec2.internal", labels={"eks.amazonaws.com/compute-type": "fargate"})
    pod = cluster.pod("job", node)
    report = make_responder(rules_with("k8s:cordon-node", "ec2:isolate-instance")).handle(
        incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE
    )
    cordon, isolate = report.actions
    assert cordon.status.value == "skipped"
    assert "Fargate" in cordon.detail
    assert isolate.status.value == "skipped"
    assert any("Fargate node" in note for note in report.notes)


def test_free_rule_number_stays_below_the_allow_rules() -> None:
    entries = [
        {"RuleNumber": 1, "Egress": False, "RuleAction": "deny"},
        {"RuleNumber": 2, "Egress": False, "RuleAction": "deny"},
        {"RuleNumber": 100, "Egress": False, "RuleAction": "allow"},
        {"RuleNumber": 32767, "Egress": False, "RuleAction": "deny"},
    ]
    assert free_rule_number(entries, egress=False) == 3
    assert free_rule_number(entries, egress=True) == 1
    full = [{"RuleNumber": n, "Egress": False, "RuleAction": "deny"} for n in range(1, 100)]
    assert free_rule_number([*full, {"RuleNumber": 100, "Egress": False, "RuleAction": "allow"}], egress=False) is None


def test_the_vpcs_own_nat_gateway_is_never_blocked(fleet: Fleet, make_responder: Any) -> None:
    target = fleet.instances[0]
    subnet = fleet.instance(target)["SubnetId"]
    allocation = fleet.ec2.allocate_address(Domain="vpc", Address="81.2.69.5")
    fleet.ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation["AllocationId"])
    nat = allocation["PublicIp"]
    before = fleet.acl_entries(target)
    report = make_responder(rules_with("ec2:block-ip")).handle(_ec2_incident(target, remote=(nat,)), Mode.LIVE)
    assert report.actions[0].status.value == "skipped"
    assert f"never blocked: {nat} (this VPC's NAT gateway)" in report.actions[0].detail
    assert fleet.acl_entries(target) == before


def test_aws_service_addresses_are_never_blocked(fleet: Fleet, make_responder: Any) -> None:
    target = fleet.instances[0]
    lists = fleet.ec2.describe_managed_prefix_lists()["PrefixLists"]
    s3 = next(p for p in lists if p["PrefixListName"].endswith(".s3"))
    first = fleet.ec2.get_managed_prefix_list_entries(PrefixListId=s3["PrefixListId"])["Entries"][0]["Cidr"]
    endpoint = first.split("/")[0].rsplit(".", 1)[0] + ".10"  # an address inside the list's first range
    before = fleet.acl_entries(target)
    report = make_responder(rules_with("ec2:block-ip")).handle(_ec2_incident(target, remote=(endpoint,)), Mode.LIVE)
    assert report.actions[0].status.value == "skipped"
    assert f"{endpoint} (AWS service address, prefix list {s3['PrefixListName']})" in report.actions[0].detail
    assert fleet.acl_entries(target) == before
    # with another address, that one is blocked and the endpoint named as spared
    mixed = make_responder(rules_with("ec2:block-ip")).handle(
        _ec2_incident(target, remote=(endpoint, "81.2.69.44")), Mode.LIVE
    )
    assert mixed.actions[0].status.value == "succeeded"
    assert "81.2.69.44/32" in mixed.actions[0].detail
    assert f"never blocked: {endpoint}" in mixed.actions[0].detail
