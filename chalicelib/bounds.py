"""An admission policy that bounds what the responder's own identity can change in a cluster.

RBAC grants verbs on resources; it cannot say "patch a pod's labels, never its containers". A
stolen responder identity with `pods patch` could change an image, and one with `configmaps patch`
on `aws-auth` could map any role to `system:masters`. This ValidatingAdmissionPolicy (Kubernetes
1.30+), bound to requests from the responder's group only, lets it:

- change the labels and annotations of pods, never their spec;
- change `spec.unschedulable` and taints of nodes, no other node field;
- remove `aws-auth` entries, never add or change one (every line it keeps was already there);
- create only the admission objects it generates: `eks-responder-block-*` policies, and bindings
  of those that deny.

Generated into deploy/rbac/responder-bounds.yaml; the tests run every expression with a real CEL
evaluator (given Kubernetes' `split` string function) against allowed and refused requests.
"""

from __future__ import annotations

from typing import Any

ADMISSION = "admissionregistration.k8s.io"
NAME = "eks-responder-bounds"
POLICY_PREFIX = "eks-responder-block-"
NODE_FIELDS = ("podCIDR", "podCIDRs", "providerID", "configSource", "externalID")


def _same(field: str) -> str:
    return (
        f"(('{field}' in object.spec) == ('{field}' in oldObject.spec)) && "
        f"(!('{field}' in object.spec) || object.spec['{field}'] == oldObject.spec['{field}'])"
    )


def _kept_lines(key: str) -> str:
    """Every line of the new value was a line of the old one: entries only go away."""
    return (
        f"(!has(object.data) || !('{key}' in object.data) || (has(oldObject.data) && '{key}' in oldObject.data && "
        f"object.data['{key}'].split('\\n').all(line, line in oldObject.data['{key}'].split('\\n'))))"
    )


VALIDATIONS: tuple[tuple[str, str], ...] = (
    (
        "request.resource.resource != 'pods' || request.subResource != '' || object.spec == oldObject.spec",
        "the responder may change only the labels and annotations of a pod",
    ),
    (
        "request.resource.resource != 'nodes' || (" + " && ".join(_same(f) for f in NODE_FIELDS) + ")",
        "the responder may change only spec.unschedulable and the taints of a node",
    ),
    (
        "request.resource.resource != 'configmaps' || (object.metadata.name == 'aws-auth' && "
        + _kept_lines("mapRoles")
        + " && "
        + _kept_lines("mapUsers")
        + ")",
        "the responder may only remove aws-auth entries",
    ),
    (
        "!(request.resource.resource in ['validatingadmissionpolicies', 'validatingadmissionpolicybindings']) || "
        f"object.metadata.name.startsWith('{POLICY_PREFIX}')",
        f"the responder creates only its own {POLICY_PREFIX}* admission objects",
    ),
    (
        "request.resource.resource != 'validatingadmissionpolicybindings' || "
        "(object.spec.validationActions == ['Deny'] && object.spec.policyName == object.metadata.name)",
        "the responder binds only its own block policies, to deny",
    ),
)


def documents(group: str) -> list[dict[str, Any]]:
    """The policy and its binding, for requests made by members of `group`."""
    labels = {"app.kubernetes.io/name": "eks-responder", "app.kubernetes.io/managed-by": "eks-responder"}
    rules = [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
         "resources": ["pods", "nodes", "configmaps"]},
        {"apiGroups": [ADMISSION], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
         "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"]},
    ]  # fmt: skip
    policy = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": NAME, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "matchConditions": [{"name": "the-responder", "expression": f"'{group}' in request.userInfo.groups"}],
            "validations": [{"expression": expression, "message": message} for expression, message in VALIDATIONS],
        },
    }
    binding = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": NAME, "labels": labels},
        "spec": {"policyName": NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]
