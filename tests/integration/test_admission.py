"""Admission enforced by the local API server itself: the responder's bounds and k8s:block-image.

Every integration test runs with the generated bounds applied (conftest.enforce_bounds), so the
playbooks' own writes are admitted throughout the suite; here the server refuses, with the bound's
own message, each write a stolen responder identity could try, and a blocked digest is kept out.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)
from lightkube.resources.core_v1 import ConfigMap, Node, Pod
from lightkube.types import PatchType

from chalicelib.actions.k8s import block_image
from chalicelib.actions.k8s.block_image import IMAGE_BLOCKS, IMAGE_BLOCKS_NAMESPACE, POLICY_PREFIX, policy_name
from chalicelib.entry import decisions
from chalicelib.executors.plans import PlanStore
from chalicelib.generate import bounds
from chalicelib.generate.permissions import RESPONDER_GROUP
from chalicelib.response.plan import Plan
from chalicelib.response.report import Mode
from devstack.stack import LocalStack
from tests.integration.conftest import INCIDENTS_TABLE as TABLE
from tests.integration.conftest import Cluster, enforce_bounds, incident, rules_with
from tests.integration.test_block_image import REPOSITORY, labels, run_pod, scan

pytestmark = pytest.mark.integration

ROLES = yaml.safe_dump([{"rolearn": "arn:aws:iam::123456789012:role/ops", "username": "ops", "groups": ["ops"]}])
MERGE = PatchType.MERGE


@pytest.fixture
def responder_client(local_stack: LocalStack) -> Iterator[Client]:
    with Client(KubeConfig.from_file(local_stack.responder_kubeconfig), field_manager="eks-responder") as client:
        yield client


def _attempt(call: Callable[[], Any]) -> str | None:
    """None when the server admitted the request, else its message."""
    try:
        call()
    except ApiError as exc:
        return str(exc.status.message)
    return None


def _answers_until(
    call: Callable[[], Any], done: Callable[[str | None], bool], timeout: float = 30.0
) -> list[str | None]:
    """The server's answers to the call, tried until `done` holds for one (or the time is up): a
    policy change reaches the admission plugin's informer a moment after the write."""
    answers = [_attempt(call)]
    deadline = time.monotonic() + timeout
    while not done(answers[-1]) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition, not waiting for time to pass
        answers.append(_attempt(call))
    return answers


def _refused_by_bounds(call: Callable[[], Any], resource: str) -> None:
    message = _attempt(call)
    assert message is not None, "admitted"
    assert bounds.NAME in message, message  # the server's admission, not RBAC or validation
    assert next(b.message for b in bounds.BOUNDS if b.resource == resource) in message, message


def _aws_auth(cluster: Cluster) -> None:
    with contextlib.suppress(ApiError):
        cluster.admin.delete(ConfigMap, "aws-auth", namespace="kube-system")
    meta = {"name": "aws-auth", "namespace": "kube-system"}
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"mapRoles": ROLES}})


def _entries(data: dict[str, str]) -> Callable[[Client, Cluster, str], Any]:
    def write(client: Client, _: Cluster, __: str) -> Any:
        return client.patch(ConfigMap, IMAGE_BLOCKS, {"data": data}, namespace=IMAGE_BLOCKS_NAMESPACE,
                            patch_type=MERGE)  # fmt: skip

    return write


ENTRY = f"{POLICY_PREFIX}{'ab' * 8}"
DIGEST_LINE = f"@sha256:{'ab' * 32}"

