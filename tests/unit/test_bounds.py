"""The admission policy that bounds the responder's own identity, run by a real CEL evaluator."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)

from chalicelib import bounds
from chalicelib.permissions import RESPONDER_GROUP

POD = {"metadata": {"name": "api", "labels": {"app": "api"}},
       "spec": {"containers": [{"name": "main", "image": "nginx"}]}}  # fmt: skip
NODE = {"metadata": {"name": "n"}, "spec": {"providerID": "aws:///us-east-1a/i-0aaa", "podCIDR": "10.0.0.0/24"}}
ROLES = "- rolearn: a\n  groups: [x]\n- rolearn: b\n  groups: [y]"
AWS_AUTH = {"metadata": {"name": "aws-auth"}, "data": {"mapRoles": ROLES}}


def _allowed(resource: str, old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Every validation true, as the API server evaluates them (with Kubernetes' `split`)."""
    import celpy
    from celpy import celtypes
    from celpy.adapter import json_to_cel

    def split(text: Any, separator: Any) -> Any:
        return celtypes.ListType([celtypes.StringType(part) for part in str(text).split(str(separator))])

    env = celpy.Environment()
    bound = {
        "request": json_to_cel({"resource": {"resource": resource}, "subResource": "",
                                "userInfo": {"groups": [RESPONDER_GROUP]}}),
        "object": json_to_cel(new),
        "oldObject": json_to_cel(old or {}),
    }  # fmt: skip
    results = [env.program(env.compile(e), functions={"split": split}).evaluate(bound) for e, _ in bounds.VALIDATIONS]
    return all(isinstance(r, celtypes.BoolType) and bool(r) for r in results)  # an error denies (failurePolicy Fail)


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
        ("nodes", NODE, _with(NODE, "spec", "unschedulable", value=True), True),
        ("nodes", NODE, _with(NODE, "spec", "taints", value=[{"key": "q", "effect": "NoSchedule"}]), True),
        ("nodes", NODE, _with(NODE, "spec", "providerID", value="aws:///x/i-0bbb"), False),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapRoles", value="- rolearn: a\n  groups: [x]"), True),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapRoles",
                                       value=ROLES + "\n- rolearn: c\n  groups: [system:masters]"), False),
        ("configmaps", AWS_AUTH, _with(AWS_AUTH, "data", "mapUsers", value="- userarn: z"), False),
        ("configmaps", {"metadata": {"name": "other"}}, {"metadata": {"name": "other"}}, False),
        ("validatingadmissionpolicies", None, {"metadata": {"name": "eks-responder-block-ab12"}}, True),
        ("validatingadmissionpolicies", None, {"metadata": {"name": "deny-everything"}}, False),
        ("validatingadmissionpolicybindings", None, {"metadata": {"name": "eks-responder-block-ab12"},
         "spec": {"policyName": "eks-responder-block-ab12", "validationActions": ["Deny"]}}, True),
        ("validatingadmissionpolicybindings", None, {"metadata": {"name": "eks-responder-block-ab12"},
         "spec": {"policyName": "someone-elses", "validationActions": ["Deny"]}}, False),
    ],
)  # fmt: skip
def test_the_responder_identity_is_bounded(
    resource: str, old: dict[str, Any] | None, new: dict[str, Any], allowed: bool
) -> None:
    assert _allowed(resource, old, new) is allowed


def test_the_policy_applies_to_the_responder_group_only_and_is_a_valid_v1_object() -> None:
    policy, binding = bounds.documents(RESPONDER_GROUP)
    assert ValidatingAdmissionPolicy.from_dict(policy).to_dict() == policy
    assert ValidatingAdmissionPolicyBinding.from_dict(binding).to_dict() == binding
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == f"'{RESPONDER_GROUP}' in request.userInfo.groups"
    assert binding["spec"]["validationActions"] == ["Deny"]
