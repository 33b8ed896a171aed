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

from chalicelib.actions.base import ActionContext, NoParams
from chalicelib.actions.k8s.block_image import (
    IMAGE_BLOCKS,
    IMAGE_BLOCKS_NAMESPACE,
    MAX_IMAGE_BLOCKS,
    BlockImage,
    image_blocks_documents,
    kyverno_policy,
    policy_name,
    references,
)
from chalicelib.executors.evidence import FolderEvidence
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.interfaces import Status, Target
from chalicelib.settings import Settings

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments@sha256:" + "ab" * 32


class Kube:
    """A cluster with or without the standing image-blocks policy, and with or without Kyverno."""

    def __init__(
        self, answers: dict[str, str] | None = None, blocks: dict[str, str] | None = None, standing: bool | str = True
    ) -> None:
        self.answers = answers or {}
        self.blocks = blocks  # the ConfigMap's data; None: the standing policy was never applied
        self.standing = standing
        self.created: list[dict[str, Any]] = []
        self.writes: list[dict[str, str | None]] = []

    def create_cluster_object(self, body: dict[str, Any]) -> str:
        self.created.append(body)
        return self.answers[body["kind"]]

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        assert (namespace, name) == (IMAGE_BLOCKS_NAMESPACE, IMAGE_BLOCKS)
        if self.blocks is None:
            return None
        return {"metadata": {"resourceVersion": str(len(self.writes))}, "data": dict(self.blocks)}

    def replace_config_map_data(
        self, namespace: str, name: str, data: dict[str, str | None], resource_version: str
    ) -> None:
        assert self.blocks is not None
        assert resource_version == str(len(self.writes))
        self.writes.append(data)
        for key, value in data.items():
            if value is None:
                self.blocks.pop(key, None)
            else:
                self.blocks[key] = value

    def admission_policy_in_force(self, name: str) -> bool | str:
        assert name == IMAGE_BLOCKS
        return self.standing


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


def _documents() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    namespace, policy, binding, config_map = image_blocks_documents(("kube-system", "eks-responder"))
    return namespace, policy, binding, config_map


def test_the_standing_policy_is_a_valid_v1_object_that_reads_its_config_map() -> None:
    namespace, policy, binding, config_map = _documents()
    # The typed models reject unknown fields and wrong types: a round trip loses nothing.
    assert ValidatingAdmissionPolicy.from_dict(policy).to_dict() == policy
    assert ValidatingAdmissionPolicyBinding.from_dict(binding).to_dict() == binding
    assert policy["spec"]["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    assert binding["spec"]["paramRef"] == {"name": IMAGE_BLOCKS, "namespace": IMAGE_BLOCKS_NAMESPACE,
                                           "parameterNotFoundAction": "Allow"}  # fmt: skip
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert (config_map["metadata"]["namespace"], config_map["data"]) == (IMAGE_BLOCKS_NAMESPACE, {})
    assert namespace["metadata"]["name"] == IMAGE_BLOCKS_NAMESPACE
    assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "eks-responder"


def test_the_standing_policy_never_matches_updates_of_existing_pods() -> None:
    """Once an image is blocked, the responder must still be able to label and isolate the pods
    that run it: only pod creation and the debug-container subresource are matched."""
    rules = _documents()[1]["spec"]["matchConstraints"]["resourceRules"]
    matched = {(resource, op) for rule in rules for resource in rule["resources"] for op in rule["operations"]}
    assert matched == {("pods", "CREATE"), ("pods/ephemeralcontainers", "UPDATE")}


TAGGED = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:1.4"
CLEAN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:1.5"
ENTRIES = {policy_name(IMAGE): "\n".join(references(IMAGE, ["1.4"]))}


