"""EKS access entries: moto does not implement them, so the executor is checked with botocore's Stubber."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from chalicelib.executors.identity import IdentityGateway

ARN = "arn:aws:iam::123456789012:role/developer"


def _eks() -> tuple[object, Stubber]:
    client = boto3.client("eks", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def test_an_access_entry_is_read_with_its_policies_and_deleted() -> None:
    eks, stub = _eks()
    entry = {"clusterName": "prod", "principalArn": ARN, "kubernetesGroups": ["devs"], "type": "STANDARD"}
    stub.add_response("describe_access_entry", {"accessEntry": entry}, {"clusterName": "prod", "principalArn": ARN})
    policies = {
        "associatedAccessPolicies": [{"policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"}]
    }
    stub.add_response(
        "list_associated_access_policies",
        {"clusterName": "prod", "principalArn": ARN, **policies},
        {"clusterName": "prod", "principalArn": ARN},
    )
    stub.add_response("delete_access_entry", {}, {"clusterName": "prod", "principalArn": ARN})
    with stub:
        gateway = IdentityGateway(None, None, eks, dry_run=False)
        found = gateway.access_entry("prod", ARN)
        gateway.delete_access_entry("prod", ARN)
    assert found is not None
    assert found["kubernetesGroups"] == ["devs"]
    assert found["associatedAccessPolicies"] == policies["associatedAccessPolicies"]
    stub.assert_no_pending_responses()


def test_no_access_entry_means_none_so_aws_auth_is_tried() -> None:
    eks, stub = _eks()
    stub.add_client_error("describe_access_entry", "ResourceNotFoundException", http_status_code=404)
    with stub:
        assert IdentityGateway(None, None, eks, dry_run=False).access_entry("prod", ARN) is None


def test_dry_run_sends_no_delete() -> None:
    eks, stub = _eks()
    with stub:  # any call would fail: nothing is queued
        IdentityGateway(None, None, eks, dry_run=True).delete_access_entry("prod", ARN)
    stub.assert_no_pending_responses()