# Each write the bounds exist for, tried as the responder identity, and the bound that refuses it.
OUT_OF_BOUNDS: dict[str, tuple[str, Callable[[Client, Cluster, str], Any]]] = {
    "pod-image-change": ("pods", lambda c, cl, pod: c.patch(
        Pod, pod, {"spec": {"containers": [{"name": "main", "image": "attacker/miner:1"}]}},
        namespace=cl.namespace)),
    "pod-deadline": ("pods", lambda c, cl, pod: c.patch(
        Pod, pod, {"spec": {"activeDeadlineSeconds": 1}}, namespace=cl.namespace, patch_type=MERGE)),
    # Give a node without one the instance of another: the responder would isolate that instance.
    "node-provider-id": ("nodes", lambda c, cl, _: c.patch(
        Node, "node-b", {"spec": {"providerID": "aws:///us-east-1a/i-0aaa"}}, patch_type=MERGE)),
    "node-pod-cidr": ("nodes", lambda c, cl, _: c.patch(
        Node, "node-a", {"spec": {"podCIDR": "10.9.0.0/24", "podCIDRs": ["10.9.0.0/24"]}}, patch_type=MERGE)),
    # Another controller's settings: a restart of the workload, a node's heartbeat, an autoscaler let loose.
    "pod-foreign-annotation": ("pods", lambda c, cl, pod: c.patch(
        Pod, pod, {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}, namespace=cl.namespace,
        patch_type=MERGE)),
    "pod-made-evictable": ("pods", lambda c, cl, pod: c.patch(
        Pod, pod, {"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}}},
        namespace=cl.namespace, patch_type=MERGE)),
    "node-foreign-annotation": ("nodes", lambda c, cl, _: c.patch(
        Node, "node-a", {"metadata": {"annotations": {"node.alpha.kubernetes.io/ttl": "0"}}}, patch_type=MERGE)),
    "aws-auth-addition": ("configmaps", lambda c, cl, _: c.patch(
        ConfigMap, "aws-auth", {"data": {"mapRoles": ROLES + "- rolearn: arn:aws:iam::999999999999:role/x\n"
                                         "  username: x\n  groups: [system:masters]\n"}},
        namespace="kube-system", patch_type=MERGE)),
    "aws-auth-changed-line": ("configmaps", lambda c, cl, _: c.patch(
        ConfigMap, "aws-auth", {"data": {"mapRoles": ROLES.replace("- ops", "- system:masters")}},
        namespace="kube-system", patch_type=MERGE)),
    "image-block-not-named-for-a-digest": ("configmaps", _entries({"everything": DIGEST_LINE})),
    "image-block-matching-every-image": ("configmaps", _entries({ENTRY: "@"})),
    "image-block-with-a-wildcard": ("configmaps", _entries({ENTRY: "*:*"})),
    "image-blocks-beyond-the-cap": ("configmaps", _entries({
        f"{POLICY_PREFIX}{i:016x}": DIGEST_LINE for i in range(block_image.MAX_IMAGE_BLOCKS + 1)})),
    "kyverno-policy-judging-configmaps": ("clusterpolicies", lambda c, cl, _: c.create(from_dict(_judging()))),
    "kyverno-policy-in-kube-system": ("clusterpolicies", lambda c, cl, _: c.create(from_dict(_everywhere()))),
    "kyverno-policy-of-another-name": ("clusterpolicies", lambda c, cl, _: c.create(from_dict(
        {**_kyverno(), "metadata": {"name": "allow-everything"}}))),
}  # fmt: skip


def _kyverno() -> dict[str, Any]:
    image = f"{REPOSITORY}@sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    return block_image.kyverno_policy(image, [], "inc-1", ("kube-system",))


def _judging() -> dict[str, Any]:
    policy = _kyverno()
    policy["spec"]["rules"][0]["match"]["any"][0]["resources"]["kinds"] = ["ConfigMap"]
    return policy


def _everywhere() -> dict[str, Any]:
    policy = _kyverno()
    for rule in policy["spec"]["rules"]:
        del rule["exclude"]
    return policy


@pytest.mark.parametrize("case", sorted(OUT_OF_BOUNDS))
def test_the_server_refuses_every_write_outside_the_bounds(
    cluster: Cluster, responder_client: Client, kyverno_api: None, case: str
) -> None:
    resource, call = OUT_OF_BOUNDS[case]
    cluster.node("node-a", "i-0aaa")
    cluster.node("node-b")
    pod = cluster.pod("api", "node-a")
    _aws_auth(cluster)
    _refused_by_bounds(lambda: call(responder_client, cluster, pod), resource)
    # Nothing changed.
    assert cluster.admin.get(Pod, pod, namespace=cluster.namespace).spec.containers[0].image.endswith("nginx:1.27")
    assert cluster.admin.get(Node, "node-a").spec.providerID == "aws:///us-east-1a/i-0aaa"
    assert not cluster.admin.get(Node, "node-b").spec.providerID
    assert cluster.admin.get(ConfigMap, "aws-auth", namespace="kube-system").data == {"mapRoles": ROLES}
    assert not cluster.admin.get(ConfigMap, IMAGE_BLOCKS, namespace=IMAGE_BLOCKS_NAMESPACE).data


# What the bounds cannot guard (a current API server runs no admission policy on admission policies
# or their bindings) the responder is not granted at all: RBAC refuses it.
ADMISSION_WRITES: dict[str, Callable[[Client], Any]] = {
    "create-a-policy": lambda c: c.create(from_dict({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": f"{POLICY_PREFIX}0000000000000000"},
        "spec": {"matchConstraints": {"resourceRules": []}, "validations": [{"expression": "true"}]}})),
    "delete-the-bounds": lambda c: c.delete(ValidatingAdmissionPolicy, bounds.NAME),
    "delete-the-bounds-binding": lambda c: c.delete(ValidatingAdmissionPolicyBinding, bounds.NAME),
    "delete-the-image-blocks-binding": lambda c: c.delete(ValidatingAdmissionPolicyBinding, IMAGE_BLOCKS),
    "warn-only-image-blocks": lambda c: c.patch(ValidatingAdmissionPolicyBinding, IMAGE_BLOCKS,
                                                {"spec": {"validationActions": ["Warn"]}}, patch_type=MERGE),
    "create-a-binding": lambda c: c.create(from_dict({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": f"{POLICY_PREFIX}0000000000000000"},
        "spec": {"policyName": bounds.NAME, "validationActions": ["Audit"]}})),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ADMISSION_WRITES))
