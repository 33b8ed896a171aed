"""Plan → store → approve → carry out, across separate responders (no state in memory), on the
local kube-apiserver and moto's DynamoDB."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Pod
from lightkube.resources.networking_v1 import NetworkPolicy

from chalicelib.actions.k8s.compute import AUTOSCALER_ANNOTATIONS
from chalicelib.entry import decisions
from chalicelib.executors.plans import PlanStore
from chalicelib.policy.loader import parse_rules
from chalicelib.response.plan import Plan
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"
RULES = ({"action": "k8s:label-pod"}, {"action": "k8s:isolate-pod", "approval": "required"})


def _isolated(admin: Client, namespace: str, pod: str) -> bool:
    labels = admin.get(Pod, pod, namespace=namespace).metadata.labels or {}
    policies = [p.metadata.name for p in admin.list(NetworkPolicy, namespace=namespace)]
    return bool(policies) and any(k.startswith("eks-responder.io/quarantine") for k in labels)


def _waiting(cluster: Cluster, make_responder: Any) -> Any:
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    first = make_responder(rules_with(*RULES), incidents_table=TABLE)
    return first.handle(incident(namespace=cluster.namespace, pods=("web",)), Mode.LIVE)


def test_a_step_that_needs_approval_waits_and_a_later_invocation_runs_it(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    # GIVEN a rule whose isolation needs approval: the label runs, the isolation waits, the plan is stored
    report = _waiting(cluster, make_responder)
    label, isolate = report.actions
    assert (label.status.value, isolate.status.value) == ("succeeded", "awaiting-approval")
    assert not _isolated(admin, cluster.namespace, "web")
    stored = store.get(report.incident.id)
    assert stored is not None
    assert [s.index for s in stored[0].waiting] == [2]

    # WHEN a human approves, and a new responder (another invocation) carries it out
    second = make_responder(rules_with(*RULES), incidents_table=TABLE)
    result = decisions.decide(store, report.incident.id, approve=True, steps=None, who="U024BE7LH",
                              run=lambda i: decisions.carry_out(store, second, i, ()))  # fmt: skip

    # THEN the pod is isolated, and the plan says who approved it
    assert "step 2 (k8s:isolate-pod on" in result["message"]
    assert "approved by U024BE7LH" in result["message"]
    assert [a["status"] for a in result["carried_out"]["actions"]] == ["succeeded"]
    assert _isolated(admin, cluster.namespace, "web")
    plan, _ = store.get(report.incident.id) or (None, 0)
    assert plan is not None
    assert plan.step(2).decided_by == "U024BE7LH"
    assert plan.step(2).state.value == "done"


def test_a_second_click_and_a_duplicate_carry_out_do_nothing(
    cluster: Cluster, make_responder: Any, store: PlanStore[Plan]
) -> None:
    report = _waiting(cluster, make_responder)
    runs: list[dict[str, Any]] = []
    second = make_responder(rules_with(*RULES), incidents_table=TABLE)

    def run(incident_id: str) -> dict[str, Any]:
        runs.append(decisions.carry_out(store, second, incident_id, ()))
        return runs[-1]

    decisions.decide(store, report.incident.id, approve=True, steps=None, who="U1", run=run)
    again = decisions.decide(store, report.incident.id, approve=True, steps=(2,), who="U2", run=run)
    assert "already done by U1" in again["message"]
    assert "carried_out" not in again
    assert decisions.carry_out(store, second, report.incident.id, ())["message"] == "no approved step is waiting to run"
    assert len(runs) == 1


def test_concurrent_carry_outs_run_a_step_once(cluster: Cluster, make_responder: Any, store: PlanStore[Plan]) -> None:
    report = _waiting(cluster, make_responder)
    decisions.decide(store, report.incident.id, approve=True, steps=None, who="U1", run=lambda i: {})
    responders = [make_responder(rules_with(*RULES), incidents_table=TABLE) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda r: decisions.carry_out(store, r, report.incident.id, ()), responders))
    assert sum("actions" in r for r in results) == 1


def test_a_rejected_step_never_runs(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    report = _waiting(cluster, make_responder)
    result = decisions.decide(store, report.incident.id, approve=False, steps=None, who="U1", run=lambda i: {})
    assert "rejected by U1" in result["message"]
    assert "carried_out" not in result
    late = decisions.decide(store, report.incident.id, approve=True, steps=None, who="U2", run=lambda i: {})
    assert "nothing changed" in late["message"]
    assert not _isolated(admin, cluster.namespace, "web")


def test_a_rejection_is_told_to_the_outputs_with_the_refused_steps(
    cluster: Cluster, make_responder: Any, store: PlanStore[Plan]
) -> None:
    from chalicelib.notifiers import events_out, facts
    from devstack.stand_ins import load_schema, schema_errors

    report = _waiting(cluster, make_responder)
    told: list[dict[str, Any]] = []

    class Bus:
        name = "eventbridge"

        def send(self, sent: dict[str, Any]) -> None:
            told.append(sent)

    decisions.decide(store, report.incident.id, approve=False, steps=None, who="U1", run=lambda i: {},
                     notifiers=[Bus()])  # fmt: skip
    (rejection,) = told
    assert facts.kind(rejection) == "rejection"
    assert {a["status"] for a in rejection["actions"]} == {"rejected"}
    assert [a["step"] for a in rejection["actions"]] == [p.index for p in report.plan.waiting]
    detail = events_out.detail(rejection)
    assert (detail["kind"], detail["by"]) == ("rejection", "U1")
    assert schema_errors(detail, load_schema("event-detail")) == []


def test_an_expired_plan_runs_nothing_and_says_so_once(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    report = _waiting(cluster, make_responder)
    later = datetime.now(UTC) + timedelta(days=1)
    first = decisions.decide(store, report.incident.id, approve=True, steps=None, who="U1", run=lambda i: {},
                             clock=lambda: later)  # fmt: skip
    assert "expired" in first["message"]
    assert "carried_out" not in first
    plan, version = store.get(report.incident.id) or (None, 0)
    assert plan is not None
    assert plan.step(2).state.value == "expired"
    second = decisions.decide(store, report.incident.id, approve=True, steps=None, who="U1", run=lambda i: {},
                              clock=lambda: later)  # fmt: skip
    assert "expired" in second["message"]
    assert "carried_out" not in second
    assert (store.get(report.incident.id) or (None, 0))[1] == version  # recorded once, not again
    assert not _isolated(admin, cluster.namespace, "web")


def test_a_target_replaced_since_the_plan_is_not_acted_on(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    report = _waiting(cluster, make_responder)
    admin.delete(Pod, "web", namespace=cluster.namespace, grace_period=0)
    cluster.pod("web", "node-a")  # same name, another pod
    second = make_responder(rules_with(*RULES), incidents_table=TABLE)
    result = decisions.decide(store, report.incident.id, approve=True, steps=None, who="U1",
                              run=lambda i: decisions.carry_out(store, second, i, ()))  # fmt: skip
    (step,) = result["carried_out"]["actions"]
    assert step["status"] == "skipped"
    assert "target changed since the plan was made" in step["detail"]
    assert not _isolated(admin, cluster.namespace, "web")


class Recorder:
    """A notifier that keeps what it was told (the subject here is how often, not the transport)."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, report: dict[str, Any]) -> None:
        self.sent.append(report)


