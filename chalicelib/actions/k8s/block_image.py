"""k8s:block-image: keep pods that use the image from being admitted again."""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, Outcome, Params, RBACRule, Status, Target, responder_marks
from chalicelib.bounds import NEVER_BLOCKED, POLICY_PREFIX

ADMISSION = "admissionregistration.k8s.io"
IMAGE_ANNOTATION = "eks-responder.io/image"


# Registry, path, tag and digest characters only: the reference goes into a CEL string literal and
# a Kyverno pattern, where a quote or a wildcard from an event would change the rule. The boundary
# checks the characters (identifiers.IMAGE); a block also needs a whole digest.
_REFERENCE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(@sha256:[a-f0-9]{64})?$", re.IGNORECASE)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def _digest(image: str) -> str | None:
    return image.rsplit("@", 1)[-1] if "@" in image else None


def policy_name(image: str) -> str:
    # A tag reference (GuardDuty names images as the pod spec did) gets a stable hash instead.
    digest = _digest(image) or "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    return f"eks-responder-block-{digest.removeprefix('sha256:')[:16]}"


def references(image: str, tags: list[str]) -> list[str]:
    """What a pod spec may say to run this image: the digest, or a tag of the same repository;
    an image known only by a tag is matched exactly as written."""
    digest = _digest(image)
    if digest is None:
        return [image]
    repository = image.rsplit("@", 1)[0]
    return [f"@{digest}", *(f"{repository}:{tag}" for tag in tags if tag)]


def _uses(field: str, tests: str) -> str:
    return f"(has(object.spec.{field}) && object.spec.{field}.exists(c, {tests}))"


def cel_expression(refs: list[str]) -> str:
    """True when the request may pass: a new pod uses none of the references, or the debug
    containers being added (the `ephemeralcontainers` subresource) use none of them.

    Only new pods and new containers are judged: an update of an existing pod's metadata (the
    responder's own quarantine labels on a pod that still runs the image) is never denied.
    """
    tests = " || ".join(f"c.image.endsWith('{ref}')" if ref.startswith("@") else f"c.image == '{ref}'" for ref in refs)
    pod = " || ".join(_uses(k, tests) for k in ("containers", "initContainers", "ephemeralContainers"))
    debug = _uses("ephemeralContainers", tests)
    return f"request.subResource == 'ephemeralcontainers' ? !{debug} : !({pod})"


def _namespace_selector(excluded: tuple[str, ...]) -> dict[str, Any]:
    # Every namespace carries kubernetes.io/metadata.name (Kubernetes 1.21+): the platform's own
    # namespaces are never blocked, so a block can never stop the cluster from healing itself.
    expression = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": sorted(excluded)}
    return {"matchExpressions": [expression]}


def admission_policy(
    image: str, tags: list[str], incident_id: str, excluded_namespaces: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy (Kubernetes 1.30+) and its binding that deny new pods (and new
    debug containers) using the image, outside the protected namespaces."""
    labels, annotations = responder_marks(incident_id)
    name = policy_name(image)
    meta = {"name": name, "labels": labels, "annotations": {**annotations, IMAGE_ANNOTATION: image}}
    policy = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": meta,
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]},
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["pods/ephemeralcontainers"],
                    },
                ]
            },
            "validations": [
                {
                    "expression": cel_expression(references(image, tags)),
                    "message": f"image {image} is blocked by eks-responder (incident {incident_id})",
                }
            ],
        },
    }
    spec: dict[str, Any] = {"policyName": name, "validationActions": ["Deny"]}
    if excluded_namespaces:
        spec["matchResources"] = {"namespaceSelector": _namespace_selector(excluded_namespaces)}
    binding = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels, "annotations": meta["annotations"]},
        "spec": spec,
    }
    return [policy, binding]


def kyverno_policy(
    image: str, tags: list[str], incident_id: str, excluded_namespaces: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The same rule for clusters that run Kyverno instead: new pods, and debug containers added
    to running ones; never an update of an existing pod."""
    labels, annotations = responder_marks(incident_id)
    patterns = [f"*{ref}" if ref.startswith("@") else ref for ref in references(image, tags)]
    message = f"image {image} is blocked by eks-responder"
    pods = {"conditions": {"any": [{"key": "{{ images.*.*.reference }}", "operator": "AnyIn", "value": patterns}]}}
    debug_images = "{{ request.object.spec.ephemeralContainers[].image || `[]` }}"
    debug = {"conditions": {"any": [{"key": debug_images, "operator": "AnyIn", "value": patterns}]}}
    exclude = {"exclude": {"any": [{"resources": {"namespaces": sorted(excluded_namespaces)}}]}}

    def rule(name: str, kinds: list[str], operation: str, deny: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "match": {"any": [{"resources": {"kinds": kinds, "operations": [operation]}}]},
        }
        if excluded_namespaces:
            body.update(exclude)
        body["validate"] = {"message": message, "deny": deny}
        return body

    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {
            "name": policy_name(image),
            "labels": labels,
            "annotations": {**annotations, IMAGE_ANNOTATION: image},
        },
        "spec": {
            "validationFailureAction": "Enforce",
            "background": False,
            "rules": [
                rule("block-image", ["Pod"], "CREATE", pods),
                rule("block-image-debug-containers", ["Pod/ephemeralcontainers"], "UPDATE", debug),
            ],
        },
    }


