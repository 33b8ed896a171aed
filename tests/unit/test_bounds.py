"""The admission policy that bounds the responder's own identity, run by a real CEL evaluator."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)

from chalicelib.actions.k8s import block_image
from chalicelib.generate import bounds
from chalicelib.generate.permissions import RESPONDER_GROUP

POD = {"metadata": {"name": "api", "labels": {"app": "api"}},
       "spec": {"containers": [{"name": "main", "image": "nginx"}]}}  # fmt: skip
NODE = {"metadata": {"name": "n"}, "spec": {"providerID": "aws:///us-east-1a/i-0aaa", "podCIDR": "10.0.0.0/24"}}
ROLES = "- rolearn: a\n  groups: [x]\n- rolearn: b\n  groups: [y]"
AWS_AUTH = {"metadata": {"name": "aws-auth"}, "data": {"mapRoles": ROLES}}


def _true(expressions: list[str], resource: str, old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Every expression true, as the API server evaluates them (with Kubernetes' `split`); an
    error denies, as failurePolicy Fail does."""
    import celpy
    from celpy import celtypes
    from celpy.adapter import json_to_cel
    from celpy.evaluation import CELEvalError

    def split(text: Any, separator: Any) -> Any:
        return celtypes.ListType([celtypes.StringType(part) for part in str(text).split(str(separator))])

    env = celpy.Environment()
    bound = {
        "request": json_to_cel({"resource": {"resource": resource}, "subResource": "",
                                "userInfo": {"groups": [RESPONDER_GROUP]}}),
        "object": json_to_cel(new),
        "oldObject": json_to_cel(old or {}),
    }  # fmt: skip
    results = []
    for expression in expressions:
        try:
            results.append(env.program(env.compile(expression), functions={"split": split}).evaluate(bound))
        except CELEvalError:
            return False
    return all(isinstance(r, celtypes.BoolType) and bool(r) for r in results)