def test_a_plan_nobody_answered_expires_and_is_told_once(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    report = _waiting(cluster, make_responder)
    told = Recorder()
    assert decisions.expire(store, [told])["expired"] == []  # not yet
    later = datetime.now(UTC) + timedelta(days=1)
    assert decisions.expire(store, [told], clock=lambda: later)["expired"] == [report.incident.id]
    assert decisions.expire(store, [told], clock=lambda: later)["expired"] == []
    (message,) = told.sent
    assert [(a["action"], a["status"]) for a in message["actions"]] == [("k8s:isolate-pod", "skipped")]
    assert "expired unanswered" in message["actions"][0]["detail"]
    plan, _ = store.get(report.incident.id) or (None, 0)
    assert plan is not None
    assert plan.step(2).state.value == "expired"
    assert not _isolated(admin, cluster.namespace, "web")


def test_an_approval_after_the_rule_went_dry_is_carried_out_as_a_dry_run(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    """Planned live, then the rule is switched to `dry_run: true`: the old message's approval runs
    in the stricter mode, and says so."""
    report = _waiting(cluster, make_responder)
    dry = parse_rules({"version": 1, "rules": [{"name": "test-rule", "dry_run": True, "actions": list(RULES)}]}, "t")
    later = make_responder(dry, incidents_table=TABLE)
    result = decisions.decide(store, report.incident.id, approve=True, steps=None, who="U1",
                              run=lambda i: decisions.carry_out(store, later, i, ()))  # fmt: skip
    carried = result["carried_out"]
    assert carried["mode"] == "dry-run"
    assert [a["status"] for a in carried["actions"]] == ["planned"], carried["actions"]
    assert any("is a dry run now" in n for n in carried["notes"])
    assert not _isolated(admin, cluster.namespace, "web")


def _eks_cluster(aws_session: Any, name: str, cidrs: list[str]) -> Any:
    eks = aws_session.client("eks")
    eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/eks-cluster",
                       resourcesVpcConfig={"subnetIds": [], "endpointPublicAccess": True,
                                           "endpointPrivateAccess": False, "publicAccessCidrs": cidrs})  # fmt: skip
    return eks


def test_an_anonymous_caller_loses_its_bindings_and_the_public_endpoint_is_restricted_once_approved(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan], aws_session: Any
) -> None:
    from dataclasses import replace

    from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

    from chalicelib.incident import Principal, PrincipalKind, PrincipalRole, ResourceKind
    from chalicelib.policy.loader import load_rules
    from chalicelib.settings import DEFAULT_RULES_FILE

    eks = _eks_cluster(aws_session, "local", ["0.0.0.0/0"])
    name = f"anon-view-{cluster.namespace}"
    anonymous = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}
    cluster.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": name}, "subjects": [anonymous],
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "view"}})  # fmt: skip
    caller = Principal(PrincipalKind.ANONYMOUS, "system:anonymous", groups=("system:unauthenticated",),
                       involved_as=PrincipalRole.CALLER)  # fmt: skip
    found = replace(incident(kind=ResourceKind.CLUSTER, type_="Discovery:Kubernetes/MaliciousIPCaller.Custom"),
                    principals=(caller,))  # fmt: skip
    settings = {"incidents_table": TABLE, "public_endpoint_cidrs": ("203.0.113.0/24",)}
    rules = load_rules(DEFAULT_RULES_FILE)

    report = make_responder(rules, **settings).handle(found, Mode.LIVE)

    assert report.rule == "anonymous-kubernetes-caller"
    by_action = {r.action: r for r in report.actions}
    assert by_action["k8s:delete-rolebinding"].status.value == "succeeded", by_action["k8s:delete-rolebinding"].detail
    with pytest.raises(ApiError):
        admin.get(ClusterRoleBinding, name)
    admin.get(ClusterRoleBinding, "system:public-info-viewer")  # Kubernetes' own: kept
    # the endpoint's exposure is reported, and its restriction waits for a human whatever the rules say
    assert "cluster local: public endpoint open to 0.0.0.0/0 (private access off)" in report.notes
    assert by_action["eks:restrict-public-endpoint"].status.value == "awaiting-approval"
    assert eks.describe_cluster(name="local")["cluster"]["resourcesVpcConfig"]["publicAccessCidrs"] == ["0.0.0.0/0"]

    second = make_responder(rules, **settings)
    result = decisions.decide(store, report.incident.id, approve=True, steps=None, who="U1",
                              run=lambda i: decisions.carry_out(store, second, i, ()))  # fmt: skip
    assert [a["status"] for a in result["carried_out"]["actions"]] == ["succeeded"], result
    config = eks.describe_cluster(name="local")["cluster"]["resourcesVpcConfig"]
    assert config["publicAccessCidrs"] == ["203.0.113.0/24"]
    (done,) = result["carried_out"]["actions"]
    assert "from 0.0.0.0/0 to 203.0.113.0/24" in done["detail"]


