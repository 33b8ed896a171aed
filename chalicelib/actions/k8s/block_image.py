"""k8s:block-image: keep pods that use the image from being admitted again."""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.executors.image_places import IAM as IMAGE_PLACES
from chalicelib.interfaces import IAMStatement, Outcome, RBACRule, Status, Target, responder_marks

ADMISSION = "admissionregistration.k8s.io"
# The names and limits the admission bounds (chalicelib.generate.bounds) hold every image block to.
POLICY_PREFIX = "eks-responder-block-"
IMAGE_BLOCKS = "eks-responder-image-blocks"  # the standing policy, its binding and the ConfigMap it reads
IMAGE_BLOCKS_NAMESPACE = "eks-responder"
MAX_IMAGE_BLOCKS = 256
NEVER_BLOCKED = "kube-system"  # every image block must leave the platform's namespace alone
LABELS = {"app.kubernetes.io/name": "eks-responder", "app.kubernetes.io/managed-by": "eks-responder"}
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


# The blocked references, one entry per block in one ConfigMap that a standing policy reads as its
# parameter: the responder never creates or deletes an admission policy (a current API server does not
# run admission policies on admission policies, so no bound could stop a stolen identity that may).
_CONTAINERS = (
    "has(request.subResource) && request.subResource == 'ephemeralcontainers' ? "
    "(has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers : []) : "
    "object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : []) + "
    "(has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers : [])"
)
_BLOCKED = (
    "variables.containers.filter(c, has(params.data) && params.data.exists(k, params.data[k].split('\\n')"
    ".exists(r, r.startsWith('@') ? c.image.endsWith(r) : c.image == r)))"
)


def image_blocks_documents(excluded_namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
    """The standing policy an administrator applies once (deploy/rbac/image-blocks.yaml): it denies new
    pods, and debug containers added to running ones, whose image an entry of the ConfigMap names;
    never in the protected namespaces, never an update of an existing pod (containment patches)."""
    labels = dict(LABELS)
    policy = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": IMAGE_BLOCKS, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]},
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                     "resources": ["pods/ephemeralcontainers"]},
                ]
            },
            "variables": [{"name": "containers", "expression": _CONTAINERS},
                          {"name": "blocked", "expression": _BLOCKED}],
            "validations": [{
                "expression": "size(variables.blocked) == 0",
                "messageExpression": "'image ' + variables.blocked[0].image + ' is blocked by eks-responder "
                                     f"(ConfigMap {IMAGE_BLOCKS_NAMESPACE}/{IMAGE_BLOCKS})'",
                "reason": "Forbidden",
            }],
        },
    }  # fmt: skip
    binding = {
        "apiVersion": f"{ADMISSION}/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": IMAGE_BLOCKS, "labels": labels},
        "spec": {
            "policyName": IMAGE_BLOCKS,
            "validationActions": ["Deny"],
            # A missing ConfigMap blocks nothing rather than every pod of the cluster.
            "paramRef": {"name": IMAGE_BLOCKS, "namespace": IMAGE_BLOCKS_NAMESPACE,
                         "parameterNotFoundAction": "Allow"},
            "matchResources": {"namespaceSelector": _namespace_selector(excluded_namespaces)},
        },
    }  # fmt: skip
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": IMAGE_BLOCKS, "namespace": IMAGE_BLOCKS_NAMESPACE, "labels": labels},
        "data": {},
    }
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": IMAGE_BLOCKS_NAMESPACE, "labels": labels},
    }
    return [namespace, policy, binding, config_map]


