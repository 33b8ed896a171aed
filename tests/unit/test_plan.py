"""The plan as data: lossless through JSON, and who decides whether a step waits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.errors import EventError
from chalicelib.identifiers import incident_from_state
from chalicelib.incident import (
    ApiCall,
    Incident,
    PodRef,
    Principal,
    PrincipalKind,
    PrincipalRole,
    ResourceKind,
    Severity,  # fmt: skip
    WorkloadRef,
    incident_state,
)
from chalicelib.interfaces import Target
from chalicelib.policy.loader import parse_rules
from chalicelib.response import approvals
from chalicelib.response.plan import Plan, PlannedStep, StepState, needs_approval

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INCIDENT = Incident(
    id="abc", source="guardduty", type="Execution:Runtime/ReverseShell", title="t", severity=Severity.HIGH,
    score=8.0, account="123456789012", region="us-east-1", resource_kind=ResourceKind.POD, cluster="prod-eu",
    namespace="payments", workloads=(WorkloadRef("Deployment", "payments", "web"),),
    pods=(PodRef("payments", "web-1", "node-a"),), nodes=("node-a",), instance_ids=("i-0abc12345",),
    principals=(Principal(PrincipalKind.IAM_ROLE, "dev", "arn:aws:iam::123456789012:role/dev", ("g",),
                          PrincipalRole.CREDENTIALS, "AKIAABCDEFGHIJKLMNOP"),),
    images=("nginx:1.27",), remote_ips=("198.51.100.7",), privileged=True,
    api_call=ApiCall("get", "secrets", "x", "payments"),
    key_arns=(), details={"k": "v"},
)  # fmt: skip


def plan(*states: StepState) -> Plan:
    steps = tuple(
        PlannedStep(
            i, "k8s:isolate-pod", Target("pod", f"web-{i}", "payments", attributes={"uid": f"u{i}"}), {}, True, state
        )
        for i, state in enumerate(states)
    )
    return Plan(INCIDENT, "r", "live", steps, NOW.isoformat(), (NOW + timedelta(hours=4)).isoformat())


def test_a_plan_survives_json_unchanged() -> None:
    original = plan(StepState.WAITING, StepState.DONE)
    decided = original.steps[0].noted("approved", NOW.isoformat(), "cli:alice").noted("ran", NOW.isoformat())
    original = original.with_steps({0: decided})
    again = Plan.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original
    assert [e["what"] for e in again.steps[0].history] == ["approved", "ran"]
    assert again.steps[0].target is not None
    assert again.steps[0].target.attributes == {"uid": "u0"}
    assert incident_from_state(json.loads(json.dumps(incident_state(INCIDENT)))) == INCIDENT


def test_a_stored_incident_is_checked_again_when_read() -> None:
    state = incident_state(INCIDENT)
    state["namespace"] = "x/../kube-system"
    with pytest.raises(EventError):
        incident_from_state(state)


def test_decisions_change_only_waiting_steps_and_say_what_happened() -> None:
    decided = approvals.decide(plan(StepState.WAITING, StepState.WAITING), approve=True, steps=(1,), who="U1", now=NOW)
    assert decided.changed == (1,)
    assert [s.state for s in decided.plan.steps] == [StepState.WAITING, StepState.APPROVED]
    again = approvals.decide(decided.plan, approve=False, steps=(1, 7), who="U2", now=NOW)
    assert again.changed == ()
    assert "already approved by U1" in again.message
    assert "step 7: the plan has no such step" in again.message


def test_an_expired_plan_expires_its_waiting_steps() -> None:
    decided = approvals.decide(
        plan(StepState.WAITING), approve=True, steps=None, who="U1", now=NOW + timedelta(hours=5)
    )
    assert [s.state for s in decided.plan.steps] == [StepState.EXPIRED]
    assert "expired" in decided.message


def test_claiming_marks_approved_steps_done_so_they_run_once() -> None:
    claimed, approved = approvals.claim(plan(StepState.APPROVED, StepState.WAITING), NOW)
    assert list(approved) == [0]
    assert [s.state for s in claimed.steps] == [StepState.DONE, StepState.WAITING]
    assert approvals.claim(claimed, NOW)[1] == {}


RULES = parse_rules({
    "version": 1,
    "approvals": [
        {"actions": ["k8s:label-*"], "approval": "auto"},
        {"actions": ["k8s:isolate-pod"], "match": {"clusters": ["prod-*"], "max_severity": "high"},
         "approval": "required"},
    ],
    "rules": [
        {"name": "a", "actions": [{"action": "k8s:label-pod"}, {"action": "k8s:isolate-pod"},
                                  {"action": "k8s:cordon-node", "approval": "required"}]},
        {"name": "b", "approval": "required",
         "actions": [{"action": "k8s:label-pod"}, {"action": "k8s:isolate-pod", "approval": "auto"}]},
    ],
}, "test")  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "step", "cluster", "default", "required"),
    [
        (0, 0, "prod-eu", "required", False),  # the approvals list: labels never wait
        (0, 1, "prod-eu", "auto", True),  # isolation in production waits
        (0, 1, "dev", "auto", False),  # ... elsewhere it does not
        (0, 1, "dev", "required", True),  # ... unless the stage's default says so
        (0, 2, "dev", "auto", True),  # the step's own word
        (1, 0, "dev", "auto", True),  # the rule's word
        (1, 1, "prod-eu", "required", False),  # the step's word beats the rule's
    ],
)
def test_who_decides_whether_a_step_waits(rule: int, step: int, cluster: str, default: str, required: bool) -> None:
    chosen = RULES.rules[rule]
    incident = Incident(**{**INCIDENT.__dict__, "cluster": cluster})
    assert needs_approval(chosen.actions[step], chosen, incident, RULES, default) is required


def test_a_step_that_failed_after_a_write_is_released_and_one_that_changed_nothing_is_not() -> None:
    target = Target("instance", "i-0aaa")
    prior = {"disableApiTermination": False}

    def step(status: str, prior: dict[str, bool] | None) -> PlannedStep:
        return PlannedStep(1, "ec2:protect-instance", target, result={"status": status, "prior": prior})

    assert step("succeeded", prior).undoable
    assert step("failed", prior).undoable  # a change that did not read back: what did change is put back
    assert not step("failed", None).undoable
    assert not step("skipped", prior).undoable