def _allowed(resource: str, old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """The ValidatingAdmissionPolicy's validations, all of them, as one policy judges every resource."""
    policy, _ = bounds.documents(RESPONDER_GROUP)
    return _true([v["expression"] for v in policy["spec"]["validations"]], resource, old, new)


def _kyverno_allowed(resource: str, old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """The Kyverno ClusterPolicy: only the rule that matches the resource's kind runs."""
    kinds = {b.kind: b.resource for b in bounds.BOUNDS}
    expressions = [
        e["expression"]
        for rule in bounds.kyverno_document(RESPONDER_GROUP)["spec"]["rules"]
        for e in rule["validate"]["cel"]["expressions"]
        if kinds[rule["match"]["any"][0]["resources"]["kinds"][0].rsplit("/", 1)[-1]] == resource
    ]
    assert expressions, resource
    return _true(expressions, resource, old, new)


def _block_objects(excluded: tuple[str, ...] = ("kube-system",)) -> dict[str, dict[str, Any]]:
    """What k8s:block-image creates, as it creates it."""
    from chalicelib.actions.k8s import block_image

    image = "111122223333.dkr.ecr.us-east-1.amazonaws.com/web@sha256:" + "ab" * 32
    return {"clusterpolicies": block_image.kyverno_policy(image, ["v1"], "inc-1", excluded)}


BLOCKS = {"metadata": {"name": block_image.IMAGE_BLOCKS, "namespace": block_image.IMAGE_BLOCKS_NAMESPACE}, "data": {}}
ENTRY = f"{block_image.POLICY_PREFIX}{'ab' * 8}"
LINES = "@sha256:" + "ab" * 32 + "\n111122223333.dkr.ecr.us-east-1.amazonaws.com/web:v1"


def _with(obj: dict[str, Any], *path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    target = changed
    for step in path[:-1]:
        target = target.setdefault(step, {})
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("resource", "old", "new", "allowed"),
    [
        ("pods", POD, _with(POD, "metadata", "labels", value={"eks-responder.io/quarantine": "true"}), True),
        ("pods", POD, _with(POD, "spec", "containers", value=[{"name": "main", "image": "evil"}]), False),
        # Annotations: its own and the autoscalers' keeping values; never another controller's.
        ("pods", POD, _with(POD, "metadata", "annotations", value={"eks-responder.io/incident-ids": "i",
                                                                   "karpenter.sh/do-not-disrupt": "true"}), True),
        ("pods", POD, _with(POD, "metadata", "annotations",
                            value={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}), True),
        ("pods", POD, _with(POD, "metadata", "annotations",
                            value={"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}), False),
        ("pods", POD, _with(POD, "metadata", "annotations", value={"karpenter.sh/do-not-disrupt": "false"}), False),
        ("pods", POD, _with(POD, "metadata", "annotations", value={"kubectl.kubernetes.io/restartedAt": "x"}), False),
        ("pods", _with(POD, "metadata", "annotations", value={"a.io/b": "c"}), POD, False),  # a foreign one removed
        ("pods", _with(POD, "metadata", "annotations", value={"a.io/b": "c"}),
         _with(POD, "metadata", "annotations", value={"a.io/b": "c", "karpenter.sh/do-not-disrupt": "true"}), True),
        ("pods", _with(POD, "metadata", "annotations", value={"karpenter.sh/do-not-disrupt": "true"}), POD, True),
        ("nodes", NODE, _with(NODE, "metadata", "annotations",
                              value={"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}), True),
        ("nodes", NODE, _with(NODE, "metadata", "annotations", value={"node.alpha.kubernetes.io/ttl": "0"}), False),
        ("nodes", NODE, _with(NODE, "spec", "unschedulable", value=True), True),
        ("nodes", NODE, _with(NODE, "spec", "taints", value=[{"key": "q", "effect": "NoSchedule"}]), True),
        ("nodes", NODE, _with(NODE, "spec", "providerID", value="aws:///x/i-0bbb"), False),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapRoles", value="- rolearn: a\n  groups: [x]"), True),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapRoles",
                                       value=ROLES + "\n- rolearn: c\n  groups: [system:masters]"), False),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapUsers", value="- userarn: z"), False),
        ("configmaps", {"metadata": {"name": "other"}}, {"metadata": {"name": "other"}}, False),
        ("configmaps", BLOCKS, _with(BLOCKS, "data", ENTRY, value=LINES), True),
        ("configmaps", _with(BLOCKS, "data", ENTRY, value=LINES), BLOCKS, True),
        ("configmaps", BLOCKS, _with(BLOCKS, "data", "everything", value=LINES), False),
        ("configmaps", BLOCKS, _with(BLOCKS, "data", ENTRY, value="@"), False),
        ("configmaps", BLOCKS, _with(BLOCKS, "data", ENTRY, value="*:*"), False),
        ("configmaps", BLOCKS, _with(BLOCKS, "data", ENTRY, value=LINES + "\n"), False),
        ("configmaps", BLOCKS, _with(BLOCKS, "metadata", "namespace", value="default"), False),
        ("configmaps", BLOCKS, {**BLOCKS, "data": {f"{block_image.POLICY_PREFIX}{i:016x}": "@sha256:" + "ab" * 32
                                                   for i in range(block_image.MAX_IMAGE_BLOCKS + 1)}}, False),
    ],
)  # fmt: skip
def test_the_responder_identity_is_bounded(
    resource: str, old: dict[str, Any] | None, new: dict[str, Any], allowed: bool
) -> None:
    assert _allowed(resource, old, new) is allowed


def _edited(resource: str, edit: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_block_objects()[resource])
    edit(obj)
    return obj


def _mutating(policy: dict[str, Any]) -> None:
    policy["spec"]["rules"].append({"name": "m", "match": policy["spec"]["rules"][0]["match"],
                                    "mutate": {"patchStrategicMerge": {"spec": {"hostPID": True}}}})  # fmt: skip


def _generating(policy: dict[str, Any]) -> None:
    policy["spec"]["rules"][0]["generate"] = {"kind": "ClusterRoleBinding", "name": "x", "data": {}}


def _reading(policy: dict[str, Any]) -> None:
    policy["spec"]["rules"][0]["context"] = [{"name": "s", "apiCall": {"urlPath": "/api/v1/secrets"}}]


def _matching_everything(policy: dict[str, Any]) -> None:
    policy["spec"]["rules"][0]["match"]["any"][0]["resources"]["kinds"] = ["*"]


def _sparing_nothing(policy: dict[str, Any]) -> None:
    for rule in policy["spec"]["rules"]:
        rule.pop("exclude", None)


@pytest.mark.parametrize(
    ("resource", "edit"),
    [
        ("clusterpolicies", _mutating),
        ("clusterpolicies", _generating),
        ("clusterpolicies", _reading),
        ("clusterpolicies", _matching_everything),
        ("clusterpolicies", _sparing_nothing),
        ("clusterpolicies", lambda p: p["metadata"].update(name="kyverno-admin")),
    ],
    ids=["mutate", "generate", "api-call", "every-kind", "kube-system", "foreign-name"],
)  # fmt: skip
def test_only_the_block_shapes_the_responder_generates_are_admitted(resource: str, edit: Any) -> None:
    generated = _block_objects()[resource]
    assert _allowed(resource, None, generated)
    assert _kyverno_allowed(resource, None, generated)
    assert not _allowed(resource, None, _edited(resource, edit))
    assert not _kyverno_allowed(resource, None, _edited(resource, edit))


@pytest.mark.parametrize(
    ("resource", "old", "new"),
    [
        ("pods", POD, _with(POD, "metadata", "labels", value={"q": "true"})),
        ("pods", POD, _with(POD, "spec", "containers", value=[{"name": "main", "image": "evil"}])),
        ("nodes", NODE, _with(NODE, "spec", "unschedulable", value=True)),
        ("nodes", NODE, _with(NODE, "spec", "providerID", value="aws:///x/i-0bbb")),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapRoles", value="- rolearn: a\n  groups: [x]")),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapRoles", value=ROLES + "\n- rolearn: c")),
        ("configmaps", BLOCKS, _with(BLOCKS, "data", ENTRY, value=LINES)),
        ("configmaps", BLOCKS, _with(BLOCKS, "data", ENTRY, value="*")),
    ],
)
def test_the_kyverno_form_decides_as_the_admission_policy_does(
    resource: str, old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert _kyverno_allowed(resource, old, new) is _allowed(resource, old, new)


def test_the_kyverno_form_has_a_rule_for_every_bound_and_applies_to_the_responder_group_only() -> None:
    policy = bounds.kyverno_document(RESPONDER_GROUP)
    assert policy["spec"]["validationFailureAction"] == "Enforce"
    assert len(policy["spec"]["rules"]) == len(bounds.BOUNDS)
    for rule in policy["spec"]["rules"]:
        (match,) = rule["match"]["any"]
        assert match["subjects"] == [{"kind": "Group", "name": RESPONDER_GROUP}]


def test_the_policy_applies_to_the_responder_group_only_and_is_a_valid_v1_object() -> None:
    policy, binding = bounds.documents(RESPONDER_GROUP)
    assert ValidatingAdmissionPolicy.from_dict(policy).to_dict() == policy
    assert ValidatingAdmissionPolicyBinding.from_dict(binding).to_dict() == binding
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == f"'{RESPONDER_GROUP}' in request.userInfo.groups"
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_no_bound_is_written_for_admission_policies() -> None:
    """A current API server runs no admission policy on admission policies: the responder is granted
    none of their writes instead (tests/integration/test_admission.py shows the 403)."""
    assert {b.group for b in bounds.BOUNDS} == {"", "kyverno.io"}
    from chalicelib import actions

    for action in actions.REGISTRY.values():
        for rule in (*action.rbac, *getattr(action, "release_rbac", ())):
            if rule.api_group == "admissionregistration.k8s.io":
                assert set(rule.verbs) <= {"get", "list"}, (action.name, rule)


@pytest.mark.parametrize("resource", ["clusterpolicies"])
def test_the_responder_deletes_only_its_own_block_policies(resource: str) -> None:
    own = {"metadata": {"name": "eks-responder-block-ab12"}}
    foreign = {"metadata": {"name": "kyverno-require-signed-images"}}
    for allowed in (_allowed, _kyverno_allowed):
        assert allowed(resource, own, None) is True  # type: ignore[arg-type]  # DELETE: no new object
        assert allowed(resource, foreign, None) is False  # type: ignore[arg-type]