def _namespace_selector(excluded: tuple[str, ...]) -> dict[str, Any]:
    # Every namespace carries kubernetes.io/metadata.name (Kubernetes 1.21+): the platform's own
    # namespaces are never blocked, so a block can never stop the cluster from healing itself.
    expression = {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": sorted({*excluded, NEVER_BLOCKED}),
    }
    return {"matchExpressions": [expression]}


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
    namespaces: an entry in the ConfigMap the standing ValidatingAdmissionPolicy
    `eks-responder-image-blocks` reads (Kubernetes 1.30+, applied once from
    deploy/rbac/image-blocks.yaml), else a Kyverno ClusterPolicy where Kyverno runs; otherwise both
    manifests are written to the evidence store for a human to apply. The image is matched by
    digest and by the repository tags the scan named (a pod spec only shows what it asks for).
    A digest is judged by its content: before it is blocked, the registry's repositories that
    PROTECTED_IMAGES or an accepted risk of the incident's CVE cover are looked up
    (`ecr:DescribeRepositories`, `ecr:DescribeImages`), and a digest one of them holds is never
    blocked; neither is one whose places cannot be read.

    Example::

        - action: k8s:block-image
    """

    name = "k8s:block-image"
    contains = True
    target_kind = "image"
    summary = "deny new pods that use the image (the standing admission policy's list, or a Kyverno policy)"
    rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule("", "configmaps", ("get", "patch"), (IMAGE_BLOCKS,)),
        RBACRule(ADMISSION, "validatingadmissionpolicies", ("get",), (IMAGE_BLOCKS,)),
        RBACRule(ADMISSION, "validatingadmissionpolicybindings", ("get",), (IMAGE_BLOCKS,)),
        RBACRule("kyverno.io", "clusterpolicies", ("create",)),
    )

    release_rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule("", "configmaps", ("get", "patch"), (IMAGE_BLOCKS,)),
        RBACRule("kyverno.io", "clusterpolicies", ("delete",)),
    )
    # Where the digest lives is looked up before it is blocked (guardrails.image_block).
    iam: ClassVar[tuple[IAMStatement, ...]] = IMAGE_PLACES
    reads_back = "the image-blocks entry and the admission policy and binding that read it"
    releases = "removes its entry from the image-blocks ConfigMap, or deletes the Kyverno policy it created"
    keeps = "pods refused meanwhile are not recreated (their controllers retry on their own)"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        entry = str(prior.get("entry") or "")
        if entry:
            if not entry.startswith(POLICY_PREFIX):
                return Outcome(Status.SKIPPED, f"image {target}: {entry!r} is no entry this action writes")
            blocks = ctx.kube.get_config_map(IMAGE_BLOCKS_NAMESPACE, IMAGE_BLOCKS)
            if blocks is None or entry not in (blocks.get("data") or {}):
                return Outcome(Status.SKIPPED, f"image {target}: the block is gone already")
            previous = prior.get("previous")  # an entry of the same image that was there before: put back
            ctx.kube.replace_config_map_data(IMAGE_BLOCKS_NAMESPACE, IMAGE_BLOCKS, {entry: previous},
                                             str(blocks["metadata"]["resourceVersion"]))  # fmt: skip
            if previous is not None:
                return Outcome(Status.SUCCEEDED, f"image {target}: entry {entry} of {_WHERE} put back as it was")
            return Outcome(Status.SUCCEEDED, f"image {target} admitted again: removed {entry} from {_WHERE}")
        done = []
        for item in [str(c) for c in prior.get("created") or []]:
            kind, _, name = item.partition("/")
            if kind != "ClusterPolicy" or not name.startswith(POLICY_PREFIX):
                continue  # only what this action creates, whatever the stored plan says
            if ctx.kube.delete_cluster_object("kyverno.io/v1", kind, name):
                done.append(f"deleted {kind} {name}")
        if not done:
            return Outcome(Status.SKIPPED, f"image {target}: the block is gone already")
        return Outcome(Status.SUCCEEDED, f"image {target} admitted again: {'; '.join(done)}")

    def describe(self, target: Target, params: Params) -> str:
        return f"deny new pods that use image {target} (entry {policy_name(target.name)} of {_WHERE})"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        if not _REFERENCE.match(target.name):
            return Outcome(Status.FAILED, f"not blocked: {target.name!r} is not an image reference this action accepts")
        tags = [t for t in ctx.incident.details.get("tags", "").split(",") if _TAG.match(t)]
        name = policy_name(target.name)
        refs = references(target.name, tags)
        blocks = ctx.kube.get_config_map(IMAGE_BLOCKS_NAMESPACE, IMAGE_BLOCKS)
        if blocks is not None:
            return self._listed(ctx, target, name, refs, blocks)
        excluded = tuple(sorted({*ctx.settings.all_protected_namespaces, NEVER_BLOCKED}))
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
                "image-blocks.json": evidence_bundle.as_json(image_blocks_documents(excluded)),
                "image-blocks-entry.json": evidence_bundle.as_json({name: "\n".join(refs)}),
                "kyverno-clusterpolicy.json": evidence_bundle.as_json(kyverno),
            }
            base = f"{evidence_bundle.incident_prefix(ctx.incident)}/admission/{ctx.incident.cluster}/{name}"
            where = evidence_bundle.write(ctx, base, files, {"image": target.name})
        return Outcome(
            Status.SKIPPED,
            f"NOT BLOCKED: cluster {ctx.incident.cluster} has neither the image-blocks policy "
            f"(deploy/rbac/image-blocks.yaml, Kubernetes 1.30+) nor Kyverno: apply the generated policy ({where})",
        )

    def _listed(
        self, ctx: ActionContext, target: Target, name: str, refs: list[str], blocks: dict[str, Any]
    ) -> Outcome:
        """Add the entry, then say whether the standing policy that reads it is in force."""
        entries = dict(blocks.get("data") or {})
        previous = entries.get(name)
        # An entry of the same image (another incident's, other tags) keeps its references too.
        value = "\n".join(r for r in dict.fromkeys([*(previous or "").split("\n"), *refs]) if r)
        if previous == value:
            return Outcome(Status.SKIPPED, f"image {target} is already blocked: entry {name} of {_WHERE}")
        if len(entries) >= MAX_IMAGE_BLOCKS and name not in entries:
            return Outcome(Status.FAILED, f"NOT BLOCKED: {_WHERE} holds {len(entries)} entries, the most it may")
        ctx.kube.replace_config_map_data(IMAGE_BLOCKS_NAMESPACE, IMAGE_BLOCKS, {name: value},
                                         str(blocks["metadata"]["resourceVersion"]))  # fmt: skip
        prior = {"entry": name, "previous": previous}
        standing = ctx.kube.admission_policy_in_force(IMAGE_BLOCKS)
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, f"would block image {target}: entry {name} of {_WHERE}", prior)
        if standing is not True:
            why = standing or "unknown"
            return Outcome(Status.FAILED, f"NOT ENFORCED: entry {name} added to {_WHERE}, but {why}", prior)
        return Outcome(
            Status.SUCCEEDED, f"blocked image {target}: entry {name} of {_WHERE}, read by "
            f"ValidatingAdmissionPolicy {IMAGE_BLOCKS} (bound, Deny); verified", prior,
        )  # fmt: skip


_WHERE = f"ConfigMap {IMAGE_BLOCKS_NAMESPACE}/{IMAGE_BLOCKS}"