def test_every_decision_is_kept_per_step_and_the_timeline_shows_each(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan], caplog: pytest.LogCaptureFixture
) -> None:
    """Alice approves from the CLI, the step runs, Carol releases: Alice's approval is still in the
    step's history, and the timeline (audit lines and the table) shows the approval, the run and the
    release, each with who."""
    import logging

    from chalicelib.commands import timeline
    from chalicelib.commands.cli import JsonLines

    caplog.set_level(logging.INFO, logger="eks_responder")
    report = _waiting(cluster, make_responder)
    second = make_responder(rules_with(*RULES), incidents_table=TABLE)
    decisions.decide(store, report.incident.id, approve=True, steps=None, who="cli:alice",
                     run=lambda i: decisions.carry_out(store, second, i, ()))  # fmt: skip
    assert _isolated(admin, cluster.namespace, "web")
    released = decisions.release(store, second, report.incident.id, steps=None, who="cli:carol")
    assert {a["status"] for a in released["actions"]} == {"succeeded"}
    assert not _isolated(admin, cluster.namespace, "web")

    plan, _ = store.get(report.incident.id) or (None, 0)
    assert plan is not None
    history = [(e["what"], e.get("by")) for e in plan.step(2).history]
    assert history == [("planned", None), ("awaiting approval", None), ("approved", "cli:alice"), ("ran", None),
                       ("released", "cli:carol")]  # fmt: skip
    assert plan.step(2).decided_by == "cli:carol"  # the latest; the approval is not lost with it
    assert [(e["what"], e.get("by")) for e in plan.step(1).history][-1] == ("released", "cli:carol")

    lines = [JsonLines().format(r) for r in caplog.records if r.name == "eks_responder"]
    logged = timeline.from_audit(lines, report.incident.id)
    assert [(e.status, e.by) for e in logged.logged] == [("approved", "cli:alice")]  # the trail alone has it
    found = timeline.with_plan(logged, plan)
    shown = [(e.what, e.action, e.status, e.by) for e in timeline._ordered(found) if e.what != "response"]
    isolation = [entry for entry in shown if entry[1] == "k8s:isolate-pod"]
    # Each once: the audit lines show the run and the release; the history adds the decisions.
    assert isolation == [("decision", "k8s:isolate-pod", "awaiting approval", None),
                         ("decision", "k8s:isolate-pod", "approved", "cli:alice"),
                         ("approved", "k8s:isolate-pod", "succeeded", "cli:alice"),
                         ("release", "k8s:isolate-pod", "succeeded", "cli:carol")], isolation  # fmt: skip
    without_trail = timeline.with_plan(timeline.Timeline(report.incident.id), plan)  # the table alone
    kinds = [(e.what, e.status, e.by) for e in timeline._ordered(without_trail) if e.action == "k8s:isolate-pod"]
    assert kinds == [("decision", "awaiting approval", None), ("decision", "approved", "cli:alice"),
                     ("execution", "ran", None), ("release", "released", "cli:carol")]  # fmt: skip
    markdown = timeline.to_markdown(found)
    assert "cli:alice" in markdown
    assert "cli:carol" in markdown


