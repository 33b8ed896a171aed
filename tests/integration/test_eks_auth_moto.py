"""Cluster lookup through a real AWS-compatible endpoint (moto): DescribeCluster + a signed token."""

from __future__ import annotations

import base64

import boto3
import pytest

from chalicelib.errors import ClusterAccessError
from chalicelib.executors.eks_auth import eks_kubeconfig
from devstack.stack import LocalStack

pytestmark = pytest.mark.integration


def test_kubeconfig_from_describe_cluster(local_stack: LocalStack) -> None:
    local_stack.moto_reset()
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    iam = session.client("iam", endpoint_url=local_stack.moto_url)
    role = iam.create_role(RoleName="eks", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    eks = session.client("eks", endpoint_url=local_stack.moto_url)
    created = eks.create_cluster(name="prod", roleArn=role, resourcesVpcConfig={"subnetIds": []})["cluster"]

    class Endpointed:
        """The session the Lambda would have, pointed at moto."""

        def client(self, name: str, region_name: str) -> object:
            return session.client(name, region_name=region_name, endpoint_url=local_stack.moto_url)

        def get_credentials(self) -> object:
            return session.get_credentials()

        @property
        def events(self) -> object:
            return session.events

    config = eks_kubeconfig(Endpointed(), "prod", "us-east-1", "123456789012").kubeconfig
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == created["endpoint"]
    assert cluster["certificate-authority-data"] == created["certificateAuthority"]["data"]
    token = config["users"][0]["user"]["token"]
    assert token.startswith("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(token.removeprefix("k8s-aws-v1.") + "==").decode()
    assert "Action=GetCallerIdentity" in url

    # A finding about a cluster named "prod" in another account never reaches this one.
    with pytest.raises(ClusterAccessError, match="not the finding's account 444455556666"):
        eks_kubeconfig(Endpointed(), "prod", "us-east-1", "444455556666")
