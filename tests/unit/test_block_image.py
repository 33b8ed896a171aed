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


def test_the_admission_policy_never_matches_updates_of_existing_pods() -> None:
    """Once an image is blocked, the responder must still be able to label and isolate the pods
    that run it: only pod creation and the debug-container subresource are matched."""
    policy, _ = admission_policy(IMAGE, ["1.4"], "inc-1")
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    matched = {(resource, op) for rule in rules for resource in rule["resources"] for op in rule["operations"]}
    assert matched == {("pods", "CREATE"), ("pods/ephemeralcontainers", "UPDATE")}


TAGGED = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:1.4"
CLEAN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:1.5"


def _evaluate(spec: dict[str, Any], sub_resource: str = "") -> bool:
    """The generated CEL, run by a real CEL evaluator with the variables the API server binds."""
    import celpy
    from celpy.adapter import json_to_cel

    policy, _ = admission_policy(IMAGE, ["1.4"], "inc-1")
    env = celpy.Environment()
    program = env.program(env.compile(policy["spec"]["validations"][0]["expression"]))
    bound = {"object": json_to_cel({"spec": spec}), "request": json_to_cel({"subResource": sub_resource})}
    return bool(program.evaluate(bound))


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        ({"containers": [{"name": "app", "image": IMAGE}]}, False),
        ({"containers": [{"name": "app", "image": TAGGED}]}, False),
        ({"containers": [{"name": "app", "image": "other.example/app@sha256:" + "ab" * 32}]}, False),
        ({"containers": [{"name": "app", "image": CLEAN}], "initContainers": [{"name": "i", "image": TAGGED}]}, False),
        ({"containers": [{"name": "app", "image": CLEAN}], "ephemeralContainers": [{"name": "d", "image": IMAGE}]},
         False),
        ({"containers": [{"name": "app", "image": CLEAN}]}, True),
        ({"containers": [{"name": "app", "image": "nginx"}], "initContainers": [{"name": "i", "image": "busybox"}]},
         True),
    ],
)  # fmt: skip
def test_new_pods_that_use_the_image_are_denied_by_the_cel(spec: dict[str, Any], allowed: bool) -> None:
    assert _evaluate(spec) is allowed


def test_a_debug_container_is_judged_by_its_own_image_not_the_pods() -> None:
    running = [{"name": "app", "image": IMAGE}]
    # Forensics on a pod that still runs the blocked image: a clean debug container is allowed.
    assert _evaluate({"containers": running, "ephemeralContainers": [{"name": "dbg", "image": "busybox"}]},
                     "ephemeralcontainers")  # fmt: skip
    # The blocked image smuggled in as a debug container is denied.
    assert not _evaluate(
        {"containers": [{"name": "app", "image": CLEAN}], "ephemeralContainers": [{"name": "x", "image": TAGGED}]},
        "ephemeralcontainers",
    )


def test_protected_namespaces_are_never_blocked() -> None:
    _, binding = admission_policy(IMAGE, [], "inc-1", ("kube-system", "eks-responder"))
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["eks-responder", "kube-system"]}
    ]
    assert ValidatingAdmissionPolicyBinding.from_dict(binding).to_dict() == binding
    kyverno = kyverno_policy(IMAGE, [], "inc-1", ("kube-system",))
    for rule in kyverno["spec"]["rules"]:
        assert rule["exclude"] == {"any": [{"resources": {"namespaces": ["kube-system"]}}]}


def test_the_action_excludes_every_protected_namespace() -> None:
    kube = Kube({"ValidatingAdmissionPolicy": "created", "ValidatingAdmissionPolicyBinding": "created"})
    run(kube)
    values = kube.created[1]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert set(values) == set(Settings().all_protected_namespaces)


def test_kube_system_is_spared_even_when_not_configured_as_protected() -> None:
    kube = Kube({"ValidatingAdmissionPolicy": "created", "ValidatingAdmissionPolicyBinding": "created"})
    ctx = context(kube)
    ctx = ActionContext(ctx.incident, Settings(protected_namespaces=("team-a",)), kube, ctx.now, False, None)  # type: ignore[arg-type]
    BlockImage().run(ctx, Target("image", IMAGE), NoParams())
    values = kube.created[1]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert {"kube-system", "team-a"} <= set(values)


def test_the_kyverno_policy_denies_the_same_references() -> None:
    policy = kyverno_policy(IMAGE, ["1.4"], "inc-1")
    deny = policy["spec"]["rules"][0]["validate"]["deny"]["conditions"]["any"][0]
    assert deny["value"] == ["*@sha256:" + "ab" * 32, "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:1.4"]
    assert policy["spec"]["validationFailureAction"] == "Enforce"
    # New pods, and debug containers added to running ones: never an update of an existing pod.
    matched = [r["match"]["any"][0]["resources"] for r in policy["spec"]["rules"]]
    assert matched == [
        {"kinds": ["Pod"], "operations": ["CREATE"]},
        {"kinds": ["Pod/ephemeralcontainers"], "operations": ["UPDATE"]},
    ]
    debug = policy["spec"]["rules"][1]["validate"]["deny"]["conditions"]["any"][0]
    assert debug["key"] == "{{ request.object.spec.ephemeralContainers[].image || `[]` }}"
    assert debug["value"] == deny["value"]


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
    folder = tmp_path / "123456789012" / "us-east-1" / "inc-1" / "admission" / "prod" / policy_name(IMAGE)
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
