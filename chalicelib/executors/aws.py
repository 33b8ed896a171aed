"""The EC2 and Auto Scaling executor: the only module that calls those APIs.

Every EC2 write carries DryRun=True in dry-run mode; "DryRunOperation" (the request would have
succeeded) counts as success, so a dry run proves permissions without changing anything. An
endpoint that answers a DryRun write with success has applied it: that is reported as applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.executors import dry_run
from chalicelib.executors.lazy import LazyClient

_DRY_RUN_OK = "DryRunOperation"


def _operation(call: Callable[..., Any]) -> str:
    """`create_tags` -> `CreateTags`: the API operation a boto3 method sends."""
    return "".join(part.title() for part in getattr(call, "__name__", "write").split("_"))


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _filters(filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"Name": k, "Values": v} for k, v in filters.items()]


class EC2Gateway:
    def __init__(
        self,
        ec2: Any,
        autoscaling: Any,
        *,
        dry_run: bool,
        elbv2: Callable[[], Any] | None = None,
        guardduty: Callable[[], Any] | None = None,
        ssm: Callable[[], Any] | None = None,
    ) -> None:
        self._ec2 = ec2
        self._asg = autoscaling
        self._elbv2 = elbv2  # built on first use: most incidents never touch a load balancer
        self._guardduty = guardduty
        self._ssm = ssm
        self.dry_run = dry_run

    def _not_sent(self, permission: str) -> bool:
        """In a dry run, a call the API cannot dry-run is named and not sent (True)."""
        if self.dry_run:
            dry_run.not_sent(permission)
        return self.dry_run

    def _write(self, call: Callable[..., Any], **kwargs: Any) -> Any:
        if not self.dry_run:
            return call(**kwargs)
        try:
            answer = call(DryRun=True, **kwargs)
        except self._ec2.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != _DRY_RUN_OK:
                raise
            dry_run.checked(f"ec2:{_operation(call)}", "DryRun")
            return None
        # Success is not "would succeed": the endpoint ignored DryRun and applied the write.
        dry_run.applied(f"ec2:{_operation(call)}")
        return answer

    def network_interfaces(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        pages = self._ec2.get_paginator("describe_network_interfaces").paginate(Filters=_filters(filters))
        return [eni for page in pages for eni in page.get("NetworkInterfaces", [])]

    def describe_instance(self, instance_id: str) -> dict[str, Any] | None:
        try:
            reservations = self._ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except self._ec2.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {
                "InvalidInstanceID.NotFound",
                "InvalidInstanceID.Malformed",
            }:
                return None
            raise
        instances = [i for r in reservations for i in r.get("Instances", [])]
        return instances[0] if instances else None

    def describe_instances(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        pages = self._ec2.get_paginator("describe_instances").paginate(Filters=_filters(filters))
        return [i for page in pages for r in page["Reservations"] for i in r.get("Instances", [])]

    def security_groups(self, vpc_id: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        wanted = {"vpc-id": [vpc_id], **{f"tag:{k}": [v] for k, v in tags.items()}}
        return list(self._ec2.describe_security_groups(Filters=_filters(wanted))["SecurityGroups"])

    def security_group(self, group_id: str) -> dict[str, Any] | None:
        try:
            groups = self._ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
        except self._ec2.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidGroup.NotFound":
                return None
            raise
        return dict(groups[0]) if groups else None

    def create_security_group(self, vpc_id: str, name: str, description: str, tags: dict[str, str]) -> str:
        created = self._write(
            self._ec2.create_security_group,
            GroupName=name,
            Description=description,
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tag_list(tags)}],
        )
        return str(created["GroupId"]) if created else ""

    def revoke_all_rules(self, group_id: str) -> tuple[int, int]:
        """Remove every inbound and outbound rule; (inbound, outbound) rules removed."""
        group = self._ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        inbound, outbound = group.get("IpPermissions") or [], group.get("IpPermissionsEgress") or []
        if inbound:
            self._write(self._ec2.revoke_security_group_ingress, GroupId=group_id, IpPermissions=inbound)
        if outbound:
            self._write(self._ec2.revoke_security_group_egress, GroupId=group_id, IpPermissions=outbound)
        return len(inbound), len(outbound)

    def allow_all_traffic(self, group_id: str) -> None:
        """Every protocol, port and address in and out (IPv4 and IPv6): the rule set under which a
        security group tracks no connection."""
        self.revoke_all_rules(group_id)
        everything = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                       "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]  # fmt: skip
        self._write(self._ec2.authorize_security_group_ingress, GroupId=group_id, IpPermissions=everything)
        self._write(self._ec2.authorize_security_group_egress, GroupId=group_id, IpPermissions=everything)

    def allow_https_to(self, group_id: str, destinations: list[str]) -> None:
        """Outbound TCP 443 to each security group (sg-) or prefix list (pl-), nothing else."""
        pairs = [{"GroupId": d} for d in destinations if d.startswith("sg-")]
        lists = [{"PrefixListId": d} for d in destinations if d.startswith("pl-")]
        rule = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": pairs, "PrefixListIds": lists}
        self._write(self._ec2.authorize_security_group_egress, GroupId=group_id, IpPermissions=[rule])

    def set_interface_groups(self, interface_id: str, group_ids: list[str]) -> None:
        self._write(self._ec2.modify_network_interface_attribute, NetworkInterfaceId=interface_id, Groups=group_ids)

    def instance_attribute(self, instance_id: str, attribute: str) -> Any:
        answer = self._ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=attribute)
        key = attribute[0].upper() + attribute[1:]
        return (answer.get(key) or {}).get("Value")

    def set_instance_attribute(self, instance_id: str, attribute: str, value: Any) -> None:
        if isinstance(value, str):
            # The documented Attribute/Value form: every endpoint reads it the same way (moto takes the
            # structured form of a string attribute for a security-group change and drops it).
            self._write(self._ec2.modify_instance_attribute, InstanceId=instance_id, Attribute=attribute, Value=value)
            return
        key = attribute[0].upper() + attribute[1:]
        self._write(self._ec2.modify_instance_attribute, InstanceId=instance_id, **{key: {"Value": value}})

    def tag(self, resource_ids: list[str], tags: dict[str, str]) -> None:
        self._write(self._ec2.create_tags, Resources=resource_ids, Tags=_tag_list(tags))

    def auto_scaling_of(self, instance_id: str) -> dict[str, Any] | None:
        found = self._asg.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
        return dict(found[0]) if found else None

    def enter_standby(self, group: str, instance_id: str) -> None:
        # The group keeps its desired capacity, so it launches a replacement instead of waiting.
        if not self._not_sent("autoscaling:EnterStandby"):
            self._asg.enter_standby(InstanceIds=[instance_id], AutoScalingGroupName=group,
                                    ShouldDecrementDesiredCapacity=False)  # fmt: skip

    def exit_standby(self, group: str, instance_id: str) -> None:
        if not self._not_sent("autoscaling:ExitStandby"):
            self._asg.exit_standby(InstanceIds=[instance_id], AutoScalingGroupName=group)

    def start_malware_scan(self, instance_arn: str) -> str | None:
        """GuardDuty's on-demand malware scan of the instance's volumes: the scan id (None in a dry run)."""
        if self._not_sent("guardduty:StartMalwareScan"):
            return None
        if self._guardduty is None:
            raise RuntimeError("no GuardDuty client configured")
        return str(self._guardduty().start_malware_scan(ResourceArn=instance_arn)["ScanId"])

    def send_command(self, document: str, instance_id: str, parameters: dict[str, list[str]], comment: str,
                     timeout_seconds: int) -> str | None:  # fmt: skip
        """Run Command with one document on one instance: the command id (None in a dry run)."""
        if self._not_sent("ssm:SendCommand"):
            return None
        if self._ssm is None:
            raise RuntimeError("no Systems Manager client configured")
        sent = self._ssm().send_command(
            DocumentName=document, InstanceIds=[instance_id], Parameters=parameters, Comment=comment[:100],
            TimeoutSeconds=timeout_seconds,  # to start: an agent that cannot take it by then never runs it
        )  # fmt: skip
        return str(sent["Command"]["CommandId"])

    def _lb(self) -> Any:
        if self._elbv2 is None:
            raise RuntimeError("no Elastic Load Balancing client configured")
        return self._elbv2()

    def targets_in(self, vpc_id: str, ids: set[str]) -> list[dict[str, Any]]:
        """Every registration of these ids (an instance id, or its addresses for IP targets) in the
        VPC's target groups: {"TargetGroupArn", "Id", "Port"}."""
        found: list[dict[str, Any]] = []
        for page in self._lb().get_paginator("describe_target_groups").paginate():
            for group in page.get("TargetGroups", []):
                if group.get("VpcId") != vpc_id:
                    continue
                arn = str(group["TargetGroupArn"])
                health = self._lb().describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
                for described in health:
                    target = described.get("Target") or {}
                    if str(target.get("Id")) in ids:
                        found.append({"TargetGroupArn": arn, "Id": str(target["Id"]), "Port": target.get("Port")})
        return found

    def _targets(self, entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            port = {"Port": int(entry["Port"])} if entry.get("Port") is not None else {}
            grouped.setdefault(str(entry["TargetGroupArn"]), []).append({"Id": str(entry["Id"]), **port})
        return grouped

    def deregister(self, entries: list[dict[str, Any]]) -> None:
        if not self._not_sent("elasticloadbalancing:DeregisterTargets"):
            for arn, targets in self._targets(entries).items():
                self._lb().deregister_targets(TargetGroupArn=arn, Targets=targets)

    def register(self, entries: list[dict[str, Any]]) -> None:
        if not self._not_sent("elasticloadbalancing:RegisterTargets"):
            for arn, targets in self._targets(entries).items():
                self._lb().register_targets(TargetGroupArn=arn, Targets=targets)

    def set_scale_in_protection(self, group: str, instance_id: str, *, protected: bool) -> None:
        if self.dry_run:
            dry_run.not_sent("autoscaling:SetInstanceProtection")
            return
        self._asg.set_instance_protection(
            InstanceIds=[instance_id], AutoScalingGroupName=group, ProtectedFromScaleIn=protected
        )

    def detach_from_group(self, group: str, instance_id: str) -> None:
        if self.dry_run:
            dry_run.not_sent("autoscaling:DetachInstances")
            return
        self._asg.detach_instances(
            InstanceIds=[instance_id], AutoScalingGroupName=group, ShouldDecrementDesiredCapacity=False
        )

    def snapshots_of(self, volume_id: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        wanted = {"volume-id": [volume_id], **{f"tag:{k}": [v] for k, v in tags.items()}}
        return list(self._ec2.describe_snapshots(OwnerIds=["self"], Filters=_filters(wanted))["Snapshots"])

    def create_snapshot(self, volume_id: str, description: str, tags: dict[str, str]) -> str:
        created = self._write(
            self._ec2.create_snapshot,
            VolumeId=volume_id,
            Description=description,
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": _tag_list(tags)}],
        )
        return str(created["SnapshotId"]) if created else ""

    def network_acl_of(self, subnet_id: str) -> dict[str, Any] | None:
        acls = self._ec2.describe_network_acls(Filters=_filters({"association.subnet-id": [subnet_id]}))["NetworkAcls"]
        return dict(acls[0]) if acls else None

    def network_acl_by_id(self, acl_id: str) -> dict[str, Any] | None:
        acls = self._ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"]
        return dict(acls[0]) if acls else None

    def nat_gateway_addresses(self, vpc_id: str) -> set[str]:
        """The public addresses of the VPC's NAT gateways: its own traffic to the internet."""
        pages = self._ec2.get_paginator("describe_nat_gateways").paginate(
            Filters=_filters({"vpc-id": [vpc_id], "state": ["available", "pending"]})
        )
        return {
            str(address["PublicIp"])
            for page in pages
            for gateway in page.get("NatGateways", [])
            for address in gateway.get("NatGatewayAddresses", [])
            if address.get("PublicIp")
        }

    def aws_service_ranges(self) -> dict[str, list[str]]:
        """The region's AWS-managed prefix lists (S3, DynamoDB, CloudFront origin-facing, ...): name
        to CIDRs. Kept current by AWS, so the responder never denies an AWS service endpoint."""
        lists = self._ec2.get_paginator("describe_managed_prefix_lists").paginate(
            Filters=_filters({"owner-id": ["AWS"]})
        )
        ranges: dict[str, list[str]] = {}
        for page in lists:
            for found in page.get("PrefixLists", []):
                entries = self._ec2.get_paginator("get_managed_prefix_list_entries").paginate(
                    PrefixListId=found["PrefixListId"]
                )
                cidrs = [str(e["Cidr"]) for entry_page in entries for e in entry_page.get("Entries", [])]
                ranges[str(found.get("PrefixListName") or found["PrefixListId"])] = cidrs
        return ranges

    def delete_security_group(self, group_id: str) -> None:
        self._write(self._ec2.delete_security_group, GroupId=group_id)

    def remove_acl_entry(self, acl_id: str, rule_number: int, *, egress: bool) -> None:
        self._write(self._ec2.delete_network_acl_entry, NetworkAclId=acl_id, RuleNumber=rule_number, Egress=egress)

    def add_acl_deny(self, acl_id: str, rule_number: int, cidr: str, *, egress: bool) -> None:
        family = {"Ipv6CidrBlock": cidr} if ":" in cidr else {"CidrBlock": cidr}
        self._write(
            self._ec2.create_network_acl_entry,
            NetworkAclId=acl_id,
            RuleNumber=rule_number,
            Protocol="-1",
            RuleAction="deny",
            Egress=egress,
            **family,
        )


class AwsConnector:
    """Builds EC2/Auto Scaling gateways per region, with clients cached per container."""

    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session
        self._clients: dict[str, tuple[Any, Any]] = {}
        self._lb_clients: dict[str, Any] = {}

    def gateway(self, region: str, *, dry_run: bool) -> EC2Gateway:
        if region not in self._clients:
            # Retries and timeouts come from the session's defaults (wiring.aws_session, AWS_MAX_ATTEMPTS).
            session = self._session()
            self._clients[region] = (
                LazyClient(lambda: session.client("ec2", region_name=region)),
                LazyClient(lambda: session.client("autoscaling", region_name=region)),
            )
        ec2, autoscaling = self._clients[region]
        return EC2Gateway(ec2, autoscaling, dry_run=dry_run, elbv2=lambda: self._elbv2(region),
                          guardduty=lambda: self._session().client("guardduty", region_name=region),
                          ssm=lambda: self._session().client("ssm", region_name=region))  # fmt: skip

    def _elbv2(self, region: str) -> Any:
        if region not in self._lb_clients:
            self._lb_clients[region] = self._session().client("elbv2", region_name=region)
        return self._lb_clients[region]

    def objects(self, region: str) -> Any:
        """An S3 client in this account, for reading the flow-log objects its buckets hold."""
        return self._session().client("s3", region_name=region)