def test_a_release_with_nothing_to_put_back_says_so_in_the_history(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    from lightkube.types import PatchType

    report = _waiting(cluster, make_responder)
    second = make_responder(rules_with(*RULES), incidents_table=TABLE)
    decisions.decide(store, report.incident.id, approve=True, steps=(2,), who="cli:alice",
                     run=lambda i: decisions.carry_out(store, second, i, ()))  # fmt: skip
    # Someone takes the investigation marks off by hand: the label step has nothing left to put back.
    pod = admin.get(Pod, "web", namespace=cluster.namespace)
    ours = [
        k
        for k in (pod.metadata.labels or {})
        if (k.startswith("eks-responder.io/") and "quarantine" not in k) or k == "app.kubernetes.io/managed-by"
    ]
    notes = [k for k in (pod.metadata.annotations or {})
             if k.startswith("eks-responder.io/incident") or k in AUTOSCALER_ANNOTATIONS]  # fmt: skip
    marks = {"metadata": {"labels": dict.fromkeys(ours), "annotations": dict.fromkeys(notes)}}
    admin.patch(Pod, "web", marks, namespace=cluster.namespace, patch_type=PatchType.MERGE)
    released = decisions.release(store, second, report.incident.id, steps=(1,), who="cli:carol")
    (label,) = released["actions"]
    assert label["status"] == "skipped", label
    plan, _ = store.get(report.incident.id) or (None, 0)
    assert plan is not None
    last = plan.step(1).history[-1]
    assert (last["what"], last["by"]) == ("release skipped", "cli:carol")  # not "released"
    assert last["detail"] == label["detail"]


def test_without_a_table_to_keep_the_plan_no_message_offers_buttons(cluster: Cluster, make_responder: Any) -> None:
    from chalicelib.notifiers import slack_message

    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    report = make_responder(rules_with(*RULES)).handle(incident(namespace=cluster.namespace, pods=("web",)), Mode.LIVE)
    said = report.to_dict()
    assert "approval" not in said
    assert "undo" not in said
    assert any("no INCIDENTS_TABLE keeps the plan: they will not run" in n for n in said["notes"])
    blocks = slack_message.build(said)["attachments"][0]["blocks"]
    assert [b for b in blocks if b["type"] == "actions"] == []
