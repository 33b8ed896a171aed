"""Stolen node credentials contained without stopping the node group: the deny lands on the node
role (moto), and the condition-aware evaluator (principalmapper's local policy simulation) shows
it refuses the credentials away from their instance and lets the nodes go on.

principalmapper resolves policy variables (`${aws:SourceVpc}`) in resources only; IAM resolves
them in condition values too, so the evaluation here substitutes them from the request first.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.actions.iam.pin_instance_credentials import POLICY_NAME, callers_outside
from chalicelib.entry import decisions
from chalicelib.executors.plans import PlanStore
from chalicelib.incident import Principal, PrincipalKind, PrincipalRole, ResourceKind
from chalicelib.response.plan import Plan
from chalicelib.response.report import Mode
from tests.integration.conftest import incident, rules_with
from tests.integration.test_iam_proof import _simulation

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"
EC2_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}  # fmt: skip
NODE_VPC, NODE_ADDRESS, NAT = "vpc-0a1b2c3d", "10.0.12.34", "203.0.113.10"
ATTACKER = "81.2.69.144"
INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-0aaa1111bbbb2222c"


def _finding(arn: str, **changes: Any) -> Any:
    credentials = Principal(PrincipalKind.IAM_ROLE, "eks-nodes", arn, involved_as=PrincipalRole.CREDENTIALS)
    found = incident(kind=ResourceKind.NODE, instance_ids=("i-0aaa1111bbbb2222c",),
                     type_="UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS")  # fmt: skip
    return replace(found, principals=(credentials,), remote_ips=(ATTACKER, "10.1.2.3", "not-an-ip"), **changes)


def _node_role(aws_session: Any) -> str:
    return str(aws_session.client("iam").create_role(RoleName="eks-nodes",
               AssumeRolePolicyDocument=json.dumps(EC2_TRUST))["Role"]["Arn"])  # fmt: skip


def _document(aws_session: Any) -> dict[str, Any]:
    got = aws_session.client("iam").get_role_policy(RoleName="eks-nodes", PolicyName=POLICY_NAME)["PolicyDocument"]
    return dict(json.loads(got) if isinstance(got, str) else got)


def _request(*, issued: datetime, source_vpc: str | None = None, vpc_ip: str | None = None,
             source_ip: str | None = None, via_service: bool = False) -> dict[str, str]:  # fmt: skip
    """The request context of a call signed with the node's credentials (delivered to the node)."""
    context = {"ec2:SourceInstanceARN": INSTANCE, "aws:ec2InstanceSourceVPC": NODE_VPC,
               "aws:ec2InstanceSourcePrivateIPv4": NODE_ADDRESS, "aws:ViaAWSService": str(via_service).lower(),
               "aws:TokenIssueTime": issued.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    for key, value in (("aws:SourceVpc", source_vpc), ("aws:VpcSourceIp", vpc_ip), ("aws:SourceIp", source_ip)):
        if value is not None:
            context[key] = value
    return context


def _denied(document: dict[str, Any], context: dict[str, str]) -> bool:
    simulation, insensitive = _simulation()
    text = re.sub(r"\$\{([^}]+)\}", lambda m: context.get(m.group(1), m.group(0)), json.dumps(document))
    resolved = json.loads(text)
    bucket = "arn:aws:s3:::payments/export.csv"
    return bool(
        simulation.policy_has_matching_statement(resolved, "Deny", "s3:GetObject", bucket, insensitive(context))
    )


def test_the_node_role_is_pinned_to_its_instances_and_the_nodes_keep_working(
    aws_session: Any, make_responder: Any, store: PlanStore[Plan]
) -> None:
    arn = _node_role(aws_session)
    found = _finding(arn)
    report = make_responder(rules_with("iam:pin-instance-credentials", "iam:revoke-role-sessions"),
                            incidents_table=TABLE).handle(found, Mode.LIVE)  # fmt: skip
    pinned, revoked = report.actions
    assert pinned.status.value == "succeeded", pinned.detail
    assert f"through public endpoints: from {ATTACKER}" in pinned.detail  # the private and malformed ones dropped
    assert revoked.status.value == "skipped"  # the node role's sessions are not revoked: the nodes keep AWS
    document = _document(aws_session)
    before = datetime.now(UTC) - timedelta(hours=1)

    # The nodes: through a VPC endpoint of their VPC, and through a public endpoint via their NAT.
    assert not _denied(document, _request(issued=before, source_vpc=NODE_VPC, vpc_ip=NODE_ADDRESS))
    assert not _denied(document, _request(issued=before, source_ip=NAT))
    # An AWS service acting for the node (forward access sessions) is not the caller.
    assert not _denied(document, _request(issued=before, source_ip=ATTACKER, via_service=True))
    # The stolen copy: through another VPC's endpoint, from another address in the VPC, from where it was seen.
    assert _denied(document, _request(issued=before, source_vpc="vpc-0badbad0", vpc_ip="10.9.9.9"))
    assert _denied(document, _request(issued=before, source_vpc=NODE_VPC, vpc_ip="10.0.99.99"))
    assert _denied(document, _request(issued=before, source_ip=ATTACKER))
    # The limit: without the nodes' egress, a public-endpoint call from an address not seen is not refused.
    assert not _denied(document, _request(issued=before, source_ip="192.0.2.44"))
    # Sessions issued after the cut-off are not touched (the credentials the nodes get next).
    assert not _denied(document, _request(issued=datetime.now(UTC) + timedelta(hours=1), source_vpc="vpc-0badbad0",
                                          vpc_ip="10.9.9.9"))  # fmt: skip

    released = decisions.release(store, make_responder(rules_with("iam:pin-instance-credentials"),
                                 incidents_table=TABLE), found.id, steps=None, who="cli:test")  # fmt: skip
    assert [a["status"] for a in released["actions"]] == ["succeeded"], released["actions"]
    assert aws_session.client("iam").list_role_policies(RoleName="eks-nodes")["PolicyNames"] == []


def test_with_the_nodes_egress_every_public_endpoint_call_from_elsewhere_is_refused(
    aws_session: Any, make_responder: Any
) -> None:
    arn = _node_role(aws_session)
    pin = {"action": "iam:pin-instance-credentials", "params": {"egress_cidrs": [f"{NAT}/32"]}}
    (pinned,) = make_responder(rules_with(pin)).handle(_finding(arn), Mode.LIVE).actions
    assert pinned.status.value == "succeeded", pinned.detail
    document = _document(aws_session)
    before = datetime.now(UTC) - timedelta(hours=1)
    assert not _denied(document, _request(issued=before, source_ip=NAT))
    assert _denied(document, _request(issued=before, source_ip="192.0.2.44"))
    assert _denied(document, _request(issued=before, source_ip=ATTACKER))


def test_only_node_roles_are_pinned(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    trust = {"Version": "2012-10-17", "Statement": []}
    arn = iam.create_role(RoleName="developer", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    principal = Principal(PrincipalKind.IAM_ROLE, "developer", arn)
    found = replace(incident(kind=ResourceKind.CLUSTER, type_="CredentialAccess:Kubernetes/MaliciousIPCaller"),
                    principals=(principal,))  # fmt: skip
    (result,) = make_responder(rules_with("iam:pin-instance-credentials")).handle(found, Mode.LIVE).actions
    assert result.status.value == "skipped"
    assert "not a node role" in result.detail
    assert iam.list_role_policies(RoleName="developer")["PolicyNames"] == []


def test_a_finding_cannot_make_the_deny_refuse_the_nodes_own_egress() -> None:
    """Addresses come from the finding: only valid public ones outside the nodes' egress are used."""
    assert callers_outside((NAT, ATTACKER, "10.0.0.1", "::1", "x", ATTACKER), (f"{NAT}/32",)) == (ATTACKER,)


def test_findings_of_the_same_theft_pin_once_and_a_new_caller_is_added(aws_session: Any, make_responder: Any) -> None:
    """One policy per role: a finding the policy already covers changes nothing (a replay, the same
    theft seen twice), one with a new caller adds it and keeps the earlier ones."""
    arn = _node_role(aws_session)
    seen = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    responder = make_responder(rules_with("iam:pin-instance-credentials"))
    first = _finding(arn, id="theft-seen-first", observed_at=seen)
    assert responder.handle(first, Mode.LIVE).actions[0].status.value == "succeeded"
    written = _document(aws_session)
    for again in (first, _finding(arn, id="theft-seen-again", observed_at=seen)):
        (result,) = responder.handle(again, Mode.LIVE).actions
        assert result.status.value == "skipped", result.detail
        assert "already pinned" in result.detail
    assert _document(aws_session) == written
    elsewhere = replace(_finding(arn, id="theft-from-elsewhere", observed_at=seen), remote_ips=("81.2.69.160",))
    (result,) = responder.handle(elsewhere, Mode.LIVE).actions
    assert result.status.value == "succeeded", result.detail
    before = datetime.now(UTC) - timedelta(hours=1)
    document = _document(aws_session)
    assert _denied(document, _request(issued=before, source_ip=ATTACKER))  # the first caller, still refused
    assert _denied(document, _request(issued=before, source_ip="81.2.69.160"))


def test_the_pin_is_never_aimed_at_the_responders_own_or_a_protected_role(
    aws_session: Any, make_responder: Any
) -> None:
    """A finding names the role: one EC2 trusts that is the responder's own, or tagged protected,
    is left alone by the same guardrail as every identity action."""
    from chalicelib import functions

    iam = aws_session.client("iam")
    own = functions.BY_NAME["on_guardduty_finding"].role_name("local")  # the settings' stage
    tags = [{"Key": "eks-responder:protected", "Value": "true"}]
    for name, extra in ((own, {}), ("break-glass-nodes", {"Tags": tags})):
        trust = json.dumps(EC2_TRUST)
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, **extra)["Role"]["Arn"]
        credentials = Principal(PrincipalKind.IAM_ROLE, name, arn, involved_as=PrincipalRole.CREDENTIALS)
        found = replace(_finding(arn, id=f"aimed-at-{name}"), principals=(credentials,))
        (result,) = make_responder(rules_with("iam:pin-instance-credentials")).handle(found, Mode.LIVE).actions
        assert result.status.value == "skipped", result.detail
        assert iam.list_role_policies(RoleName=name)["PolicyNames"] == []
