"""A dry run that an endpoint carries out anyway is reported as applied, never as "not applied".

moto answers an EC2 network-ACL write sent with DryRun=True by making it: the endpoint this test
needs, one that ignores DryRun.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.executors import dry_run
from chalicelib.executors.aws import AwsConnector

pytestmark = pytest.mark.integration


def _acl(aws_session: Any) -> tuple[Any, str]:
    ec2 = aws_session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    return ec2, str(ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"])


def _entries(ec2: Any, acl: str) -> list[int]:
    (found,) = ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"]
    return [e["RuleNumber"] for e in found["Entries"] if e["RuleNumber"] < 32767]


def test_a_dry_run_write_the_endpoint_made_is_journalled_as_applied(aws_session: Any) -> None:
    ec2, acl = _acl(aws_session)
    gateway = AwsConnector(lambda: aws_session).gateway("us-east-1", dry_run=True)
    with dry_run.journal() as writes:
        gateway.add_acl_deny(acl, 77, "198.51.100.7/32", egress=True)
    assert 77 in _entries(ec2, acl)
    assert dry_run.any_applied(writes), writes
    assert "not applied" not in dry_run.describe(writes)
    assert "ec2:CreateNetworkAclEntry APPLIED: the endpoint ignored DryRun and made the change" in writes
