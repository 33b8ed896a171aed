"""k8s:isolate-pod: cut one pod off the network, in a way that holds against the cluster's other policies.

NetworkPolicies are additive: a pod may send or receive whatever *any* policy that selects it
allows. A deny-all policy alone therefore isolates nothing when a namespace-wide policy allows
DNS, or an `app=checkout` policy lets the ingress controller in. So isolation:

1. makes sure the quarantine policy exists and really is deny-all (an existing object of that
   name is checked, and repaired when it is not);
2. moves the pod out of every label selector its workload, Services and allow policies use: its
   labels are replaced by the responder's own, the originals kept in an annotation for release
   (the ReplicaSet then releases the pod and starts a replacement, so the service stays up);
3. excludes quarantined pods from every remaining policy that would still select it (a
   selector of `{}` or `NotIn`/`DoesNotExist` expressions) by adding `quarantine DoesNotExist`
   to its podSelector, recording the original for undo;
4. reads everything back and reports `failed` unless only the deny-all policy selects the pod
   and no Service does.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.k8s import enforcement
from chalicelib.actions.k8s.common import changed_metadata, missing, prior_metadata, restore_metadata
from chalicelib.actions.k8s.selectors import selects, service_selects
from chalicelib.interfaces import (
    INCIDENT_LABEL,
    INVESTIGATION_LABEL,
    MANAGED_BY_LABEL,
    QUARANTINE_LABEL,
    QUARANTINE_POLICY,
    KubeAPI,
    Outcome,
    RBACRule,
    Status,
    Target,
    responder_marks,
)
from chalicelib.settings import MANAGED_BY

ORIGINAL_LABELS_ANNOTATION = "eks-responder.io/original-labels"
# On a policy the responder narrowed: the podSelector it had before (JSON), for a human and for undo.
EXCLUDED_SELECTOR_ANNOTATION = "eks-responder.io/original-pod-selector"
RESPONDER_LABELS = frozenset({MANAGED_BY_LABEL, INCIDENT_LABEL, QUARANTINE_LABEL, INVESTIGATION_LABEL})
QUARANTINE_SELECTOR = {"matchLabels": {QUARANTINE_LABEL: "true"}}
EXCLUDE_QUARANTINED = {"key": QUARANTINE_LABEL, "operator": "DoesNotExist"}


def quarantine_policy(namespace: str, incident_id: str) -> dict[str, Any]:
    """Deny all ingress and egress for the pods of `namespace` that carry the quarantine label.

    Selecting by the quarantine label (not by the workload's labels) keeps the rest of the
    workload serving: only the labelled pod loses its network.
    """
    labels, annotations = responder_marks(incident_id)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": QUARANTINE_POLICY,
            "namespace": namespace,
            "labels": {**labels, "app.kubernetes.io/name": MANAGED_BY},
            "annotations": annotations,
        },
        "spec": {"podSelector": QUARANTINE_SELECTOR, "policyTypes": ["Ingress", "Egress"]},
    }


def not_deny_all(policy: dict[str, Any]) -> str | None:
    """Why this object is not the quarantine policy the responder writes (None when it is)."""
    spec = policy.get("spec") or {}
    selector = spec.get("podSelector") or {}
    if (selector.get("matchLabels") or {}) != QUARANTINE_SELECTOR["matchLabels"] or selector.get("matchExpressions"):
        return f"it selects {json.dumps(selector, sort_keys=True)}, not only {QUARANTINE_LABEL}=true"
    if set(spec.get("policyTypes") or []) != {"Ingress", "Egress"}:
        return f"its policyTypes are {spec.get('policyTypes')}, not Ingress and Egress"
    if spec.get("ingress") or spec.get("egress"):
        return "it has allow rules"
    return None


def allows_something(policy: dict[str, Any]) -> bool:
    spec = policy.get("spec") or {}
    return bool(spec.get("ingress") or spec.get("egress"))


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def verify(kube: KubeAPI, namespace: str, name: str) -> str | None:  # noqa: PLR0911 - one return per way it fails
    """Read back: why the pod is not isolated, or None when only the deny-all policy selects it."""
    pod = kube.get_pod(namespace, name)
    if pod is None:
        return None
    labels = _labels(pod)
    if (pod.get("spec") or {}).get("hostNetwork"):
        return "it uses the node's network (hostNetwork), which NetworkPolicy does not reach: isolate the node"
    if labels.get(QUARANTINE_LABEL) != "true":
        return f"the pod does not carry {QUARANTINE_LABEL}=true"
    policies = [
        p for p in kube.list_network_policies(namespace) if selects((p.get("spec") or {}).get("podSelector"), labels)
    ]
    ours = [p for p in policies if _name(p) == QUARANTINE_POLICY]
    if not ours:
        return f"no NetworkPolicy {QUARANTINE_POLICY} selects it"
    why = not_deny_all(ours[0])
    if why:
        return f"NetworkPolicy {QUARANTINE_POLICY} is not deny-all: {why}"
    allowing = sorted(_name(p) for p in policies if _name(p) != QUARANTINE_POLICY and allows_something(p))
    if allowing:
        return f"NetworkPolicies {', '.join(allowing)} still select it and allow traffic"
    services = sorted(
        _name(s)
        for s in kube.list_services(namespace)
        if service_selects((s.get("spec") or {}).get("selector"), labels)
    )
    if services:
        return f"Services {', '.join(services)} still select it"
    return None


def _ensure_native(ctx: ActionContext, namespace: str, done: list[str], prior: dict[str, Any]) -> str | None:
    """Where Cilium or Calico enforces, its own deny-all for quarantined pods (whose deny beats any
    allow, cluster-wide policies' included); what it is, for the read-back (None: not written)."""
    engine, _ = enforcement.check(ctx)
    body = enforcement.native_policy(engine, namespace, ctx.incident.id)
    if body is None or engine is None:
        return None
    api_version, kind = body["apiVersion"], body["kind"]
    where = f"{kind} {namespace}/{QUARANTINE_POLICY}"
    answer = ctx.kube.create_namespaced_object(namespace, body)
    if answer == "unsupported":
        done.append(f"{engine} runs but its policy API {api_version} is not served: {where} not written")
        return None
    if answer == "created":
        done.append(f"created {where} ({engine}'s deny rules win over any allow, cluster-wide ones included)")
        prior["native_policy_created"] = [api_version, kind]
        return engine
    current = ctx.kube.get_namespaced_object(api_version, kind, namespace, QUARANTINE_POLICY) or {}
    if current.get("spec") != body["spec"]:  # someone else's object under our name: made ours, theirs kept
        nulls = dict.fromkeys((current.get("spec") or {}), None)
        ctx.kube.patch_namespaced_object(api_version, kind, namespace, QUARANTINE_POLICY,
                                         {"spec": {**nulls, **body["spec"]}})  # fmt: skip
        done.append(f"repaired {where}: now deny-all")
        prior["native_policy_repaired"] = {"kind": kind, "spec": current.get("spec")}
    return engine


def _native_problem(kube: KubeAPI, namespace: str, engine: str | None) -> str | None:
    """Read back the engine's deny policy the run wrote or checked."""
    if engine is None:
        return None
    body = enforcement.native_policy(engine, namespace, "-")
    assert body is not None
    found = kube.get_namespaced_object(body["apiVersion"], body["kind"], namespace, QUARANTINE_POLICY)
    if found is None or found.get("spec") != body["spec"]:
        return f"{body['kind']} {namespace}/{QUARANTINE_POLICY} is missing or not deny-all"
    return None


class IsolatePod(Action):
    """Quarantine the pod: deny-all NetworkPolicy, out of every selector that could let traffic
    through, verified by reading back. Only CNIs that enforce NetworkPolicy cut the traffic.

    Example::

        - action: k8s:isolate-pod
    """

    name = "k8s:isolate-pod"
    contains = True
    target_kind = "pod"
    summary = "deny all ingress and egress of the pod, whatever other policies allow (verified)"
    merges_into_target = True
    disrupts_workload = True
    rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule("", "pods", ("get", "patch")),
        RBACRule("", "services", ("list",)),
        RBACRule("networking.k8s.io", "networkpolicies", ("get", "list", "create", "patch")),
        RBACRule("apps", "daemonsets", ("list",)),  # is a NetworkPolicy engine running at all?
        # where Cilium or Calico runs, its own deny policy too (enforcement.native_policy)
        # (RBAC cannot limit create to a name: create any, read and change only ours)
        RBACRule("cilium.io", "ciliumnetworkpolicies", ("create",)),
        RBACRule("cilium.io", "ciliumnetworkpolicies", ("get", "patch"), (QUARANTINE_POLICY,)),
        RBACRule("projectcalico.org", "networkpolicies", ("create",)),
        RBACRule("projectcalico.org", "networkpolicies", ("get", "patch"), (QUARANTINE_POLICY,)),
    )

    release_rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule("networking.k8s.io", "networkpolicies", ("delete",), (QUARANTINE_POLICY,)),
        RBACRule("cilium.io", "ciliumnetworkpolicies", ("delete",), (QUARANTINE_POLICY,)),
        RBACRule("projectcalico.org", "networkpolicies", ("delete",), (QUARANTINE_POLICY,)),
    )
    reads_back = "the pod's labels and every NetworkPolicy that selects it"
    releases = (
        "gives the pod its labels back (so it rejoins its workload and Services), restores the selectors of the "
        "policies it narrowed, and deletes the quarantine policy (and the Cilium or Calico one it created) when no "
        "other pod of the namespace is quarantined"
    )
    keeps = ("a quarantine policy or narrowed selectors other quarantined pods still need; a policy of that name "
             "that was not deny-all stays repaired; the replacement pod its ReplicaSet started stays")  # fmt: skip

    shared = True

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        assert target.namespace is not None
        namespace = target.namespace
        done: list[str] = []
        pod = ctx.kube.get_pod(namespace, target.name)
        if pod is not None:
            restore = restore_metadata(pod, prior)
            if restore["metadata"]["labels"] or restore["metadata"]["annotations"]:
                ctx.kube.patch_pod(namespace, target.name, restore)
                done.append(f"pod {target}: labels put back")
        others = [p for p in ctx.kube.list_pods(namespace)
                  if _labels(p).get(QUARANTINE_LABEL) == "true" and _name(p) != target.name]  # fmt: skip
        if others:
            kept = ", ".join(sorted(_name(p) for p in others)[:5])
            done.append(
                f"kept {QUARANTINE_POLICY} and the narrowed selectors: still quarantined in {namespace}: {kept}"
            )
        else:
            for where, selector in (prior.get("policies_narrowed") or {}).items():
                name = where.split("/", 1)[1]
                if ctx.kube.get_network_policy(namespace, name) is None:
                    continue
                original = {
                    "matchLabels": selector.get("matchLabels"),
                    "matchExpressions": selector.get("matchExpressions"),
                }
                patch = {
                    "metadata": {"annotations": {EXCLUDED_SELECTOR_ANNOTATION: None}},
                    "spec": {"podSelector": original},
                }
                ctx.kube.patch_network_policy(namespace, name, patch)
                done.append(f"restored the selector of NetworkPolicy {where}")
            if prior.get("network_policy_created"):
                ctx.kube.delete_network_policy(namespace, QUARANTINE_POLICY)
                done.append(f"deleted NetworkPolicy {namespace}/{QUARANTINE_POLICY}")
            created = prior.get("native_policy_created")
            if created and ctx.kube.delete_namespaced_object(created[0], created[1], namespace, QUARANTINE_POLICY):
                done.append(f"deleted {created[1]} {namespace}/{QUARANTINE_POLICY} ({created[0]})")
        if pod is None and not done:
            return missing(target)
        return Outcome(Status.SUCCEEDED, "; ".join(done))

    def describe(self, target: Target, params: Params) -> str:
        return (
            f"ensure the deny-all NetworkPolicy {QUARANTINE_POLICY} in namespace {target.namespace}, move pod "
            f"{target} out of its workload's, Services' and allow policies' selectors (labels kept in an "
            f"annotation), exclude it from policies that select every pod, label it {QUARANTINE_LABEL}=true, "
            "and verify that nothing else selects it"
        )

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert target.namespace is not None
        namespace = target.namespace
        pod = ctx.kube.get_pod(namespace, target.name)
        if pod is None:
            return missing(target)
        done: list[str] = []
        prior: dict[str, Any] = {}
        # The policy goes first, so the pod is never labelled without the policy that isolates it.
        self._ensure_policy(ctx, namespace, done, prior)
        native = _ensure_native(ctx, namespace, done, prior)

        current = _labels(pod)
        labels, annotations = responder_marks(ctx.incident.id, pod)
        labels[QUARANTINE_LABEL] = "true"
        removed = sorted(k for k in current if k not in RESPONDER_LABELS and k not in labels)
        after = {**{k: v for k, v in current.items() if k in RESPONDER_LABELS}, **labels}
        if removed:
            saved = json.loads(
                ((pod.get("metadata") or {}).get("annotations") or {}).get(ORIGINAL_LABELS_ANNOTATION) or "{}"
            )
            annotations[ORIGINAL_LABELS_ANNOTATION] = json.dumps(
                {**saved, **{k: current[k] for k in removed}}, sort_keys=True
            )

        self._exclude_from_policies(ctx, namespace, after, done, prior)

        patch_labels: dict[str, str | None] = {**labels, **dict.fromkeys(removed)}
        if removed or changed_metadata(pod, labels, annotations):
            prior.update(prior_metadata(pod, patch_labels, annotations))  # type: ignore[arg-type]
            ctx.kube.patch_pod(
                namespace, target.name, {"metadata": {"labels": patch_labels, "annotations": annotations}}
            )
            moved = f"; removed labels {', '.join(removed)} (kept in {ORIGINAL_LABELS_ANNOTATION})" if removed else ""
            done.append(f"labelled pod {target} {QUARANTINE_LABEL}=true{moved}")

        enforced = enforcement.verdict(ctx)
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, f"{'; '.join(done) or f'pod {target} is already isolated'}; {enforced}",
                           prior)  # fmt: skip
        problem = verify(ctx.kube, namespace, target.name) or _native_problem(ctx.kube, namespace, native)
        if problem:
            so_far = f" (done: {'; '.join(done)})" if done else ""
            return Outcome(Status.FAILED, f"isolation of pod {target} does not hold: {problem}{so_far}", prior)
        if not done:
            return Outcome(Status.SKIPPED, f"pod {target} is already isolated (verified; {enforced})", already=True)
        return Outcome(
            Status.SUCCEEDED, "; ".join(done) + f"; verified: only the deny-all policy selects it; {enforced}", prior
        )

    @staticmethod
    def _ensure_policy(ctx: ActionContext, namespace: str, done: list[str], prior: dict[str, Any]) -> None:
        where = f"{namespace}/{QUARANTINE_POLICY}"
        policy = ctx.kube.get_network_policy(namespace, QUARANTINE_POLICY)
        if policy is None:
            ctx.kube.create_network_policy(namespace, quarantine_policy(namespace, ctx.incident.id))
            done.append(f"created NetworkPolicy {where}")
            prior["network_policy_created"] = where
            return
        why = not_deny_all(policy)
        if why is None:
            return
        # Someone else's object under our name: never trusted, made deny-all (the old spec kept for review).
        spec = policy.get("spec") or {}
        others = {k: None for k in ((spec.get("podSelector") or {}).get("matchLabels") or {}) if k != QUARANTINE_LABEL}
        repair = {
            "podSelector": {"matchLabels": {**others, QUARANTINE_LABEL: "true"}, "matchExpressions": None},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": None,
            "egress": None,
        }
        labels, annotations = responder_marks(ctx.incident.id, policy)
        ctx.kube.patch_network_policy(
            namespace, QUARANTINE_POLICY, {"metadata": {"labels": labels, "annotations": annotations}, "spec": repair}
        )
        done.append(f"repaired NetworkPolicy {where} ({why}): now deny-all")
        prior["network_policy_repaired"] = {"name": where, "spec": spec}

    @staticmethod
    def _exclude_from_policies(
        ctx: ActionContext, namespace: str, labels: dict[str, str], done: list[str], prior: dict[str, Any]
    ) -> None:
        """Policies that would still select the pod with its new labels, and allow something."""
        for policy in ctx.kube.list_network_policies(namespace):
            name = _name(policy)
            selector = (policy.get("spec") or {}).get("podSelector") or {}
            if name == QUARANTINE_POLICY or not allows_something(policy) or not selects(selector, labels):
                continue
            expressions = [*(selector.get("matchExpressions") or []), EXCLUDE_QUARANTINED]
            annotations = {EXCLUDED_SELECTOR_ANNOTATION: json.dumps(selector, sort_keys=True)}
            patch = {
                "metadata": {"annotations": annotations},
                "spec": {"podSelector": {"matchExpressions": expressions}},
            }
            ctx.kube.patch_network_policy(namespace, name, patch)
            prior.setdefault("policies_narrowed", {})[f"{namespace}/{name}"] = selector
            done.append(f"excluded quarantined pods from NetworkPolicy {namespace}/{name}")