class BlockImage(Action):
    """Deny new pods (and new debug containers) that use the image, outside the protected
    namespaces: a ValidatingAdmissionPolicy where the cluster serves the
    API (Kubernetes 1.30+), else a Kyverno ClusterPolicy where Kyverno runs; otherwise both
    manifests are written to the evidence store for a human to apply. The image is matched by
    digest and by the repository tags the scan named (a pod spec only shows what it asks for).

    Example::

        - action: k8s:block-image
    """

    name = "k8s:block-image"
    contains = True
    target_kind = "image"
    summary = "deny new pods that use the image (ValidatingAdmissionPolicy, or a Kyverno policy)"
    rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule(ADMISSION, "validatingadmissionpolicies", ("create",)),
        RBACRule(ADMISSION, "validatingadmissionpolicybindings", ("create",)),
        RBACRule("kyverno.io", "clusterpolicies", ("create",)),
    )

    release_rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule(ADMISSION, "validatingadmissionpolicies", ("delete",)),
        RBACRule(ADMISSION, "validatingadmissionpolicybindings", ("delete",)),
        RBACRule("kyverno.io", "clusterpolicies", ("delete",)),
    )
    releases = "deletes the admission policy (and binding) or Kyverno policy it created"
    keeps = "pods refused meanwhile are not recreated (their controllers retry on their own)"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        created = [str(c) for c in prior.get("created") or []]
        api = {"ValidatingAdmissionPolicy": f"{ADMISSION}/v1", "ValidatingAdmissionPolicyBinding": f"{ADMISSION}/v1",
               "ClusterPolicy": "kyverno.io/v1"}  # fmt: skip
        done = []
        for item in sorted(created, key=lambda c: not c.startswith("ValidatingAdmissionPolicyBinding")):
            kind, _, name = item.partition("/")
            if kind not in api or not name.startswith(POLICY_PREFIX):
                continue  # only what this action creates, whatever the stored plan says
            if ctx.kube.delete_cluster_object(api[kind], kind, name):
                done.append(f"deleted {kind} {name}")
        if not done:
            return Outcome(Status.SKIPPED, f"image {target}: the block is gone already")
        return Outcome(Status.SUCCEEDED, f"image {target} admitted again: {'; '.join(done)}")

    def describe(self, target: Target, params: Params) -> str:
        return f"deny new pods that use image {target} (admission policy {policy_name(target.name)})"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        if not _REFERENCE.match(target.name):
            return Outcome(Status.FAILED, f"not blocked: {target.name!r} is not an image reference this action accepts")
        tags = [t for t in ctx.incident.details.get("tags", "").split(",") if _TAG.match(t)]
        name = policy_name(target.name)
        excluded = tuple(sorted({*ctx.settings.all_protected_namespaces, NEVER_BLOCKED}))
        native = admission_policy(target.name, tags, ctx.incident.id, excluded)
        outcomes = [ctx.kube.create_cluster_object(doc) for doc in native]
        if "unsupported" not in outcomes:
            if outcomes == ["exists", "exists"]:
                return Outcome(Status.SKIPPED, f"image {target} is already blocked by {name}")
            created = [f"ValidatingAdmissionPolicy/{name}", f"ValidatingAdmissionPolicyBinding/{name}"]
            return Outcome(
                Status.SUCCEEDED, f"blocked image {target}: ValidatingAdmissionPolicy {name}", {"created": created}
            )
        kyverno = kyverno_policy(target.name, tags, ctx.incident.id, excluded)
        result = ctx.kube.create_cluster_object(kyverno)
        if result == "exists":
            return Outcome(Status.SKIPPED, f"image {target} is already blocked by Kyverno ClusterPolicy {name}")
        if result == "created":
            message = f"blocked image {target}: Kyverno ClusterPolicy {name}"
            return Outcome(Status.SUCCEEDED, message, {"created": [f"ClusterPolicy/{name}"]})
        where = "dry run: nothing written" if ctx.dry_run else "no evidence store configured"
        if ctx.evidence is not None and not ctx.dry_run:
            files = {
                "validating-admission-policy.json": evidence_bundle.as_json(native),
                "kyverno-clusterpolicy.json": evidence_bundle.as_json(kyverno),
            }
            base = f"{evidence_bundle.incident_prefix(ctx.incident)}/admission/{ctx.incident.cluster}/{name}"
            where = evidence_bundle.write(ctx, base, files, {"image": target.name})
        return Outcome(
            Status.SKIPPED,
            f"NOT BLOCKED: cluster {ctx.incident.cluster} serves neither ValidatingAdmissionPolicy "
            f"(Kubernetes 1.30+) nor Kyverno: apply the generated policy by hand ({where})",
        )
