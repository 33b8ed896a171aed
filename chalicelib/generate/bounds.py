"""Admission policies that bound what the responder's own identity can change in a cluster.

RBAC grants verbs on resources; it cannot say "patch a pod's labels, never its containers". A
stolen responder identity with `pods patch` could change an image, one with `configmaps patch`
on `aws-auth` could map any role to `system:masters`, and one that may create admission
policies could write one that denies every request, or a Kyverno policy that mutates, generates
or reads through Kyverno's own service account. Bound to requests from the responder's group
only, the bounds let it:

- change the labels of pods and nodes, and of their annotations only its own (`eks-responder.io/...`) and
  the three that keep an autoscaler off a node under investigation, never a pod's spec;
- change `spec.unschedulable` and taints of nodes, no other node field;
- remove `aws-auth` entries, never add or change one (every line it keeps was already there);
- write only well-formed entries into the image-blocks ConfigMap (a bounded number of them, each
  a list of image references), which the standing image-blocks policy reads;
- create only Kyverno policies named `eks-responder-block-*` that only validate new pods and debug
  containers (no mutate, generate, image verification or external context), never in `kube-system`.

It never creates or deletes an admission policy or binding: its ClusterRole grants only `get` on the
image-blocks policy. That matters because a current API server does not run admission policies on
admission policies or their bindings, so no bound could stop an identity that may create them.

One set of CEL bodies, two forms: a ValidatingAdmissionPolicy (Kubernetes 1.30+, every EKS
version in support) and a Kyverno ClusterPolicy with CEL rules (Kyverno 1.11+) for clusters that
standardise on Kyverno. Generated into deploy/rbac/; the integration tests apply the policy to a
current kube-apiserver and are refused by it, and the unit tests run every body with a CEL library
(given Kubernetes' `split` string function) where no server is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.actions.k8s.block_image import (
    IMAGE_BLOCKS,
    IMAGE_BLOCKS_NAMESPACE,
    LABELS,
    MAX_IMAGE_BLOCKS,
    NEVER_BLOCKED,
    POLICY_PREFIX,
)
from chalicelib.actions.k8s.compute import AUTOSCALER_ANNOTATIONS

ADMISSION = "admissionregistration.k8s.io"
NAME = "eks-responder-bounds"
# What k8s:block-image writes: an entry named for the digest, each line a digest or a tagged reference.
_ENTRY_NAME = f"^{POLICY_PREFIX}[0-9a-f]{{16}}$"
_ENTRY_LINE = "^(@sha256:[0-9a-f]{64}|[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})$"
NODE_FIELDS = ("podCIDR", "podCIDRs", "providerID", "configSource", "externalID")
OWN_PREFIX = "eks-responder.io/"


@dataclass(frozen=True)
class Bound:
    """One restriction: on UPDATE or CREATE of `resource` (`kind` for Kyverno), `body` must hold."""

    resource: str
    group: str
    kind: str
    operations: tuple[str, ...]
    body: str
    message: str


def _same(field: str) -> str:
    return (
        f"(('{field}' in object.spec) == ('{field}' in oldObject.spec)) && "
        f"(!('{field}' in object.spec) || object.spec['{field}'] == oldObject.spec['{field}'])"
    )


def _annotations_only() -> str:
    """Every annotation added, changed or removed is the responder's own (`eks-responder.io/...`) or
    one that keeps an autoscaler off a node under investigation: no other controller's settings."""
    keep = "{" + ", ".join(f"'{k}': '{v}'" for k, v in AUTOSCALER_ANNOTATIONS.items()) + "}"
    new, old = "object.metadata.annotations", "oldObject.metadata.annotations"
    # Set: its own, or an autoscaler's with the value that keeps the node; removed: its own or an autoscaler's.
    set_ours = f"(k.startsWith('{OWN_PREFIX}') || (k in {keep} && {new}[k] == {keep}[k]))"
    removed_ours = f"(k.startsWith('{OWN_PREFIX}') || k in {keep})"
    return (
        f"(!has({new}) || {new}.all(k, {set_ours} || (has({old}) && k in {old} && {old}[k] == {new}[k]))) && "
        f"(!has({old}) || {old}.all(k, {removed_ours} || (has({new}) && k in {new})))"
    )


def _kept_lines(key: str) -> str:
    """Every line of the new value was a line of the old one: entries only go away."""
    return (
        f"(!has(object.data) || !('{key}' in object.data) || (has(oldObject.data) && '{key}' in oldObject.data && "
        f"object.data['{key}'].split('\\n').all(line, line in oldObject.data['{key}'].split('\\n'))))"
    )