def test_the_responder_may_not_touch_admission_policies(cluster: Cluster, responder_client: Client, case: str) -> None:
    with pytest.raises(ApiError) as err:
        ADMISSION_WRITES[case](responder_client)
    assert err.value.status.code == 403, err.value.status.message
    assert cluster.admin.get(ValidatingAdmissionPolicyBinding, bounds.NAME).spec.validationActions == ["Deny"]
    assert cluster.admin.get(ValidatingAdmissionPolicyBinding, IMAGE_BLOCKS).spec.validationActions == ["Deny"]


def test_the_writes_the_playbooks_make_are_admitted(cluster: Cluster, responder_client: Client) -> None:
    """Labels and annotations of pods, cordons and taints of nodes, removals from aws-auth, entries
    of the image-blocks list: admitted with the bounds in force."""
    cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", "node-a")
    _aws_auth(cluster)
    marks = {
        "metadata": {
            "labels": {"eks-responder.io/quarantine": "true"},
            "annotations": {"eks-responder.io/incident-ids": "i-1", "karpenter.sh/do-not-disrupt": "true"},
        }
    }
    keep = {"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}
    responder_client.patch(Node, "node-a", {"metadata": {"annotations": keep}}, patch_type=MERGE)
    responder_client.patch(Pod, pod, marks, namespace=cluster.namespace, patch_type=MERGE)
    taint = {"key": "eks-responder.io/quarantine", "effect": "NoSchedule"}
    responder_client.patch(Node, "node-a", {"spec": {"unschedulable": True, "taints": [taint]}}, patch_type=MERGE)
    responder_client.patch(ConfigMap, "aws-auth", {"data": {"mapRoles": None}}, namespace="kube-system",
                           patch_type=MERGE)  # fmt: skip
    entry = {ENTRY: f"{DIGEST_LINE}\n{REPOSITORY}:1.4"}
    _entries(entry)(responder_client, cluster, pod)
    _entries({ENTRY: None})(responder_client, cluster, pod)  # type: ignore[dict-item]
    stored = cluster.admin.get(Pod, pod, namespace=cluster.namespace)
    assert stored.metadata.labels["eks-responder.io/quarantine"] == "true"
    assert cluster.admin.get(Node, "node-a").spec.unschedulable is True


def test_without_the_binding_the_same_write_is_admitted(
    cluster: Cluster, local_stack: LocalStack, responder_client: Client
) -> None:
    """The control: the refusals above are the bounds' doing, not RBAC's or validation's."""
    pod = cluster.pod("api")
    change = lambda: responder_client.patch(  # noqa: E731
        Pod, pod, {"spec": {"activeDeadlineSeconds": 60}}, namespace=cluster.namespace, patch_type=MERGE, dry_run=True
    )
    assert bounds.NAME in (_attempt(change) or "")
    cluster.admin.delete(ValidatingAdmissionPolicyBinding, bounds.NAME)
    try:
        # Until the admission plugin has seen the deletion: refused by the bounds, then admitted.
        answers = _answers_until(change, lambda answer: answer is None)
        assert answers[-1] is None, answers[-1]
        assert all(bounds.NAME in a for a in answers[:-1] if a is not None)
    finally:
        enforce_bounds(cluster.admin, local_stack.responder_kubeconfig)


def test_the_bounds_bind_the_responder_group_only(cluster: Cluster) -> None:
    pod = cluster.pod("api")
    # The administrator is not the responder: the same change goes through.
    cluster.admin.patch(Pod, pod, {"spec": {"activeDeadlineSeconds": 60}}, namespace=cluster.namespace,
                        patch_type=MERGE)  # fmt: skip
    (policy,) = [d for d in bounds.documents(RESPONDER_GROUP) if d["kind"] == "ValidatingAdmissionPolicy"]
    for name, sent in ((bounds.NAME, policy), (IMAGE_BLOCKS, block_image.image_blocks_documents(())[1])):
        stored = cluster.admin.get(ValidatingAdmissionPolicy, name).to_dict()
        assert stored["spec"]["validations"] == sent["spec"]["validations"]
        # The server type-checked every expression against the kinds it matches and found nothing wrong.
        assert not (stored.get("status") or {}).get("typeChecking", {}).get("expressionWarnings"), stored["status"]


# --- k8s:block-image's ValidatingAdmissionPolicy, enforced by the server


def _until_refused(image: str, call: Callable[[], Any]) -> None:
    """The call is refused by the block (the entry reaches the admission plugin's informer within
    moments: each pod admitted before is a new one, and the call is tried again)."""
    message = _answers_until(call, lambda answer: answer is not None)[-1]
    assert message is not None, f"{image} was admitted"
    assert f"image {image} is blocked by eks-responder" in message, message


def _new_pod(cluster: Cluster, namespace: str, image: str) -> Any:
    meta = {"name": f"new-{uuid.uuid4().hex[:8]}", "namespace": namespace}
    return cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                           "spec": {"containers": [{"name": "main", "image": image}]}})  # fmt: skip