def _evaluate(spec: dict[str, Any], sub_resource: str | None = None, data: dict[str, str] | None = ENTRIES) -> bool:
    """The standing policy's CEL, run by a CEL library with what the API server binds: its variables
    in order, the ConfigMap as `params`, Kubernetes' `split`. Integration tests run it on a server."""
    import celpy
    from celpy import celtypes
    from celpy.adapter import json_to_cel

    def split(text: Any, separator: Any) -> Any:
        return celtypes.ListType([celtypes.StringType(part) for part in str(text).split(str(separator))])

    policy = _documents()[1]
    env = celpy.Environment()
    request = {"subResource": sub_resource} if sub_resource else {}  # the server omits an empty one
    bound: dict[str, Any] = {"object": json_to_cel({"spec": spec}), "request": json_to_cel(request),
                             "params": json_to_cel({"data": data} if data is not None else {})}  # fmt: skip
    variables: dict[str, Any] = {}
    for variable in policy["spec"]["variables"]:
        program = env.program(env.compile(variable["expression"]), functions={"split": split})
        variables[variable["name"]] = program.evaluate({**bound, "variables": celtypes.MapType(variables)})
    (validation,) = policy["spec"]["validations"]
    program = env.program(env.compile(validation["expression"]), functions={"split": split})
    return bool(program.evaluate({**bound, "variables": celtypes.MapType(variables)}))


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
def test_new_pods_that_use_a_listed_image_are_denied_by_the_cel(spec: dict[str, Any], allowed: bool) -> None:
    assert _evaluate(spec) is allowed


def test_an_empty_or_missing_list_blocks_nothing() -> None:
    spec = {"containers": [{"name": "app", "image": IMAGE}]}
    assert _evaluate(spec, data={})
    assert _evaluate(spec, data=None)


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
    selector = _documents()[2]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["eks-responder", "kube-system"]}
    ]
    # kube-system even when not named.
    (_, _, binding, _) = image_blocks_documents(("team-a",))
    values = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert values == ["kube-system", "team-a"]
    kyverno = kyverno_policy(IMAGE, [], "inc-1", ("kube-system",))
    for rule in kyverno["spec"]["rules"]:
        assert rule["exclude"] == {"any": [{"resources": {"namespaces": ["kube-system"]}}]}


def test_a_kyverno_block_excludes_every_protected_namespace() -> None:
    kube = Kube({"ClusterPolicy": "created"})
    ctx = context(kube)
    ctx = ActionContext(ctx.incident, Settings(protected_namespaces=("team-a",)), kube, ctx.now, False, None)  # type: ignore[arg-type]
    BlockImage().run(ctx, Target("image", IMAGE), NoParams())
    (policy,) = kube.created
    assert {"kube-system", "team-a"} <= set(policy["spec"]["rules"][0]["exclude"]["any"][0]["resources"]["namespaces"])


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


def test_the_entry_goes_into_the_list_and_the_standing_policy_is_checked() -> None:
    kube = Kube(blocks={})
    outcome = run(kube)
    assert outcome.status is Status.SUCCEEDED
    assert "read by ValidatingAdmissionPolicy eks-responder-image-blocks (bound, Deny); verified" in outcome.detail
    assert kube.blocks == {policy_name(IMAGE): f"@sha256:{'ab' * 32}\n{TAGGED}\n{TAGGED.replace('1.4', 'latest')}"}
    assert outcome.prior == {"entry": policy_name(IMAGE), "previous": None}
    again = run(kube)
    assert (again.status, "already blocked" in again.detail) == (Status.SKIPPED, True)
    assert kube.created == []  # no admission object is ever created for it


def test_a_list_without_its_policy_is_said_not_to_be_enforced() -> None:
    kube = Kube(blocks={}, standing="the cluster has no ValidatingAdmissionPolicyBinding eks-responder-image-blocks")
    outcome = run(kube)
    assert outcome.status is Status.FAILED
    assert outcome.detail.startswith("NOT ENFORCED")
    assert "no ValidatingAdmissionPolicyBinding" in outcome.detail
    assert outcome.prior["entry"] == policy_name(IMAGE)  # written: a release takes it out again


def test_a_full_list_refuses_a_new_entry() -> None:
    full = {f"eks-responder-block-{i:016x}": "@sha256:" + "cd" * 32 for i in range(MAX_IMAGE_BLOCKS)}
    kube = Kube(blocks=dict(full))
    outcome = run(kube)
    assert (outcome.status, "NOT BLOCKED" in outcome.detail) == (Status.FAILED, True)
    assert kube.blocks == full


