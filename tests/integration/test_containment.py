"""Containment against a real kube-apiserver, as the responder identity (generated ClusterRole only)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import msgspec
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Namespace, Node, Pod, Service
from lightkube.resources.networking_v1 import NetworkPolicy

from chalicelib.actions.k8s.isolate_pod import ORIGINAL_LABELS_ANNOTATION
from chalicelib.actions.k8s.selectors import selects, service_selects
from chalicelib.incident import ResourceKind
from chalicelib.interfaces import (
    INCIDENT_ANNOTATION,
    INCIDENT_LABEL,
    INVESTIGATION_LABEL,
    MANAGED_BY_LABEL,
    QUARANTINE_LABEL,
    QUARANTINE_POLICY,
    QUARANTINE_TAINT,
)
from chalicelib.response.report import Mode
from tests.conftest import EVENTS
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration
# The Kubernetes half of the privileged-pod playbook (the EC2 half is tested in test_node_aws).
POD_AND_NODE = rules_with("k8s:label-pod", "k8s:capture-pod", "k8s:isolate-pod", "k8s:label-node", "k8s:cordon-node")


def _statuses(report: Any) -> list[tuple[str, str, str]]:
    return [(r.action, r.target, r.status.value) for r in report.actions]


def _labels(admin: Client, namespace: str, name: str) -> dict[str, str]:
    return dict(admin.get(Pod, name, namespace=namespace).metadata.labels or {})


def test_isolate_pod_quarantines_only_that_pod(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    # GIVEN two pods of one Deployment on a node
    node = cluster.node("node-a", "i-0aaa")
    bad, good = cluster.deployment("web", [node, node])
    found = incident(namespace=cluster.namespace, pods=(bad,))
    # WHEN the default playbook runs live
    report = make_responder().handle(found, Mode.LIVE)
    # THEN the pod is labelled, captured and isolated, and only it is selected by the policy
    assert _statuses(report) == [
        ("k8s:label-pod", f"{cluster.namespace}/{bad}", "succeeded"),
        ("k8s:capture-pod", f"{cluster.namespace}/{bad}", "succeeded"),
        ("k8s:isolate-pod", f"{cluster.namespace}/{bad}", "succeeded"),
        ("ec2:isolate-pod-eni", f"{cluster.namespace}/{bad}", "skipped"),  # no branch ENI: the policy does it
        # the service account's AWS role is every replica's: a human decides (none here to revoke)
        ("eks:delete-pod-identity-association", f"{cluster.namespace}/{bad}", "awaiting-approval"),
        ("iam:revoke-role-sessions", "-", "skipped"),
    ]
    policy = admin.get(NetworkPolicy, QUARANTINE_POLICY, namespace=cluster.namespace)
    assert policy.spec.policyTypes == ["Ingress", "Egress"]
    assert not policy.spec.ingress
    assert not policy.spec.egress
    selector = policy.spec.podSelector.matchLabels
    assert selector == {QUARANTINE_LABEL: "true"}
    assert policy.metadata.labels[MANAGED_BY_LABEL] == "eks-responder"
    selected = [
        p.metadata.name
        for p in admin.list(Pod, namespace=cluster.namespace)
        if all((p.metadata.labels or {}).get(k) == v for k, v in selector.items())
    ]
    assert selected == [bad]
    labels = _labels(admin, cluster.namespace, bad)
    assert labels[INCIDENT_LABEL] == found.id
    assert labels[MANAGED_BY_LABEL] == "eks-responder"
    assert labels[INVESTIGATION_LABEL] == "true"
    # The workload's own labels move to an annotation: no selector of the workload matches it now.
    assert "app" not in labels
    assert "pod-template-hash" not in labels
    pod = admin.get(Pod, bad, namespace=cluster.namespace)
    original = json.loads(pod.metadata.annotations[ORIGINAL_LABELS_ANNOTATION])
    assert original == {"app": "web", "pod-template-hash": "abc123"}
    assert pod.metadata.annotations[INCIDENT_ANNOTATION] == found.id
    assert QUARANTINE_LABEL not in _labels(admin, cluster.namespace, good)


def test_undo_information_is_recorded(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    taints_before = [t.to_dict() for t in admin.get(Node, node).spec.taints or []]
    pod = cluster.pod("api", node, labels={"app": "api", MANAGED_BY_LABEL: "Helm"})
    report = make_responder(rules_with("k8s:isolate-pod", "k8s:cordon-node")).handle(
        incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE
    )
    isolate, cordon = report.actions
    assert isolate.prior is not None
    assert isolate.prior["labels"][MANAGED_BY_LABEL] == "Helm"
    assert isolate.prior["labels"][QUARANTINE_LABEL] is None
    assert isolate.prior["network_policy_created"] == f"{cluster.namespace}/{QUARANTINE_POLICY}"
    assert cordon.prior == {"unschedulable": False, "taints": taints_before}


def test_privileged_pod_also_contains_its_node(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("shell", node)
    found = incident(
        namespace=cluster.namespace,
        pods=(pod,),
        privileged=True,
        type_="PrivilegeEscalation:Kubernetes/PrivilegedContainer",
        severity=5,
    )
    report = make_responder().handle(found, Mode.LIVE)
    assert report.rule == "privileged-pod"
    assert ("k8s:cordon-node", node, "succeeded") in _statuses(report)
    spec = admin.get(Node, node).spec
    assert spec.unschedulable is True
    assert any(t.key == QUARANTINE_TAINT and t.effect == "NoSchedule" for t in spec.taints or [])
    meta = admin.get(Node, node).metadata
    assert meta.labels[INCIDENT_LABEL] == found.id
    assert meta.labels[INVESTIGATION_LABEL] == "true"


def test_node_finding_resolves_the_instance_to_its_node(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    cluster.node("node-a", "i-0aaa")
    target = cluster.node("node-b", "i-0bbb")
    found = incident(instance_ids=("i-0bbb",), kind=ResourceKind.NODE, type_="CryptoCurrency:EC2/BitcoinTool.B!DNS")
    report = make_responder(rules_with("k8s:label-node", "k8s:cordon-node")).handle(found, Mode.LIVE)
    assert _statuses(report) == [("k8s:label-node", target, "succeeded"), ("k8s:cordon-node", target, "succeeded")]
    assert admin.get(Node, "node-b").spec.unschedulable is True
    assert not admin.get(Node, "node-a").spec.unschedulable


def test_unknown_instance_is_noted_not_failed(cluster: Cluster, make_responder: Any) -> None:
    cluster.node("node-a", "i-0aaa")
    found = incident(instance_ids=("i-0zzz",), kind=ResourceKind.NODE, type_="CryptoCurrency:EC2/BitcoinTool.B!DNS")
    report = make_responder(rules_with("k8s:label-node", "k8s:cordon-node")).handle(found, Mode.LIVE)
    assert "instance i-0zzz is not a node of cluster local" in report.notes
    assert {r.status.value for r in report.actions} == {"skipped"}


def test_deployment_resolves_to_its_own_pods_only(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    web = cluster.deployment("web", [node, node])
    other = cluster.deployment("other", [node])
    report = make_responder(rules_with("k8s:isolate-pod")).handle(
        incident(namespace=cluster.namespace, workload=("Deployment", "web"), kind=ResourceKind.WORKLOAD), Mode.LIVE
    )
    assert sorted(r.target for r in report.actions) == sorted(f"{cluster.namespace}/{p}" for p in web)
    assert QUARANTINE_LABEL not in _labels(admin, cluster.namespace, other[0])


def test_daemonset_and_bare_pods_resolve(cluster: Cluster, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    template = {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "busybox"}]}}
    ds = cluster.create(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": cluster.namespace},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template},
        }
    )
    pod = cluster.pod("agent-x1", node, {"app": "agent"}, owner=ds)
    cluster.pod("bare", node)
    report = make_responder(rules_with("k8s:label-pod")).handle(
        incident(namespace=cluster.namespace, workload=("DaemonSet", "agent"), kind=ResourceKind.WORKLOAD), Mode.LIVE
    )
    assert [r.target for r in report.actions] == [f"{cluster.namespace}/{pod}"]
    assert report.notes == (f"DaemonSet/{cluster.namespace}/agent resolved to 1 pod(s)",)


def test_protected_namespace_is_untouched(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    cluster.pod("coredns-x", node, namespace="kube-system")
    before = admin.get(Pod, "coredns-x", namespace="kube-system").metadata.resourceVersion
    report = make_responder(rules_with("k8s:isolate-pod", "k8s:delete-pod")).handle(
        incident(namespace="kube-system", pods=("coredns-x",)), Mode.LIVE
    )
    assert {r.status.value for r in report.actions} == {"skipped"}
    assert all("namespace kube-system is protected" in r.detail for r in report.actions)
    after = admin.get(Pod, "coredns-x", namespace="kube-system")
    assert after.metadata.resourceVersion == before
    assert not list(admin.list(NetworkPolicy, namespace="kube-system"))
    admin.delete(Pod, "coredns-x", namespace="kube-system", grace_period=0)


def test_replaying_the_same_incident_changes_nothing_the_second_time(
    cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    found = incident(
        namespace=cluster.namespace,
        pods=(pod,),
        privileged=True,
        type_="PrivilegeEscalation:Kubernetes/PrivilegedContainer",
    )
    responder = make_responder(POD_AND_NODE)
    first = responder.handle(found, Mode.LIVE)
    assert {r.status.value for r in first.actions} == {"succeeded"}

    def versions() -> dict[str, str]:
        objs: list[Any] = [admin.get(Pod, pod, namespace=cluster.namespace), admin.get(Node, node)]
        objs += list(admin.list(NetworkPolicy, namespace=cluster.namespace))
        return {f"{o.kind}/{o.metadata.name}": o.metadata.resourceVersion for o in objs}

    before = versions()
    second = responder.handle(found, Mode.LIVE)
    assert {r.status.value for r in second.actions} == {"skipped"}
    assert versions() == before


def test_server_side_dry_run_changes_nothing(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    found = incident(
        namespace=cluster.namespace,
        pods=(pod,),
        privileged=True,
        type_="PrivilegeEscalation:Kubernetes/PrivilegedContainer",
    )
    report = make_responder(POD_AND_NODE).handle(found, Mode.DRY_RUN)
    assert {r.status.value for r in report.actions} == {"planned"}
    details = {r.action: r.detail for r in report.actions}
    # The label goes out in one request with the isolation's patch, the node's with the cordon's.
    assert "Kubernetes patch pod held, sent with a later step's write" in details["k8s:label-pod"]
    assert details["k8s:label-pod"].endswith("(sent in one request with step 3)")
    assert "Kubernetes patch pod checked by the API (server-side dryRun=All), not applied" in details["k8s:isolate-pod"]
    assert "Kubernetes create NetworkPolicy checked by the API" in details["k8s:isolate-pod"]
    assert details["k8s:label-node"].endswith("(sent in one request with step 5)")
    assert "Kubernetes patch node checked by the API" in details["k8s:cordon-node"]
    assert QUARANTINE_LABEL not in _labels(admin, cluster.namespace, pod)
    assert not admin.get(Node, node).spec.unschedulable
    assert not list(admin.list(NetworkPolicy, namespace=cluster.namespace))


def test_rule_dry_run_overrides_live(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    rules = rules_with("k8s:cordon-node")
    rule = msgspec.structs.replace(rules.rules[0], dry_run=True)
    rules = msgspec.structs.replace(rules, rules=(rule,))
    report = make_responder(rules).handle(incident(instance_ids=("i-0aaa",), kind=ResourceKind.NODE), Mode.LIVE)
    assert report.mode is Mode.DRY_RUN
    assert not admin.get(Node, node).spec.unschedulable


def test_cordon_cap_limits_the_blast_radius(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    for index in range(3):
        cluster.node(f"node-{index}", f"i-0{index}")
    responder = make_responder(rules_with("k8s:cordon-node"), max_nodes_cordoned_per_hour=2)
    found = incident(instance_ids=("i-00", "i-01", "i-02"), kind=ResourceKind.NODE)
    report = responder.handle(found, Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["succeeded", "succeeded", "skipped"]
    assert "blast-radius cap reached: 2 node(s)" in report.actions[2].detail
    assert not admin.get(Node, "node-2").spec.unschedulable
    # A later incident in the same hour is held by what was done before.
    again = responder.handle(incident(instance_ids=("i-02",), kind=ResourceKind.NODE), Mode.LIVE)
    assert again.actions[0].status.value == "skipped"


def test_protected_nodes_by_label_and_name(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    cluster.node("gpu-1", "i-0gpu", labels={"critical": "true"})
    cluster.node("infra-1", "i-0inf")
    responder = make_responder(
        rules_with("k8s:cordon-node"), protected_node_labels=("critical=true",), protected_nodes=("infra-*",)
    )
    report = responder.handle(incident(instance_ids=("i-0gpu", "i-0inf"), kind=ResourceKind.NODE), Mode.LIVE)
    details = [r.detail for r in report.actions]
    assert "protected by label critical=true" in details[0]
    assert "node infra-1 is protected (PROTECTED_NODES)" in details[1]
    assert not admin.get(Node, "gpu-1").spec.unschedulable


def test_capture_writes_evidence_with_a_hash_manifest(cluster: Cluster, make_responder: Any, tmp_path: Any) -> None:
    import hashlib

    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    found = incident(namespace=cluster.namespace, pods=(pod,))
    report = make_responder(rules_with("k8s:capture-pod")).handle(found, Mode.LIVE)
    assert report.actions[0].status.value == "succeeded"
    base = tmp_path / "evidence" / found.account / found.region / found.id / "pods" / cluster.namespace / pod
    manifest = json.loads((base / "MANIFEST.json").read_text())
    assert manifest["pod"] == f"{cluster.namespace}/{pod}"
    assert manifest["node"] == node
    files = {entry["file"]: entry["sha256"] for entry in manifest["files"]}
    assert set(files) == {"pod.json", "events.json", "logs/main.log"}
    for rel, digest in files.items():
        assert hashlib.sha256((base / rel).read_bytes()).hexdigest() == digest
    assert json.loads((base / "pod.json").read_text())["metadata"]["name"] == pod
    # Capturing again for the same incident does not overwrite the evidence.
    again = make_responder(rules_with("k8s:capture-pod")).handle(found, Mode.LIVE)
    assert again.actions[0].status.value == "skipped"


def test_delete_pod_and_a_pod_already_gone(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    responder = make_responder(
        rules_with({"action": "k8s:delete-pod", "params": {"grace_period_seconds": 0}}, "k8s:label-pod")
    )
    report = responder.handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    assert report.actions[0].status.value == "succeeded"
    assert not [p for p in admin.list(Pod, namespace=cluster.namespace) if p.metadata.name == pod]
    # The next action still runs, and reports the pod gone rather than failing.
    assert report.actions[1].status.value == "skipped"
    assert "no longer exists" in report.actions[1].detail


def test_one_failing_action_never_hides_the_others(cluster: Cluster, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    # A quarantine policy that exists but is not ours cannot be created again: the patch fails?
    # Simpler and real: an invalid evidence folder makes capture fail; the other actions still run.
    responder = make_responder(rules_with("k8s:capture-pod", "k8s:label-pod"))
    responder._evidence = _BrokenEvidence()
    report = responder.handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["failed", "succeeded"]
    assert "disk full" in report.actions[0].detail


class _BrokenEvidence:
    def exists(self, key: str) -> bool:
        return False

    def put(self, key: str, data: bytes, content_type: str) -> str:
        raise OSError("disk full")

    def location(self, key: str) -> str:
        return f"broken://{key}"


def _np(namespace: str, name: str, selector: dict[str, Any], **rules: Any) -> dict[str, Any]:
    spec = {"podSelector": selector, "policyTypes": [t.title() for t in rules], **rules}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def test_isolation_holds_against_existing_allow_policies_and_services(
    cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    # GIVEN a namespace as teams run them: DNS for every pod, the ingress controller let in to the
    # app, a NotIn policy, a Service, and a deny-all "quarantine" policy someone else wrote
    ns = cluster.namespace
    node = cluster.node("node-a", "i-0aaa")
    bad, good = cluster.deployment("checkout", [node, node])
    dns = [{"ports": [{"protocol": "UDP", "port": 53}]}]
    cluster.create(_np(ns, "allow-dns", {}, egress=dns))
    cluster.create(_np(ns, "allow-ingress-controller", {"matchLabels": {"app": "checkout"}}, ingress=[{}]))
    not_db = {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}
    cluster.create(_np(ns, "allow-web-egress", not_db, egress=[{}]))
    cluster.create(_np(ns, QUARANTINE_POLICY, {"matchLabels": {QUARANTINE_LABEL: "true"}}, ingress=[{}]))
    cluster.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "checkout", "namespace": ns},
                    "spec": {"selector": {"app": "checkout"}, "ports": [{"port": 80}]}})  # fmt: skip

    # WHEN the pod is isolated
    found = incident(namespace=ns, pods=(bad,))
    report = make_responder(rules_with("k8s:isolate-pod")).handle(found, Mode.LIVE)
    (result,) = report.actions
    assert result.status.value == "succeeded", result.detail
    assert "repaired NetworkPolicy" in result.detail
    assert "verified" in result.detail

    # THEN no policy but the (now deny-all) quarantine one selects the pod, and no Service does

    labels = _labels(admin, ns, bad)
    selecting = {
        p.metadata.name: p.to_dict()["spec"]
        for p in admin.list(NetworkPolicy, namespace=ns)
        if selects(p.to_dict()["spec"].get("podSelector"), labels)
    }
    assert list(selecting) == [QUARANTINE_POLICY]
    assert "ingress" not in selecting[QUARANTINE_POLICY]
    assert "egress" not in selecting[QUARANTINE_POLICY]
    assert not [s for s in admin.list(Service, namespace=ns) if service_selects(s.spec.selector, labels)]
    # ... while the rest of the workload keeps its policies and its Service
    other = _labels(admin, ns, good)
    still = {
        p.metadata.name
        for p in admin.list(NetworkPolicy, namespace=ns)
        if selects(p.to_dict()["spec"].get("podSelector"), other)
    }
    assert still == {"allow-dns", "allow-ingress-controller", "allow-web-egress"}
    assert service_selects(admin.get(Service, "checkout", namespace=ns).spec.selector, other)
    # ... and every change can be undone from the result
    assert result.prior is not None
    assert set(result.prior["policies_narrowed"]) == {f"{ns}/allow-dns", f"{ns}/allow-web-egress"}
    assert result.prior["policies_narrowed"][f"{ns}/allow-web-egress"] == not_db
    assert result.prior["network_policy_repaired"]["spec"]["ingress"] == [{}]
    assert result.prior["labels"]["app"] == "checkout"

    # A second run finds it isolated and verifies it
    again = make_responder(rules_with("k8s:isolate-pod")).handle(found, Mode.LIVE)
    assert again.actions[0].status.value == "skipped"
    assert again.actions[0].detail.startswith(f"pod {ns}/{bad} is already isolated (verified; NOT ENFORCED")


def test_isolation_that_does_not_hold_is_reported_failed(cluster: Cluster, make_responder: Any) -> None:
    # A hostNetwork pod shares the node's network: NetworkPolicy cannot isolate it.
    node = cluster.node("node-a", "i-0aaa")
    cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent", "namespace": cluster.namespace},
                    "spec": {"nodeName": node, "hostNetwork": True,
                             "containers": [{"name": "main", "image": "nginx"}]}})  # fmt: skip
    found = incident(namespace=cluster.namespace, pods=("agent",))
    (result,) = make_responder(rules_with("k8s:isolate-pod")).handle(found, Mode.LIVE).actions
    assert result.status.value == "failed"
    assert "hostNetwork" in result.detail


def test_a_finding_from_another_account_changes_nothing(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    # The kubeconfig's "local" context has no account; the responder's credentials are moto's
    # 123456789012: a finding about a cluster called "local" in account 999999999999 is not ours.
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    found = replace(incident(namespace=cluster.namespace, pods=(pod,)), account="999999999999")
    report = make_responder(POD_AND_NODE).handle(found, Mode.LIVE)
    assert {r.status.value for r in report.actions} == {"failed"}
    assert all("this responder acts only in its own account 123456789012" in r.detail for r in report.actions)
    assert QUARANTINE_LABEL not in _labels(admin, cluster.namespace, pod)
    assert not admin.get(Node, node).spec.unschedulable


def test_a_live_replay_for_a_cluster_the_kubeconfig_lacks_changes_nothing(
    cluster: Cluster, admin: Client, local_stack: Any, tmp_path: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.commands.cli import main
    from chalicelib.entry import wiring

    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    event = json.loads((EVENTS / "guardduty" / "execution-runtime-reverse-shell.json").read_text())
    details = event["detail"]["resource"]
    details["eksClusterDetails"]["name"] = "staging"  # the kubeconfig has contexts for local and demo only
    details["kubernetesDetails"]["kubernetesWorkloadDetails"].update(name=pod, namespace=cluster.namespace)
    path = tmp_path / "staging.json"
    path.write_text(json.dumps(event))
    for key, value in local_stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DRY_RUN", "false")
    wiring.reset()
    code = main(["replay", "--apply", "--json", str(path)])
    result = json.loads(capsys.readouterr().out)
    assert code == 1  # an action failed: said, not hidden
    kube_steps = [a for a in result["actions"] if a["action"].startswith("k8s:")]
    assert kube_steps
    assert all(
        a["status"] == "failed" and "no kubeconfig context for cluster staging" in a["detail"] for a in kube_steps
    )
    # The current context ("local") serves this very API server: nothing in it changed.
    assert QUARANTINE_LABEL not in _labels(admin, cluster.namespace, pod)
    assert not list(admin.list(NetworkPolicy, namespace=cluster.namespace))


def test_a_privileged_pod_in_a_protected_namespace_does_not_disrupt_its_node(
    cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod(f"agent-{cluster.namespace}", node, namespace="kube-system")
    found = incident(namespace="kube-system", pods=(pod,), privileged=True,
                     type_="PrivilegeEscalation:Kubernetes/PrivilegedContainer")  # fmt: skip
    try:
        report = make_responder(POD_AND_NODE).handle(found, Mode.LIVE)
        statuses = {r.action: (r.status.value, r.detail) for r in report.actions}
        assert statuses["k8s:cordon-node"][0] == "skipped"
        assert "protected namespace kube-system: alert and evidence only" in statuses["k8s:cordon-node"][1]
        assert statuses["k8s:isolate-pod"][0] == "skipped"
        assert statuses["k8s:capture-pod"][0] == "succeeded"  # the evidence is still kept
        assert not admin.get(Node, node).spec.unschedulable
    finally:
        admin.delete(Pod, pod, namespace="kube-system")


def test_isolation_says_whether_the_cluster_enforces_it(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    from lightkube.resources.apps_v1 import DaemonSet
    from lightkube.types import PatchType

    node = cluster.node("node-a", "i-0aaa")
    first, second = cluster.pod("a", node), cluster.pod("b", node)
    rules = rules_with("k8s:isolate-pod")
    # No NetworkPolicy engine runs (the local API server has no network plugin): said in the result and the notes
    report = make_responder(rules).handle(incident(namespace=cluster.namespace, pods=(first,)), Mode.LIVE)
    (result,) = report.actions
    assert result.status.value == "succeeded"
    assert "NOT ENFORCED: no NetworkPolicy engine runs in cluster local" in result.detail
    assert "isolation declared but not enforced in cluster local" in " ".join(report.notes)
    # A running Cilium agent enforces it
    labels = {"k8s-app": "cilium"}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "cilium-agent", "image": "cilium"}]}}
    meta = {"name": "cilium", "namespace": cluster.namespace}
    agent = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
             "spec": {"selector": {"matchLabels": labels}, "template": template}}  # fmt: skip
    from lightkube.codecs import from_dict

    admin.create(from_dict(agent))
    try:
        status = {"status": {"numberReady": 2, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                             "numberMisscheduled": 0}}  # fmt: skip
        admin.patch(DaemonSet.Status, "cilium", status, namespace=cluster.namespace, patch_type=PatchType.MERGE)
        report = make_responder(rules).handle(incident(namespace=cluster.namespace, pods=(second,)), Mode.LIVE)
        (result,) = report.actions
        assert result.detail.endswith("enforced by Cilium"), result.detail
        assert not [n for n in report.notes if "not enforced" in n]
    finally:
        admin.delete(DaemonSet, "cilium", namespace=cluster.namespace)


def test_nodes_where_the_guardduty_agent_stopped_are_marked(
    cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    from lightkube.codecs import from_dict
    from lightkube.types import PatchType

    from chalicelib.sources import registry
    from tests.conftest import load_json

    for name in ("node-a", "node-b", "node-c"):
        cluster.node(name, f"i-0{name[-1]}aa")
    namespace = "amazon-guardduty"
    if namespace not in {n.metadata.name for n in admin.list(Namespace)}:
        admin.create(from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
    agents = {"aws-guardduty-agent-aaaaa": ("node-a", True), "aws-guardduty-agent-bbbbb": ("node-b", False)}
    try:
        for pod, (node, ready) in agents.items():
            cluster.pod(pod, node, namespace=namespace)
            container = {"name": "main", "ready": ready, "restartCount": 3, "image": "agent", "imageID": "agent"}
            running = {"status": {"phase": "Running", "containerStatuses": [container]}}
            admin.patch(Pod.Status, pod, running, namespace=namespace, patch_type=PatchType.MERGE)
        event = load_json(EVENTS / "runtime-coverage" / "guardduty-runtime-protection-unhealthy-eks.json")
        event["detail"]["resourceDetails"]["eksClusterDetails"]["clusterName"] = "local"
        report = make_responder().handle(registry.to_incident(event), Mode.LIVE)
        assert report.rule == "runtime-agent-stopped"
        # node-a's agent runs; node-b's is not ready; node-c has none: those two are marked
        assert _statuses(report) == [("k8s:label-node", n, "succeeded") for n in ("node-b", "node-c")]
        assert "2 node(s) without a running GuardDuty agent: node-b, node-c" in report.notes
        assert INVESTIGATION_LABEL not in (admin.get(Node, "node-a").metadata.labels or {})
    finally:
        for pod in agents:
            admin.delete(Pod, pod, namespace=namespace)


def test_each_object_is_read_once_until_a_step_writes_it(
    cluster: Cluster, make_responder: Any, sent: list[tuple[str, str]]
) -> None:
    pod = cluster.pod("reads", cluster.node("node-a", "i-0aaa"))
    rules = rules_with("k8s:label-pod", "k8s:capture-pod", "k8s:isolate-pod", "k8s:label-pod")
    report = make_responder(rules).handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["succeeded", "succeeded", "succeeded", "skipped"]
    path = f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}"
    reads = [p for method, p in sent if method == "GET" and p == path]
    writes = [p for method, p in sent if method == "PATCH" and p == path]
    # read once, for the targets; written once: the label is held and goes out with the isolation's
    # patch, whose answer serves the next steps (the isolation's verification, the last label)
    assert len(writes) == 1
    assert len(reads) == 1
    assert report.actions[0].detail.endswith("(sent in one request with step 3)")
    labels = dict(cluster.admin.get(Pod, pod, namespace=cluster.namespace).metadata.labels or {})
    assert labels[INVESTIGATION_LABEL] == labels[QUARANTINE_LABEL] == "true"
    # the pod's node is read by name, never found by listing every node
    assert ("GET", "/api/v1/nodes") not in sent
    assert ("GET", "/api/v1/nodes/node-a") in sent
