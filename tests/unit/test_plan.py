"""The offline plan: what replay prints without --live. Nothing is contacted."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.policy.loader import load_rules
from chalicelib.responder import Mode, Responder
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from chalicelib.sources import guardduty
from tests.conftest import load_event

RULES = load_rules(DEFAULT_RULES_FILE)


def _plan(name: str, settings: Settings | None = None) -> dict[str, object]:
    responder = Responder(RULES, settings or Settings(), connector=None)
    return responder.handle(guardduty.to_incident(load_event(name)), Mode.PLAN).to_dict()


def test_pod_finding_plans_label_capture_isolate_in_order() -> None:
    report = _plan("execution-runtime-reverse-shell")
    assert report["rule"] == "compromised-pod"
    actions = report["actions"]
    assert isinstance(actions, list)
    assert [(a["action"], a["target"], a["status"]) for a in actions] == [
        ("k8s:label-pod", "payments/web-5d9c7b8f6-x7k2p", "planned"),
        ("k8s:capture-pod", "payments/web-5d9c7b8f6-x7k2p", "planned"),
        ("k8s:isolate-pod", "payments/web-5d9c7b8f6-x7k2p", "planned"),
    ]


def test_protected_namespace_is_skipped_in_the_plan_too() -> None:
    report = _plan("execution-kubernetes-exec-in-kube-system-pod")
    statuses = {a["action"]: (a["status"], a["detail"]) for a in report["actions"]}  # type: ignore[attr-defined]
    assert statuses["k8s:label-pod"][0] == "planned"
    assert statuses["k8s:isolate-pod"][0] == "skipped"
    assert "namespace kube-system is protected" in statuses["k8s:isolate-pod"][1]


def test_sample_findings_are_planned_only_even_live() -> None:
    responder = Responder(RULES, Settings(), connector=None)
    incident = guardduty.to_incident(load_event("sample-privilege-escalation-privileged-container"))
    report = responder.handle(incident, Mode.LIVE)
    assert report.actions
    assert {a.status.value for a in report.actions} == {"planned"}
    assert all("sample finding" in a.detail for a in report.actions)


def test_protected_cluster_skips_everything() -> None:
    report = _plan("execution-runtime-reverse-shell", Settings(protected_clusters=("de*",)))
    assert {a["status"] for a in report["actions"]} == {"skipped"}  # type: ignore[attr-defined]


def test_live_without_a_cluster_skips_with_the_reason() -> None:
    responder = Responder(RULES, Settings(), connector=None)
    incident = replace(guardduty.to_incident(load_event("execution-runtime-reverse-shell")), cluster=None)
    report = responder.handle(incident, Mode.LIVE)
    assert {a.status.value for a in report.actions} == {"skipped"}
    assert "names no EKS cluster" in report.actions[0].detail


def test_workloads_and_nodes_are_described_until_resolved() -> None:
    report = _plan("privilege-escalation-kubernetes-privileged-container")
    targets = {a["action"]: a["target"] for a in report["actions"]}  # type: ignore[attr-defined]
    assert targets["k8s:isolate-pod"] == "tools/debug-shell"
    assert targets["k8s:cordon-node"] == "<node running pod tools/debug-shell>"
    assert targets["ec2:isolate-instance"] == "<instance of node running pod tools/debug-shell>"


def test_node_finding_plans_the_node_playbook_on_the_instance() -> None:
    report = _plan("cryptocurrency-ec2-bitcoin-tool-worker-node")
    assert [(a["action"], a["target"], a["status"]) for a in report["actions"]] == [  # type: ignore[attr-defined]
        ("ec2:protect-instance", "i-7733adfa936a8baee", "planned"),
        ("ec2:snapshot-volumes", "i-7733adfa936a8baee", "planned"),
        ("k8s:label-node", "<node of instance i-7733adfa936a8baee>", "planned"),
        ("k8s:cordon-node", "<node of instance i-7733adfa936a8baee>", "planned"),
        ("ec2:isolate-instance", "i-7733adfa936a8baee", "planned"),
        ("ec2:block-ip", "i-7733adfa936a8baee", "planned"),
    ]


def test_protected_instances_are_skipped_in_the_plan() -> None:
    report = _plan("cryptocurrency-ec2-bitcoin-tool-worker-node", Settings(protected_instances=("i-7733*",)))
    statuses = {a["action"]: a["status"] for a in report["actions"]}  # type: ignore[attr-defined]
    assert statuses["ec2:isolate-instance"] == "skipped"
    assert statuses["k8s:cordon-node"] == "planned"


def test_no_action_rules_give_their_reason() -> None:
    report = _plan("execution-runtime-suspicious-shell-created-low")
    assert report["actions"] == []
    assert report["rule"] == "report-low-severity"
    assert "Low-severity" in str(report["reason"])


def test_identity_targets_are_described_from_the_finding() -> None:
    caller = _plan("credential-access-kubernetes-malicious-ip-caller")
    assert [(a["action"], a["target"]) for a in caller["actions"]] == [  # type: ignore[attr-defined]
        ("iam:revoke-role-sessions", "arn:aws:iam::123456789012:role/developer"),
        ("iam:deactivate-access-keys", "-"),
        ("eks:delete-access-entry", "arn:aws:iam::123456789012:role/developer"),
    ]
    exfiltration = _plan("unauthorized-access-instance-credential-exfiltration-outside-aws")
    first = exfiltration["actions"][0]
    assert (first["action"], first["target"]) == (
        "iam:revoke-role-sessions",
        "arn:aws:iam::123456789012:role/eks-demo-general-node",
    )
    binding = _plan("policy-kubernetes-anonymous-access-granted")
    assert [(a["action"], a["target"]) for a in binding["actions"]] == [("k8s:delete-rolebinding", "anonymous-view")]  # type: ignore[attr-defined]


def test_a_compromised_image_is_blocked_unless_protected() -> None:
    report = _plan("impact-runtime-crypto-miner-executed-deployment")
    assert report["rule"] == "compromised-image"
    actions = report["actions"]
    assert isinstance(actions, list)
    (block,) = [a for a in actions if a["action"] == "k8s:block-image"]
    assert (block["target"], block["status"]) == ("public.ecr.aws/nginx/nginx:1.27", "planned")
    protected = _plan(
        "impact-runtime-crypto-miner-executed-deployment", Settings(protected_images=("public.ecr.aws/nginx/*",))
    )
    assert isinstance(protected["actions"], list)
    (kept,) = [a for a in protected["actions"] if a["action"] == "k8s:block-image"]
    assert kept["status"] == "skipped"
    assert "PROTECTED_IMAGES" in kept["detail"]