def test_a_blocked_digest_is_kept_out_by_the_server_and_containment_still_goes_through(
    cluster: Cluster, make_responder: Any, store: PlanStore[Plan]
) -> None:
    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    image = f"{REPOSITORY}@{digest}"
    run_pod(cluster, "running", image, cluster.namespace)
    run_pod(cluster, "other", "public.ecr.aws/nginx/nginx:1.27", cluster.namespace)
    found = scan(digest)
    report = make_responder(rules_with("k8s:block-image"), clusters=("local",), incidents_table=TABLE).handle(
        found, Mode.LIVE
    )
    (block,) = report.actions
    assert block.status.value == "succeeded", block.detail
    assert f"ValidatingAdmissionPolicy {IMAGE_BLOCKS} (bound, Deny); verified" in block.detail
    entries = cluster.admin.get(ConfigMap, IMAGE_BLOCKS, namespace=IMAGE_BLOCKS_NAMESPACE).data
    assert entries == {policy_name(image): f"@{digest}\n{REPOSITORY}:1.4"}

    # A new pod with the digest, by digest or by a tag pinned to it, is refused by the server.
    _until_refused(image, lambda: _new_pod(cluster, cluster.namespace, image))
    _until_refused(f"{REPOSITORY}:1.4@{digest}", lambda: _new_pod(cluster, cluster.namespace,
                                                                  f"{REPOSITORY}:1.4@{digest}"))  # fmt: skip
    _until_refused(f"{REPOSITORY}:1.4", lambda: _new_pod(cluster, cluster.namespace, f"{REPOSITORY}:1.4"))
    # So is a debug container with it, added to a pod that runs something else.
    debug = {"spec": {"ephemeralContainers": [{"name": "dbg", "image": image, "targetContainerName": "main"}]}}
    with pytest.raises(ApiError) as err:
        cluster.admin.patch(Pod.Ephemeralcontainers, "other", debug, namespace=cluster.namespace)
    assert f"image {image} is blocked by eks-responder" in str(err.value.status.message)
    # The platform's namespace is never blocked; other images are admitted.
    _new_pod(cluster, "kube-system", image)
    _new_pod(cluster, cluster.namespace, f"{REPOSITORY}@sha256:{'0' * 64}")

    # Containment of the pod already running the digest goes through (labels, the quarantine policy).
    contain = make_responder(rules_with("k8s:label-pod", "k8s:isolate-pod")).handle(
        incident(namespace=cluster.namespace, pods=("running",)), Mode.LIVE
    )
    assert [r.status.value for r in contain.actions] == ["succeeded", "succeeded"], [r.detail for r in contain.actions]
    assert labels(cluster, cluster.namespace, "running")["eks-responder.io/under-investigation"] == "true"

    # Released by the responder (its bounds allow deleting its own block policies), the digest is admitted.
    released = decisions.release(
        store,
        make_responder(rules_with("k8s:block-image"), clusters=("local",), incidents_table=TABLE),
        found.id,
        steps=None,
        who="cli:test",
    )
    assert [a["status"] for a in released["actions"]] == ["succeeded"], released
    assert not cluster.admin.get(ConfigMap, IMAGE_BLOCKS, namespace=IMAGE_BLOCKS_NAMESPACE).data
    answers = _answers_until(lambda: _new_pod(cluster, cluster.namespace, image), lambda answer: answer is None)
    assert answers[-1] is None, "the released digest is still refused"


