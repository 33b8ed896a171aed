"""iam:pin-instance-credentials: a node role's credentials work on their own instance only.

Revoking a node role's sessions (iam:revoke-role-sessions) stops every node that shares the role:
the whole node group loses AWS. EC2 role credentials carry where they were delivered
(`aws:ec2InstanceSourceVPC`, `aws:ec2InstanceSourcePrivateIPv4`), and a request made through a VPC
endpoint carries where it comes from (`aws:SourceVpc`, `aws:VpcSourceIp`): a deny of requests whose
two differ refuses the stolen copy and leaves every node working.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.iam.common import identity, name_of, release_inline_policy
from chalicelib.actions.iam.revoke_role_sessions import ROLE_ARN, node_role
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked

POLICY_NAME = "eks-responder-pin-instance-credentials"
MAX_ADDRESSES = 50  # a statement's condition stays small; more callers than this is a different incident


def _always(cutoff: str) -> dict[str, Any]:
    """What every statement requires: EC2 role credentials, issued before the cut-off, used by the
    caller itself (not an AWS service acting on its behalf)."""
    return {"Null": {"ec2:SourceInstanceARN": "false"}, "BoolIfExists": {"aws:ViaAWSService": "false"},
            "DateLessThan": {"aws:TokenIssueTime": cutoff}}  # fmt: skip


def pin_document(incident_id: str, cutoff: str, egress: tuple[str, ...], callers: tuple[str, ...]) -> dict[str, Any]:
    """The deny. Through a VPC endpoint: from another VPC, or another address than the instance's.
    Through a public endpoint (no source VPC is known there): from outside the nodes' egress
    addresses when they are given, else from the addresses the finding saw the credentials used at."""
    sid = re.sub(r"[^A-Za-z0-9]", "", incident_id)[:60]
    base = _always(cutoff)
    statements: list[dict[str, Any]] = [
        {"Sid": f"OtherVpc{sid}", "Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {**base, "Null": {**base["Null"], "aws:SourceVpc": "false"},
                       "StringNotEquals": {"aws:ec2InstanceSourceVPC": "${aws:SourceVpc}"}}},
        {"Sid": f"OtherAddress{sid}", "Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {**base, "Null": {**base["Null"], "aws:VpcSourceIp": "false"},
                       "StringNotEquals": {"aws:ec2InstanceSourcePrivateIPv4": "${aws:VpcSourceIp}"}}},
    ]  # fmt: skip
    public = {**base, "Null": {**base["Null"], "aws:SourceVpc": "true"}}
    if egress:
        statements.append({"Sid": f"OutsideEgress{sid}", "Effect": "Deny", "Action": "*", "Resource": "*",
                           "Condition": {**public, "NotIpAddress": {"aws:SourceIp": list(egress)}}})  # fmt: skip
    elif callers:
        statements.append({"Sid": f"SeenCaller{sid}", "Effect": "Deny", "Action": "*", "Resource": "*",
                           "Condition": {**public, "IpAddress": {"aws:SourceIp": list(callers)}}})  # fmt: skip
    return {"Version": "2012-10-17", "Statement": statements}


def pinned(document: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a pin policy on the role holds: its cut-off, egress, callers, and the incident that wrote it."""
    if not document:
        return None
    statements = [s for s in document.get("Statement") or [] if isinstance(s, dict)]
    try:
        cutoff = str(statements[0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"])
    except (IndexError, KeyError, TypeError):
        return None
    found: dict[str, Any] = {"cutoff": cutoff, "sid": str(statements[0].get("Sid", "")), "egress": (), "callers": ()}
    for statement in statements:
        condition = statement.get("Condition") or {}
        if "NotIpAddress" in condition:
            found["egress"] = tuple(condition["NotIpAddress"].get("aws:SourceIp") or ())
        if "IpAddress" in condition:
            found["callers"] = tuple(condition["IpAddress"].get("aws:SourceIp") or ())
    return found


def _covers(had: dict[str, Any], incident_id: str, observed: str | None, egress: tuple[str, ...],
            callers: tuple[str, ...]) -> bool:  # fmt: skip
    """Whether the policy on the role already refuses what this finding saw: the same egress, every
    caller address, and a cut-off no earlier than the finding (or written for this incident)."""
    if tuple(had["egress"]) != egress or not set(callers) <= set(had["callers"]):
        return False
    if had["sid"] == f"OtherVpc{re.sub(r'[^A-Za-z0-9]', '', incident_id)[:60]}":
        return True
    if not observed:
        return False
    try:
        seen = datetime.fromisoformat(observed.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return False
    return str(had["cutoff"]) >= seen.strftime("%Y-%m-%dT%H:%M:%SZ")


class PinParams(Params, frozen=True):
    # The nodes' public egress (NAT gateway addresses, CIDRs): with it, a request through a public
    # endpoint from anywhere else is refused too. Without it, only the addresses the finding saw are.
    egress_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:  # each CIDR in its canonical form; a bad one is a ValueError
        cidrs = tuple(str(ipaddress.ip_network(v, strict=False)) for v in self.egress_cidrs)
        msgspec.structs.force_setattr(self, "egress_cidrs", cidrs)


def callers_outside(remote_ips: tuple[str, ...], egress: tuple[str, ...]) -> tuple[str, ...]:
    """The finding's caller addresses that are valid and public, and none of the nodes' own egress
    (a deny of those would stop the nodes): the rest are dropped, whatever the finding says."""
    networks = [ipaddress.ip_network(e) for e in egress]
    kept: list[str] = []
    for raw in remote_ips:
        try:
            address = ipaddress.ip_address(str(raw).strip())
        except ValueError:
            continue
        if address.is_global and not any(address in n for n in networks) and str(address) not in kept:
            kept.append(str(address))
    return tuple(kept[:MAX_ADDRESSES])


class PinInstanceCredentials(Action):
    """Deny a node role's sessions issued before now wherever they are used away from the instance
    they were delivered to; the nodes keep working, a stolen copy stops.

    Through a VPC endpoint, a request is refused when its source VPC or address is not the
    instance's (`aws:ec2InstanceSourceVPC` against `aws:SourceVpc`, `aws:ec2InstanceSourcePrivateIPv4`
    against `aws:VpcSourceIp`). A request through a public endpoint carries no source VPC: it is
    refused from outside `egress_cidrs` when the rule gives the nodes' egress, else from the
    addresses the finding saw the credentials used at. Only node roles (an instance profile's, EC2
    trusted): any other role's credentials are not bound to an instance (iam:revoke-role-sessions).

    Example::

        - action: iam:pin-instance-credentials
          params: {egress_cidrs: ["203.0.113.10/32", "203.0.113.11/32"]}
    """

    name = "iam:pin-instance-credentials"
    contains = True
    target_kind = "role"
    params_model = PinParams
    summary = "deny a node role's earlier sessions away from their own instance (the nodes keep working)"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("iam:GetRole", "iam:GetRolePolicy", "iam:PutRolePolicy"), (ROLE_ARN,)),
    )
    release_iam: ClassVar[tuple[IAMStatement, ...]] = (IAMStatement(("iam:DeleteRolePolicy",), (ROLE_ARN,)),)
    releases = f"removes the {POLICY_NAME} inline policy (or puts back the one an earlier incident had set)"
    keeps = "requests refused meanwhile were refused"
    reads_back = "the role's inline deny policy, compared with the one written"

    def describe(self, target: Target, params: Params) -> str:
        return f"attach {POLICY_NAME} to node role {target}: deny its earlier sessions away from their instance"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert isinstance(params, PinParams)
        api = identity(ctx)
        role = name_of(target.name)
        described = api.get_role(role)
        if described is None:
            return Outcome(Status.SKIPPED, f"role {target} no longer exists")
        if not node_role(target, described):
            return Outcome(Status.SKIPPED, f"{role} is not a node role: its credentials are not bound to an "
                                           "instance (iam:revoke-role-sessions revokes them)")  # fmt: skip
        existing = api.role_policy(role, POLICY_NAME)
        had = pinned(existing)
        callers = callers_outside(ctx.incident.remote_ips, params.egress_cidrs)
        if had is not None and _covers(had, ctx.incident.id, ctx.incident.observed_at, params.egress_cidrs, callers):
            return Outcome(Status.SKIPPED, f"node role {role} already pinned (sessions before {had['cutoff']}), "
                                           "covering this finding", already=True)  # fmt: skip
        # One policy per role: another incident's callers are kept, and the cut-off only moves forward.
        callers = callers_outside((*(had or {}).get("callers", ()), *callers), params.egress_cidrs)
        cutoff = ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        document = pin_document(ctx.incident.id, cutoff, params.egress_cidrs, callers)
        api.put_role_policy(role, POLICY_NAME, document)
        if params.egress_cidrs:
            where = f"outside {', '.join(params.egress_cidrs)}"
        else:
            where = f"from {', '.join(callers)}" if callers else "nowhere (no egress given, no caller address seen)"
        detail = (f"node role {role}: sessions issued before {cutoff} denied away from their instance (through "
                  f"VPC endpoints: from another VPC or address; through public endpoints: {where}) by "
                  f"{POLICY_NAME}")  # fmt: skip
        prior = {"role": role, "policy": POLICY_NAME, "previous_document": existing}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, detail, prior)
        now = api.role_policy(role, POLICY_NAME)
        return checked(
            detail, None if now == document else f"inline policy {POLICY_NAME} is not the one written", prior
        )

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        ours = re.sub(r"[^A-Za-z0-9]", "", ctx.incident.id)[:60]
        return release_inline_policy(
            identity(ctx), str(prior.get("role") or name_of(target.name)), POLICY_NAME,
            lambda current: any(str(s.get("Sid", "")).endswith(ours) for s in current.get("Statement", [])),
            prior.get("previous_document"), force=force,
            said=(f"the earlier {POLICY_NAME} put back", f"{POLICY_NAME} removed"),
        )  # fmt: skip
