"""The admission objects k8s:block-image generates, and how it falls back when a cluster lacks them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)

from chalicelib.actions.base import ActionContext, NoParams, Status, Target
from chalicelib.actions.k8s.block_image import BlockImage, admission_policy, kyverno_policy, policy_name
from chalicelib.executors.evidence import FolderEvidence
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.settings import Settings

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments@sha256:" + "ab" * 32


class Kube:
    """Answers create_cluster_object per kind, as a cluster of a given version would."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.created: list[dict[str, Any]] = []

    def create_cluster_object(self, body: dict[str, Any]) -> str:
        self.created.append(body)
        return self.answers[body["kind"]]


def context(kube: Kube, tmp_path: Path | None = None, *, dry_run: bool = False) -> ActionContext:
    incident = Incident(
        id="inc-1", source="ecr", type="ECR:ImageScan", title="t", severity=Severity.CRITICAL, score=9.0,
        account="123456789012", region="us-east-1", resource_kind=ResourceKind.IMAGE, cluster="prod",
        images=(IMAGE,), details={"tags": "1.4,latest"},
    )  # fmt: skip
    evidence = FolderEvidence(tmp_path) if tmp_path else None
    return ActionContext(incident, Settings(), kube, datetime.now(UTC), dry_run, evidence)  # type: ignore[arg-type]


def run(kube: Kube, tmp_path: Path | None = None, *, dry_run: bool = False) -> Any:
    return BlockImage().run(context(kube, tmp_path, dry_run=dry_run), Target("image", IMAGE), NoParams())


def test_the_admission_policy_is_a_valid_v1_object_that_denies_digest_and_tags() -> None:
    policy, binding = admission_policy(IMAGE, ["1.4"], "inc-1")
    # The typed models reject unknown fields and wrong types: a round trip loses nothing.
    assert ValidatingAdmissionPolicy.from_dict(policy).to_dict() == policy
    assert ValidatingAdmissionPolicyBinding.from_dict(binding).to_dict() == binding
    expression = policy["spec"]["validations"][0]["expression"]
    for field in ("containers", "initContainers", "ephemeralContainers"):
        assert f"object.spec.{field}.exists(" in expression
    assert "c.image.endsWith('@sha256:" + "ab" * 32 + "')" in expression
    assert "c.image == '123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:1.4'" in expression
    assert binding["spec"] == {"policyName": policy_name(IMAGE), "validationActions": ["Deny"]}
    assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "eks-responder"


def test_the_kyverno_policy_denies_the_same_references() -> None:
    policy = kyverno_policy(IMAGE, ["1.4"], "inc-1")
    deny = policy["spec"]["rules"][0]["validate"]["deny"]["conditions"]["any"][0]
    assert deny["value"] == ["*@sha256:" + "ab" * 32, "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:1.4"]
    assert policy["spec"]["validationFailureAction"] == "Enforce"


def test_policy_names_are_valid_and_stable() -> None:
    assert policy_name(IMAGE) == "eks-responder-block-" + "ab" * 8
    assert len(policy_name(IMAGE)) <= 63


@pytest.mark.parametrize(
    ("answers", "status", "created", "words"),
    [
        ({"ValidatingAdmissionPolicy": "created", "ValidatingAdmissionPolicyBinding": "created"},
         Status.SUCCEEDED, 2, "ValidatingAdmissionPolicy"),
        ({"ValidatingAdmissionPolicy": "exists", "ValidatingAdmissionPolicyBinding": "exists"},
         Status.SKIPPED, 2, "already blocked"),
        ({"ValidatingAdmissionPolicy": "unsupported", "ValidatingAdmissionPolicyBinding": "unsupported",
          "ClusterPolicy": "created"}, Status.SUCCEEDED, 3, "Kyverno ClusterPolicy"),
        ({"ValidatingAdmissionPolicy": "unsupported", "ValidatingAdmissionPolicyBinding": "unsupported",
          "ClusterPolicy": "exists"}, Status.SKIPPED, 3, "already blocked by Kyverno"),
    ],
)  # fmt: skip
def test_native_policy_first_then_kyverno(answers: dict[str, str], status: Status, created: int, words: str) -> None:
    kube = Kube(answers)
    outcome = run(kube)
    assert outcome.status is status
    assert words in outcome.detail
    assert len(kube.created) == created


def test_a_cluster_with_neither_gets_the_manifests_for_a_human(tmp_path: Path) -> None:
    kube = Kube(dict.fromkeys(["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ClusterPolicy"],
                              "unsupported"))  # fmt: skip
    outcome = run(kube, tmp_path)
    assert outcome.status is Status.SKIPPED
    assert outcome.detail.startswith("NOT BLOCKED: cluster prod serves neither")
    folder = tmp_path / "inc-1" / "admission" / "prod" / policy_name(IMAGE)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert {f["file"] for f in manifest["files"]} == {"validating-admission-policy.json", "kyverno-clusterpolicy.json"}
    assert manifest["image"] == IMAGE


def test_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    kube = Kube(dict.fromkeys(["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ClusterPolicy"],
                              "unsupported"))  # fmt: skip
    outcome = run(kube, tmp_path, dry_run=True)
    assert "dry run: nothing written" in outcome.detail
    assert not any(tmp_path.iterdir())


def test_an_image_known_only_by_tag_is_matched_exactly() -> None:
    tagged = "public.ecr.aws/nginx/nginx:1.27"
    policy, _ = admission_policy(tagged, ["ignored"], "inc-1")
    assert "c.image == 'public.ecr.aws/nginx/nginx:1.27'" in policy["spec"]["validations"][0]["expression"]
    assert "endsWith" not in policy["spec"]["validations"][0]["expression"]
    assert policy_name(tagged) == policy_name(tagged).lower()
    assert policy_name(tagged) != policy_name("public.ecr.aws/nginx/nginx:1.28")


@pytest.mark.parametrize("image", ["evil') || true || ('", "nginx:*", "x@sha256:short", ""])
def test_a_reference_that_could_change_the_rule_is_refused(image: str) -> None:
    kube = Kube({})
    outcome = BlockImage().run(context(kube), Target("image", image), NoParams())
    assert outcome.status is Status.FAILED
    assert kube.created == []


def test_a_tag_from_the_event_that_could_change_the_rule_is_dropped() -> None:
    kube = Kube({"ValidatingAdmissionPolicy": "created", "ValidatingAdmissionPolicyBinding": "created"})
    ctx = context(kube)
    ctx = replace(ctx, incident=replace(ctx.incident, details={"tags": "1.4,x' || true || 'y"}))
    BlockImage().run(ctx, Target("image", IMAGE), NoParams())
    expression = kube.created[0]["spec"]["validations"][0]["expression"]
    assert "payments:1.4'" in expression
    assert "true" not in expression
