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


def test_an_incident_lists_a_service_accounts_associations_once_until_it_deletes_one() -> None:
    eks, stub = _eks()
    where = {"clusterName": "prod", "namespace": "payments", "serviceAccount": "web"}
    arn = "arn:aws:eks:us-east-1:123456789012:podidentityassociation/prod/a-1"
    association = {"associationId": "a-1", "associationArn": arn, "clusterName": "prod", "namespace": "payments",
                   "serviceAccount": "web", "ownerArn": ""}  # fmt: skip
    described = {**association, "roleArn": ARN}
    stub.add_response("list_pod_identity_associations", {"associations": [association]}, where)
    stub.add_response("describe_pod_identity_association", {"association": described},
                      {"clusterName": "prod", "associationId": "a-1"})  # fmt: skip
    stub.add_response("delete_pod_identity_association", {"association": described},
                      {"clusterName": "prod", "associationId": "a-1"})  # fmt: skip
    stub.add_response("list_pod_identity_associations", {"associations": []}, where)
    with stub:
        gateway = IdentityGateway(None, None, eks, dry_run=False)
        # the identity resolution, then the step: one listing between them
        assert gateway.pod_identity_roles("prod", "payments", "web") == [ARN]
        first = gateway.pod_identity_associations("prod", "payments", "web")
        first[0]["roleArn"] = "changed by a caller"
        assert gateway.pod_identity_associations("prod", "payments", "web")[0]["roleArn"] == ARN
        gateway.delete_pod_identity_association("prod", "a-1")
        # after a delete, the next read asks EKS again
        assert gateway.pod_identity_associations("prod", "payments", "web") == []
    stub.assert_no_pending_responses()


def test_a_client_is_made_when_first_used_and_only_once() -> None:
    from chalicelib.executors.lazy import LazyClient

    made: list[str] = []

    def make() -> object:
        made.append("sts")
        return boto3.client("sts", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")

    client = LazyClient(make)
    assert made == []  # built, not used: no client, no service model loaded
    assert client.meta.service_model.service_name == "sts"
    assert client.exceptions.ClientError is not None
    assert made == ["sts"]