def test_an_entry_already_there_keeps_its_references_and_is_put_back_on_release() -> None:
    earlier = "@sha256:" + "ab" * 32 + "\n" + TAGGED.replace("1.4", "1.3")
    kube = Kube(blocks={policy_name(IMAGE): earlier})
    outcome = run(kube)
    assert outcome.status is Status.SUCCEEDED
    assert kube.blocks is not None
    assert kube.blocks[policy_name(IMAGE)].split("\n")[:2] == earlier.split("\n")
    assert TAGGED in kube.blocks[policy_name(IMAGE)]
    released = BlockImage().release(context(kube), Target("image", IMAGE), outcome.prior, force=False)
    assert released.status is Status.SUCCEEDED
    assert kube.blocks == {policy_name(IMAGE): earlier}


def test_a_release_removes_only_its_own_entry() -> None:
    other = {"eks-responder-block-" + "cd" * 8: "@sha256:" + "cd" * 32}
    kube = Kube(blocks=dict(other))
    outcome = run(kube)
    released = BlockImage().release(context(kube), Target("image", IMAGE), outcome.prior, force=False)
    assert released.status is Status.SUCCEEDED
    assert kube.blocks == other
    forged = BlockImage().release(context(kube), Target("image", IMAGE), {"entry": "aws-auth"}, force=False)
    assert forged.status is Status.SKIPPED
    assert kube.blocks == other


@pytest.mark.parametrize(
    ("answers", "status", "words"),
    [
        ({"ClusterPolicy": "created"}, Status.SUCCEEDED, "Kyverno ClusterPolicy"),
        ({"ClusterPolicy": "exists"}, Status.SKIPPED, "already blocked by Kyverno"),
    ],
)
def test_without_the_standing_policy_a_kyverno_policy(answers: dict[str, str], status: Status, words: str) -> None:
    kube = Kube(answers)
    outcome = run(kube)
    assert outcome.status is status
    assert words in outcome.detail
    assert [c["kind"] for c in kube.created] == ["ClusterPolicy"]


def test_a_cluster_with_neither_gets_the_manifests_for_a_human(tmp_path: Path) -> None:
    kube = Kube({"ClusterPolicy": "unsupported"})
    outcome = run(kube, tmp_path)
    assert outcome.status is Status.SKIPPED
    assert outcome.detail.startswith("NOT BLOCKED: cluster prod has neither")
    folder = tmp_path / "123456789012" / "us-east-1" / "inc-1" / "admission" / "prod" / policy_name(IMAGE)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert {f["file"] for f in manifest["files"]} == {
        "image-blocks.json", "image-blocks-entry.json", "kyverno-clusterpolicy.json"}  # fmt: skip
    assert manifest["image"] == IMAGE


def test_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    kube = Kube({"ClusterPolicy": "unsupported"})
    outcome = run(kube, tmp_path, dry_run=True)
    assert "dry run: nothing written" in outcome.detail
    assert not any(tmp_path.iterdir())


def test_an_image_known_only_by_tag_is_matched_exactly() -> None:
    tagged = "public.ecr.aws/nginx/nginx:1.27"
    assert references(tagged, ["ignored"]) == [tagged]
    assert policy_name(tagged) == policy_name(tagged).lower()
    assert policy_name(tagged) != policy_name("public.ecr.aws/nginx/nginx:1.28")
    assert not _evaluate({"containers": [{"name": "a", "image": tagged}]}, data={policy_name(tagged): tagged})
    assert _evaluate({"containers": [{"name": "a", "image": tagged + "-x"}]}, data={policy_name(tagged): tagged})


@pytest.mark.parametrize("image", ["evil') || true || ('", "nginx:*", "x@sha256:short", ""])
def test_a_reference_that_could_change_the_rule_is_refused(image: str) -> None:
    kube = Kube({}, blocks={})
    outcome = BlockImage().run(context(kube), Target("image", image), NoParams())
    assert outcome.status is Status.FAILED
    assert (kube.created, kube.writes) == ([], [])


def test_a_tag_from_the_event_that_could_change_the_rule_is_dropped() -> None:
    kube = Kube(blocks={})
    ctx = context(kube)
    ctx = replace(ctx, incident=replace(ctx.incident, details={"tags": "1.4,x' || true || 'y"}))
    BlockImage().run(ctx, Target("image", IMAGE), NoParams())
    assert kube.blocks == {policy_name(IMAGE): f"@sha256:{'ab' * 32}\n{TAGGED}"}