def _image_blocks() -> str:
    return (
        f"object.metadata.name == '{IMAGE_BLOCKS}' && object.metadata.namespace == '{IMAGE_BLOCKS_NAMESPACE}' && "
        f"(!has(object.data) || (size(object.data) <= {MAX_IMAGE_BLOCKS} && object.data.all(k, "
        f"k.matches('{_ENTRY_NAME}') && size(object.data[k]) <= 4096 && "
        f"object.data[k].split('\\n').all(line, line.matches('{_ENTRY_LINE}')))))"
    )


def _only(value: str, keys: tuple[str, ...]) -> str:
    return f"{value}.all(k, k in {list(keys)})"


_OWN_NAME = f"object.metadata.name.startsWith('{POLICY_PREFIX}')"
_KYVERNO_RULE = (
    _only("r", ("name", "match", "exclude", "validate"))
    + " && "
    + _only("r.validate", ("message", "deny"))
    + " && r.match.any.all(m, "
    + _only("m", ("resources",))
    + " && m.resources.kinds.all(k, k in ['Pod', 'Pod/ephemeralcontainers']))"
    + f" && has(r.exclude) && r.exclude.any.exists(e, has(e.resources) && '{NEVER_BLOCKED}' in e.resources.namespaces)"
)

BOUNDS: tuple[Bound, ...] = (
    Bound("pods", "", "Pod", ("UPDATE",), f"object.spec == oldObject.spec && {_annotations_only()}",
          "the responder may change only the labels of a pod, and only its own and the autoscalers' annotations"),
    Bound("nodes", "", "Node", ("UPDATE",), " && ".join([*(_same(f) for f in NODE_FIELDS), _annotations_only()]),
          "the responder may change only spec.unschedulable, the taints and the labels of a node, and only its "
          "own and the autoscalers' annotations"),
    Bound("configmaps", "", "ConfigMap", ("UPDATE",),
          f"(object.metadata.name == 'aws-auth' && {_kept_lines('mapRoles')} && {_kept_lines('mapUsers')})"
          f" || ({_image_blocks()})",
          f"the responder may only remove aws-auth entries, and write only image references into {IMAGE_BLOCKS}"),
    Bound("clusterpolicies", "kyverno.io", "ClusterPolicy", ("CREATE", "UPDATE", "DELETE"),
          f"{_OWN_NAME} && "
          + _only("object.spec", ("validationFailureAction", "background", "rules"))
          + f" && object.spec.rules.all(r, {_KYVERNO_RULE})",
          f"the responder creates only its own {POLICY_PREFIX}* Kyverno policies, validate-only, "
          f"never in {NEVER_BLOCKED}"),
)  # fmt: skip


def body(bound: Bound) -> str:
    """The bound's condition; where it may delete (its own block policies, on release), only its own."""
    if "DELETE" not in bound.operations:
        return bound.body
    return f"object == null ? oldObject.metadata.name.startsWith('{POLICY_PREFIX}') : ({bound.body})"


def expression(bound: Bound) -> str:
    """The body as a ValidatingAdmissionPolicy validation: one policy matches every resource."""
    guard = f"request.resource.resource != '{bound.resource}'"
    if bound.resource == "pods":  # the subresources it may touch are not matched; the pod itself is judged
        guard += " || (has(request.subResource) && request.subResource != '')"
    return f"{guard} || ({body(bound)})"


def documents(group: str) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy and its binding, for requests made by members of `group`."""
    rules: list[dict[str, Any]] = []
    for bound in BOUNDS:
        rule = {"apiGroups": [bound.group], "apiVersions": ["v1"], "operations": list(bound.operations)}
        same = next((r for r in rules if {k: v for k, v in r.items() if k != "resources"} == rule), None)
        if same:
            same["resources"].append(bound.resource)
        else:
            rules.append({**rule, "resources": [bound.resource]})
    policy = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": NAME, "labels": LABELS},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "matchConditions": [{"name": "the-responder", "expression": f"'{group}' in request.userInfo.groups"}],
            "validations": [{"expression": expression(b), "message": b.message} for b in BOUNDS],
        },
    }
    binding = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": NAME, "labels": LABELS},
        "spec": {"policyName": NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def kyverno_document(group: str) -> dict[str, Any]:
    """The same bounds as one Kyverno ClusterPolicy with a CEL rule per resource (Kyverno 1.11+)."""

    def rule(bound: Bound) -> dict[str, Any]:
        kind = f"{bound.group}/v1/{bound.kind}" if bound.group else bound.kind
        match = {"resources": {"kinds": [kind], "operations": list(bound.operations)},
                 "subjects": [{"kind": "Group", "name": group}]}  # fmt: skip
        return {
            "name": f"bound-{bound.resource}",
            "match": {"any": [match]},
            "validate": {"cel": {"expressions": [{"expression": body(bound), "message": bound.message}]}},
        }

    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": NAME, "labels": LABELS},
        "spec": {"validationFailureAction": "Enforce", "background": False, "rules": [rule(b) for b in BOUNDS]},
    }
