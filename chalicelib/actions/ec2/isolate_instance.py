"""ec2:isolate-instance: move every network interface of the node to a rule-less security group."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.ec2.common import (
    INSTANCE_ARN,
    ISOLATED_AT_TAG,
    ISOLATION_GROUP_TAG,
    MANAGED_TAG,
    NODE_CONDITION,
    UNTRACKING_GROUP_TAG,
    aws,
    incident_tags,
    missing,
    present,
    tags_of,
)
from chalicelib.interfaces import EC2API, IAMStatement, Outcome, Status, Target
from chalicelib.settings import MANAGED_BY

SG_ARN = "arn:aws:ec2:{region}:{account}:security-group/*"
UNTRACKING = {"StringEquals": {f"aws:ResourceTag/{UNTRACKING_GROUP_TAG}": "true"}}


# Moving interfaces into the isolation group (found or made rule-less), through the transient
# all-traffic group: shared by every action that isolates an ENI.
GROUP_IAM: tuple[IAMStatement, ...] = (
    IAMStatement(("ec2:CreateSecurityGroup",), (SG_ARN, "arn:aws:ec2:{region}:{account}:vpc/*")),
    IAMStatement(("ec2:CreateTags",), (SG_ARN,), {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}}),
    IAMStatement(
        # outbound HTTPS to the forensics endpoints is the one rule it may add (FORENSICS_EGRESS)
        ("ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress"),
        (SG_ARN,),
        {"StringEquals": {f"aws:ResourceTag/{ISOLATION_GROUP_TAG}": "true"}},
    ),
    IAMStatement(
        ("ec2:ModifyNetworkInterfaceAttribute",), ("arn:aws:ec2:{region}:{account}:network-interface/*", SG_ARN)
    ),
    # the transient all-traffic group: opened, emptied and deleted only when it carries its tag
    IAMStatement(
        (
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:DeleteSecurityGroup",
        ),
        (SG_ARN,),
        UNTRACKING,
    ),
)


def put_back(
    ec2: EC2API, recorded: dict[str, list[str]], current: dict[str, list[str]], group: str, *, force: bool
) -> tuple[list[str], list[str]]:
    """Interfaces back in their recorded groups: (what was put back, what someone changed since and
    was left alone unless forced)."""
    done: list[str] = []
    changed: list[str] = []
    for eni, groups in recorded.items():
        now = current.get(eni)
        if now is None or now == groups:
            continue
        if now != [group] and not force:
            changed.append(f"{eni} is now in {' '.join(now)}")
            continue
        ec2.set_interface_groups(eni, list(groups))
        done.append(f"{eni} back in {' '.join(groups)}")
    return done, changed


class IsolateInstanceParams(Params, frozen=True):
    # Security groups keep tracked connections (an attacker's shell) alive after the rules change.
    cut_established_connections: bool = True


class IsolateInstance(Action):
    """Cut the node off the network: every ENI (primary and the VPC CNI's secondary ones) moves
    to one isolation security group per VPC, with no inbound and no outbound rule. A group is
    used only when it is the account's, carries the responder's tags and has no rules (any it
    has are removed); afterwards every interface and the group are read back and verified.

    Security groups are stateful: a connection already tracked (the attacker's shell) survives
    a change of rules. Unless `cut_established_connections` is false, each ENI first passes
    through a transient group that allows all traffic (under which no connection is tracked),
    then straight on to the empty group, where untracked flows stop at once; the transient group
    is deleted afterwards. An ENI whose move on fails is put back in its own groups, never left
    in the open one.

    The original groups of each ENI are recorded, so the change can be undone.

    Example::

        - action: ec2:isolate-instance
          params: {cut_established_connections: true}
    """

    name = "ec2:isolate-instance"
    contains = True
    writes_evidence = True
    target_kind = "instance"
    refused_by_managed_instances = "security-group changes"
    summary = "move every ENI of the node to an isolation security group with no rules"
    counts_against_instance_cap = True
    disrupts_node = True
    params_model = IsolateInstanceParams
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeInstances", "ec2:DescribeSecurityGroups")),
        *GROUP_IAM,
        IAMStatement(("ec2:CreateTags",), (INSTANCE_ARN,), NODE_CONDITION),
    )

    release_iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeNetworkInterfaces",)),
        IAMStatement(
            ("ec2:DeleteSecurityGroup",),
            (SG_ARN,),
            {"StringEquals": {f"aws:ResourceTag/{ISOLATION_GROUP_TAG}": "true"}},
        ),
    )
    reads_back = "every interface's security groups and the isolation group's rules"
    releases = ("puts every interface back in the security groups it had, and deletes the isolation group it "
                "created once no interface uses it")  # fmt: skip
    keeps = "interfaces whose groups someone changed since (unless forced); connections cut meanwhile stay cut"

    shared = True

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        ec2 = aws(ctx)
        found = present(ctx, target)
        if found is None:
            return missing(target)
        group = str(prior.get("isolation_group") or "")
        current = {str(e["NetworkInterfaceId"]): [str(g["GroupId"]) for g in e.get("Groups", [])]
                   for e in found.get("NetworkInterfaces", [])}  # fmt: skip
        done, changed = put_back(ec2, prior.get("network_interfaces") or {}, current, group, force=force)
        created = prior.get("isolation_group_created")
        if created and not ctx.dry_run and not ec2.network_interfaces({"group-id": [str(created)]}):
            ec2.delete_security_group(str(created))
            done.append(f"deleted isolation group {created} (unused)")
        if changed:
            note = f"left alone, changed since the isolation (force puts them back anyway): {'; '.join(changed)}"
            return Outcome(Status.SKIPPED if not done else Status.SUCCEEDED, "; ".join([*done, note]))
        if not done:
            return Outcome(Status.SKIPPED, f"instance {target}: every interface already has its original groups")
        return Outcome(Status.SUCCEEDED, f"instance {target}: {'; '.join(done)}")

    def describe(self, target: Target, params: Params) -> str:
        return f"move every network interface of instance {target} to the VPC's isolation security group (no rules)"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert isinstance(params, IsolateInstanceParams)
        ec2 = aws(ctx)
        found = present(ctx, target)
        if found is None:
            return missing(target)
        vpc = str(found["VpcId"])
        interfaces = {
            str(e["NetworkInterfaceId"]): [str(g["GroupId"]) for g in e.get("Groups", [])]
            for e in found.get("NetworkInterfaces", [])
        }
        owners = {str(e.get("OwnerId")) for e in found.get("NetworkInterfaces", []) if e.get("OwnerId")}
        done: list[str] = []
        prior: dict[str, Any] = {"network_interfaces": interfaces, "vpc": vpc}
        allowed = forensic_egress(ctx, ec2, vpc)
        group = _isolation_group(ec2, vpc, owners, done, prior, allowed)
        to_move = {eni: groups for eni, groups in interfaces.items() if groups != [group]}
        if to_move:
            if ctx.evidence is not None and not ctx.dry_run:
                base = f"{evidence_bundle.incident_prefix(ctx.incident)}/instances/{target.name}"
                evidence_bundle.write(
                    ctx, base, {"instance.json": evidence_bundle.as_json(found)}, {"instance": target.name}
                )
            move_into(ec2, vpc, to_move, group, done, untrack=params.cut_established_connections)
            ec2.tag([target.name], {**incident_tags(ctx), ISOLATED_AT_TAG: ctx.now.isoformat()})
            moved = ", ".join(f"{eni} (was {' '.join(groups) or 'no group'})" for eni, groups in to_move.items())
            done.append(f"moved {moved} to {group or 'the isolation group'}")
        prior["isolation_group"] = group
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, "; ".join(done) or f"instance {target} is already isolated", prior)
        problem = verify(ec2, target.name, group, allowed)
        if problem:
            so_far = f" (done: {'; '.join(done)})" if done else ""
            return Outcome(Status.FAILED, f"isolation of instance {target} does not hold: {problem}{so_far}", prior)
        if not done:
            return Outcome(Status.SKIPPED, f"instance {target} is already isolated in {group} (verified)", already=True)
        return Outcome(
            Status.SUCCEEDED,
            "; ".join(done) + f"; verified: every interface only in {group}, {rules_text(allowed)}",
            prior,
        )


def move_into(
    ec2: EC2API, vpc: str, to_move: dict[str, list[str]], group: str, done: list[str], *, untrack: bool
) -> None:
    """Each interface into the isolation group; when untracking, through a transient all-traffic
    group first (deleted afterwards), so no tracked connection survives the move."""
    through = _untracking_group(ec2, vpc, done) if untrack and group else ""
    for eni, groups in to_move.items():
        _move(ec2, eni, groups, group, through)
    if through:
        _drop(ec2, through, done)


def _move(ec2: EC2API, eni: str, groups: list[str], group: str, through: str) -> None:
    """One ENI into the isolation group, through the all-traffic group when there is one, with
    nothing in between; back to its own groups if the second step fails."""
    if through:
        ec2.set_interface_groups(eni, [through])
    try:
        # In a dry run the group may not exist yet: prove the permission with the current groups.
        ec2.set_interface_groups(eni, [group] if group else groups)
    except Exception:
        if through:
            ec2.set_interface_groups(eni, groups)
        raise


def _untracking_group(ec2: EC2API, vpc: str, done: list[str]) -> str:
    """A new group that allows all traffic, for this isolation only (deleted afterwards)."""
    tags = {UNTRACKING_GROUP_TAG: "true", MANAGED_TAG: MANAGED_BY, "Name": "eks-responder-untracking"}
    name = f"eks-responder-untracking-{vpc}-{uuid.uuid4().hex[:8]}"
    group = ec2.create_security_group(vpc, name, "eks-responder: transient, untracks connections before isolation",
                                      tags)  # fmt: skip
    if group:
        ec2.allow_all_traffic(group)
        done.append(f"cut tracked connections through transient group {group} (all traffic, so none tracked)")
    return group


def _drop(ec2: EC2API, group: str, done: list[str]) -> None:
    if ec2.network_interfaces({"group-id": [group]}):
        done.append(f"left transient group {group} in place: an interface still uses it")
        return
    try:
        ec2.delete_security_group(group)
        done.append(f"deleted transient group {group}")
    except Exception as exc:  # noqa: BLE001 - the node is isolated; an unused group is a clean-up note
        done.append(f"could not delete unused transient group {group} ({type(exc).__name__}): delete it by hand")


def _trusted(group: dict[str, Any], owners: set[str]) -> str | None:
    """Why a group tagged as an isolation group is not used (None: it is the responder's)."""
    if owners and str(group.get("OwnerId")) not in owners:
        return f"owned by account {group.get('OwnerId')}, not the instance's"
    if tags_of(group).get(MANAGED_TAG) != MANAGED_BY:
        return f"not tagged {MANAGED_TAG}={MANAGED_BY}"
    return None


def forensic_egress(ctx: ActionContext, ec2: EC2API, vpc: str) -> list[str]:
    """The FORENSICS_EGRESS destinations that apply in this VPC: every prefix list, and the
    endpoint security groups that are the VPC's own (a rule cannot name another VPC's group)."""
    found = []
    for destination in ctx.settings.forensics_egress:
        if destination.startswith("pl-"):
            found.append(destination)
            continue
        group = ec2.security_group(destination)
        if group is not None and str(group.get("VpcId")) == vpc:
            found.append(destination)
    return found


def _egress(rules: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    found: set[tuple[Any, ...]] = set()
    for rule in rules:
        key = (rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort"))
        found.update((*key, p.get("GroupId")) for p in rule.get("UserIdGroupPairs") or [])
        found.update((*key, p.get("PrefixListId")) for p in rule.get("PrefixListIds") or [])
        found.update((*key, r.get("CidrIp")) for r in rule.get("IpRanges") or [])
        found.update((*key, r.get("CidrIpv6")) for r in rule.get("Ipv6Ranges") or [])
    return found


def _holds(group: dict[str, Any], allowed: list[str]) -> bool:
    """No inbound rule, and outbound only HTTPS to the allowed endpoints (none: no rule at all)."""
    if group.get("IpPermissions"):
        return False
    return _egress(group.get("IpPermissionsEgress") or []) == {("tcp", 443, 443, d) for d in allowed}


def rules_text(allowed: list[str]) -> str:
    return f"no rules but HTTPS to {' '.join(allowed)} (FORENSICS_EGRESS)" if allowed else "no rules"


def _isolation_group(
    ec2: EC2API, vpc: str, owners: set[str], done: list[str], prior: dict[str, Any], allowed: list[str]
) -> str:
    """The VPC's isolation group, with no rules but the forensics endpoints': a tag alone earns no
    trust, and any other rule is removed."""
    for candidate in ec2.security_groups(vpc, {ISOLATION_GROUP_TAG: "true"}):
        gid = str(candidate["GroupId"])
        why = _trusted(candidate, owners)
        if why:
            done.append(f"ignored {gid}, tagged as an isolation group but {why}")
            continue
        if not _holds(candidate, allowed):
            inbound, outbound = candidate.get("IpPermissions") or [], candidate.get("IpPermissionsEgress") or []
            ec2.revoke_all_rules(gid)
            prior["isolation_group_rules_removed"] = {"group": gid, "inbound": inbound, "outbound": outbound}
            if allowed:
                ec2.allow_https_to(gid, allowed)
            done.append(f"removed {len(inbound)} inbound and {len(outbound)} outbound rule(s) from isolation group "
                        f"{gid} ({rules_text(allowed)} now)")  # fmt: skip
        return gid
    tags = {ISOLATION_GROUP_TAG: "true", MANAGED_TAG: MANAGED_BY, "Name": "eks-responder-isolation"}
    # A unique name: a group squatting on a predictable name could otherwise block the creation.
    name = f"eks-responder-isolation-{vpc}-{uuid.uuid4().hex[:8]}"
    group = ec2.create_security_group(vpc, name, "eks-responder: no inbound or outbound traffic", tags)
    if group:
        ec2.revoke_all_rules(group)  # a new group allows all outbound traffic by default
        if allowed:
            ec2.allow_https_to(group, allowed)
        prior["isolation_group_created"] = group
    done.append(f"created isolation group {group or '(dry run)'} in {vpc} ({rules_text(allowed)})")
    return group


def verify(ec2: EC2API, instance_id: str, group: str, allowed: list[str]) -> str | None:
    """Read back: why the instance is not isolated, or None when every ENI is only in the isolation group."""
    found = ec2.describe_instance(instance_id)
    if found is None:
        return None
    return _only_in(found.get("NetworkInterfaces", []), ec2, group, allowed)


def verify_interfaces(ec2: EC2API, interfaces: list[str], group: str, allowed: list[str]) -> str | None:
    """Read back: why these ENIs are not isolated, or None when each is only in the isolation group."""
    return _only_in(ec2.network_interfaces({"network-interface-id": interfaces}), ec2, group, allowed)


def _only_in(interfaces: list[dict[str, Any]], ec2: EC2API, group: str, allowed: list[str]) -> str | None:
    wrong = {str(e["NetworkInterfaceId"]): [str(g["GroupId"]) for g in e.get("Groups", [])] for e in interfaces}
    wrong = {eni: groups for eni, groups in wrong.items() if groups != [group]}
    if wrong:
        return ", ".join(f"{eni} is in {' '.join(groups) or 'no group'}" for eni, groups in wrong.items())
    current = ec2.security_group(group)
    if current is None:
        return f"isolation group {group} does not exist"
    if not _holds(current, allowed):
        return f"isolation group {group} has rules other than {rules_text(allowed)}"
    return None