# --- Pod Security Admission: the responder runs no pod of its own, and works in a restricted namespace


def test_the_responder_creates_no_pods_so_pod_security_never_stands_in_its_way() -> None:
    from chalicelib import actions

    for action in actions.REGISTRY.values():
        for rule in (*action.rbac, *getattr(action, "release_rbac", ())):
            assert not (rule.resource.startswith("pods") and "create" in rule.verbs), (action.name, rule)


def test_containment_in_a_namespace_that_enforces_the_restricted_profile(cluster: Cluster, make_responder: Any) -> None:
    namespace = f"r-{uuid.uuid4().hex[:8]}"
    labels_ = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels_}})
    # The server enforces the profile: a pod that does not meet it is refused.
    with pytest.raises(ApiError) as refused:
        run_pod(cluster, "loose", "public.ecr.aws/nginx/nginx:1.27", namespace)
    assert "violates PodSecurity" in str(refused.value.status.message)
    restricted = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "main", "image": "public.ecr.aws/nginx/nginx:1.27", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
    }  # fmt: skip
    meta = {"name": "web", "namespace": namespace, "labels": {"app": "web"}}
    cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": restricted})
    report = make_responder(rules_with("k8s:label-pod", "k8s:capture-pod", "k8s:isolate-pod")).handle(
        incident(namespace=namespace, pods=("web",)), Mode.LIVE
    )
    assert [r.status.value for r in report.actions] == ["succeeded"] * 3, [r.detail for r in report.actions]
    assert labels(cluster, namespace, "web")["eks-responder.io/under-investigation"] == "true"
