"""An image scan finds the pods that run the digest, labels them, and blocks the image."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from lightkube.generic_resource import create_global_resource
from lightkube.resources.core_v1 import ConfigMap, Pod
from lightkube.types import PatchType

from chalicelib.actions.k8s.block_image import IMAGE_BLOCKS, IMAGE_BLOCKS_NAMESPACE, kyverno_policy, policy_name
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.response.report import Mode
from chalicelib.settings import Settings
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

ClusterPolicy = create_global_resource("kyverno.io", "v1", "ClusterPolicy", "clusterpolicies")
REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments"
PROTECTED = Settings().all_protected_namespaces


def scan(digest: str) -> Incident:
    return Incident(
        id=f"ecr-scan-payments@{digest}",
        source="ecr",
        type="ECR:ImageScan",
        title="ECR scan of payments: CRITICAL 1",
        severity=Severity.CRITICAL,
        score=9.0,
        account="123456789012",
        region="us-east-1",
        resource_kind=ResourceKind.IMAGE,
        images=(f"{REPOSITORY}@{digest}",),
        details={"repository": "payments", "digest": digest, "tags": "1.4"},
    )


def run_pod(cluster: Cluster, name: str, image: str, namespace: str, image_id: str | None = None) -> None:
    meta = {"name": name, "namespace": namespace, "labels": {"app": name}}
    cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                    "spec": {"containers": [{"name": "main", "image": image}]}})  # fmt: skip
    if image_id:  # what the kubelet reports once the tag was pulled
        status = {"status": {"containerStatuses": [{
            "name": "main", "image": image, "imageID": image_id, "ready": True, "restartCount": 0,
            "state": {"running": {}},
        }]}}  # fmt: skip
        cluster.admin.patch(Pod.Status, name, status, namespace=namespace, patch_type=PatchType.MERGE)


def image_blocks(cluster: Cluster) -> dict[str, str]:
    stored = cluster.admin.get(ConfigMap, IMAGE_BLOCKS, namespace=IMAGE_BLOCKS_NAMESPACE)
    return dict(stored.data or {})


def labels(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    return dict(cluster.admin.get(Pod, name, namespace=namespace).metadata.labels or {})


def _three_pods(cluster: Cluster, digest: str) -> str:
    other = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    run_pod(cluster, "by-digest", f"{REPOSITORY}@{digest}", cluster.namespace)
    run_pod(cluster, "by-tag", f"{REPOSITORY}:1.4", other, image_id=f"docker-pullable://{REPOSITORY}@{digest}")
    run_pod(cluster, "bystander", f"{REPOSITORY}:1.3", cluster.namespace, image_id=f"{REPOSITORY}@sha256:{'0' * 64}")
    return other


def test_a_critical_scan_labels_every_pod_running_the_digest_and_blocks_the_image(
    cluster: Cluster, make_responder: Any
) -> None:
    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    other = _three_pods(cluster, digest)
    responder = make_responder(clusters=("local",))
    report = responder.handle(scan(digest), Mode.LIVE)

    assert report.rule == "block-critical-image"
    labelled = sorted(r.target for r in report.actions if r.action == "k8s:label-pod")
    assert labelled == sorted([f"local:{cluster.namespace}/by-digest", f"local:{other}/by-tag"])
    assert all(r.status.value == "succeeded" for r in report.actions), [r.detail for r in report.actions]
    assert any("2 pod(s) run" in note and "by-tag" in note for note in report.notes)
    assert labels(cluster, cluster.namespace, "by-digest").get("eks-responder.io/under-investigation") == "true"
    assert labels(cluster, other, "by-tag").get("eks-responder.io/under-investigation") == "true"
    assert "eks-responder.io/under-investigation" not in labels(cluster, cluster.namespace, "bystander")

    # The standing policy's list gets the digest and the tag the scan named (tests/integration/test_admission.py
    # shows the server then refusing them).
    (block,) = [r for r in report.actions if r.action == "k8s:block-image"]
    assert "ValidatingAdmissionPolicy eks-responder-image-blocks (bound, Deny); verified" in block.detail
    name = policy_name(f"{REPOSITORY}@{digest}")
    assert image_blocks(cluster) == {name: f"@{digest}\n{REPOSITORY}:1.4"}

    again = responder.handle(scan(digest), Mode.LIVE)
    (block_again,) = [r for r in again.actions if r.action == "k8s:block-image"]
    assert (block_again.status.value, "already blocked" in block_again.detail) == ("skipped", True)


def test_without_the_standing_policy_a_kyverno_policy_blocks_the_image(
    cluster: Cluster, make_responder: Any, kyverno_api: None, without_image_blocks: None
) -> None:
    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    run_pod(cluster, "by-digest", f"{REPOSITORY}@{digest}", cluster.namespace)
    responder = make_responder(clusters=("local",))
    report = responder.handle(scan(digest), Mode.LIVE)
    (block,) = [r for r in report.actions if r.action == "k8s:block-image"]
    assert "Kyverno ClusterPolicy" in block.detail, block.detail
    name = policy_name(f"{REPOSITORY}@{digest}")
    stored = cluster.admin.get(ClusterPolicy, name)
    sent = kyverno_policy(f"{REPOSITORY}@{digest}", ["1.4"], report.incident.id, PROTECTED)
    spec = stored.to_dict()["spec"]  # type: ignore[no-untyped-call]
    assert spec == sent["spec"]  # nothing pruned: the server knows every field written
    assert stored.metadata.labels["app.kubernetes.io/managed-by"] == "eks-responder"
    assert all(rule["exclude"]["any"][0]["resources"]["namespaces"] == sorted(PROTECTED) for rule in spec["rules"])
    again = responder.handle(scan(digest), Mode.LIVE)
    (block_again,) = [r for r in again.actions if r.action == "k8s:block-image"]
    assert (block_again.status.value, "already blocked" in block_again.detail) == ("skipped", True)
    cluster.admin.delete(ClusterPolicy, name)


def test_without_a_policy_api_the_manifests_go_to_the_evidence_store(
    cluster: Cluster, make_responder: Any, tmp_path: Path, without_kyverno_api: None, without_image_blocks: None
) -> None:
    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    run_pod(cluster, "by-digest", f"{REPOSITORY}@{digest}", cluster.namespace)
    report = make_responder(clusters=("local",)).handle(scan(digest), Mode.LIVE)
    # Both APIs answer a real 404: nothing changes in the cluster, a human gets the policies.
    (block,) = [r for r in report.actions if r.action == "k8s:block-image"]
    assert block.status.value == "skipped"
    assert block.detail.startswith("NOT BLOCKED")
    found = report.incident
    folder = tmp_path / "evidence" / found.account / found.region / found.id / "admission" / "local"
    folder /= policy_name(f"{REPOSITORY}@{digest}")
    assert str(folder / "MANIFEST.json") in block.detail
    written = json.loads((folder / "kyverno-clusterpolicy.json").read_text())
    assert written == kyverno_policy(f"{REPOSITORY}@{digest}", ["1.4"], report.incident.id, PROTECTED)
    native = json.loads((folder / "image-blocks.json").read_text())
    assert [doc["kind"] for doc in native] == ["Namespace", "ValidatingAdmissionPolicy",
                                               "ValidatingAdmissionPolicyBinding", "ConfigMap"]  # fmt: skip
    entry = json.loads((folder / "image-blocks-entry.json").read_text())
    assert entry == {policy_name(f"{REPOSITORY}@{digest}"): f"@{digest}\n{REPOSITORY}:1.4"}


def test_an_image_scan_without_configured_clusters_changes_nothing(cluster: Cluster, make_responder: Any) -> None:
    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    run_pod(cluster, "by-digest", f"{REPOSITORY}@{digest}", cluster.namespace)
    report = make_responder().handle(scan(digest), Mode.LIVE)
    assert {r.status.value for r in report.actions} == {"skipped"}
    assert all("CLUSTERS" in r.detail for r in report.actions)
    assert "eks-responder.io/under-investigation" not in labels(cluster, cluster.namespace, "by-digest")
