"""eks:delete-pod-identity-association against EKS's and IAM's request shapes (moto serves neither)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.stub import Stubber

from chalicelib.actions import get
from chalicelib.actions.base import ActionContext, NoParams
from chalicelib.executors.identity import IdentityGateway
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.interfaces import Status, Target
from chalicelib.settings import Settings

ROLE = "arn:aws:iam::123456789012:role/payments-app"
ASSOCIATION = {"clusterName": "prod", "namespace": "payments", "serviceAccount": "web", "roleArn": ROLE,
               "associationArn": "arn:aws:eks:us-east-1:123456789012:podidentityassociation/prod/a-1",
               "associationId": "a-1", "tags": {"team": "payments"}}  # fmt: skip


class _Kube:
    def __init__(self, annotations: dict[str, str] | None = None) -> None:
        self.annotations = annotations or {}

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": namespace}, "spec": {"serviceAccountName": "web"}}

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": namespace, "annotations": self.annotations}}


def _client(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def _context(kube: _Kube, gateway: IdentityGateway) -> ActionContext:
    incident = Incident(id="inc-1", source="guardduty", type="Execution:Runtime/ReverseShell", title="t",
                        severity=Severity.HIGH, score=8.0, account="123456789012", region="us-east-1",
                        resource_kind=ResourceKind.POD, cluster="prod")  # fmt: skip
    return ActionContext(incident, Settings(), kube, datetime.now(UTC), False, identity=gateway)  # type: ignore[arg-type]


def test_the_association_is_deleted_and_kept_in_the_result() -> None:
    eks, stub = _client("eks")
    where = {"clusterName": "prod", "namespace": "payments", "serviceAccount": "web"}
    stub.add_response("list_pod_identity_associations", {"associations": [
        {k: ASSOCIATION[k] for k in ("clusterName", "namespace", "serviceAccount", "associationArn", "associationId")}
    ]}, where)  # fmt: skip
    stub.add_response("describe_pod_identity_association", {"association": ASSOCIATION},
                      {"clusterName": "prod", "associationId": "a-1"})  # fmt: skip
    stub.add_response("delete_pod_identity_association", {"association": ASSOCIATION},
                      {"clusterName": "prod", "associationId": "a-1"})  # fmt: skip
    stub.add_response("list_pod_identity_associations", {"associations": []}, where)  # read back: gone
    with stub:
        outcome = get("eks:delete-pod-identity-association").run(
            _context(_Kube(), IdentityGateway(None, None, eks, dry_run=False)), Target("pod", "web-1", "payments"),
            NoParams())  # fmt: skip
    stub.assert_no_pending_responses()
    assert outcome.status is Status.SUCCEEDED
    assert f"deleted Pod Identity association a-1 (role {ROLE})" in outcome.detail
    assert outcome.detail.endswith("(read back)")
    assert outcome.prior == {"associations": [{k: ASSOCIATION[k] for k in (
        "associationId", "roleArn", "namespace", "serviceAccount", "clusterName", "tags")}]}  # fmt: skip


def test_an_association_still_listed_after_its_deletion_fails_the_step() -> None:
    eks, stub = _client("eks")
    where = {"clusterName": "prod", "namespace": "payments", "serviceAccount": "web"}
    listed = {"associations": [
        {k: ASSOCIATION[k] for k in ("clusterName", "namespace", "serviceAccount", "associationArn", "associationId")}
    ]}  # fmt: skip
    one = {"clusterName": "prod", "associationId": "a-1"}
    stub.add_response("list_pod_identity_associations", listed, where)
    stub.add_response("describe_pod_identity_association", {"association": ASSOCIATION}, one)
    stub.add_response("delete_pod_identity_association", {"association": ASSOCIATION}, one)
    stub.add_response("list_pod_identity_associations", listed, where)  # the endpoint answered, nothing changed
    stub.add_response("describe_pod_identity_association", {"association": ASSOCIATION}, one)
    with stub:
        outcome = get("eks:delete-pod-identity-association").run(
            _context(_Kube(), IdentityGateway(None, None, eks, dry_run=False)), Target("pod", "web-1", "payments"),
            NoParams())  # fmt: skip
    assert outcome.status is Status.FAILED
    assert outcome.detail.endswith("does not hold: read back association(s) a-1 still listed")
    assert outcome.prior is not None  # kept: a release can still put back whatever did change


def test_irsa_names_the_trust_lines_and_changes_nothing() -> None:
    eks, eks_stub = _client("eks")
    iam, iam_stub = _client("iam")
    eks_stub.add_client_error("list_pod_identity_associations", "ResourceNotFoundException", http_status_code=404)
    issuer = "oidc.eks.us-east-1.amazonaws.com/id/X"
    condition = {"StringLike": {f"{issuer}:sub": "system:serviceaccount:payments:*"}}
    statement = {"Sid": "Web", "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition,
                 "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"}}  # fmt: skip
    trust = {"Version": "2012-10-17", "Statement": [statement]}
    role = {"Role": {"RoleName": "payments-app", "Arn": ROLE, "Path": "/", "RoleId": "AROAEXAMPLE0000000000",
                     "CreateDate": datetime.now(UTC), "AssumeRolePolicyDocument": json.dumps(trust)}}  # fmt: skip
    iam_stub.add_response("get_role", role, {"RoleName": "payments-app"})
    with eks_stub, iam_stub:
        gateway = IdentityGateway(iam, None, eks, dry_run=False)
        outcome = get("eks:delete-pod-identity-association").run(
            _context(_Kube({"eks.amazonaws.com/role-arn": ROLE}), gateway), Target("pod", "web-1", "payments"),
            NoParams())  # fmt: skip
    assert outcome.status is Status.SKIPPED
    assert f"statement Web: StringLike {issuer}:sub = ['system:serviceaccount:payments:*']" in outcome.detail
    assert "not changed" in outcome.detail
