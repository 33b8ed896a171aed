"""Real events the responder is not subscribed to get one line that says why, not a list of missing
fields, and are never alerted as rejected."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.commands.cli import main
from chalicelib.entry import intake
from chalicelib.policy.loader import load_rules
from chalicelib.response.execute import Responder
from chalicelib.response.report import Mode
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from tests.conftest import EVENTS, SAMPLES, load_json


def _healthy() -> dict[str, Any]:
    event: dict[str, Any] = load_json(EVENTS / "runtime-coverage" / "guardduty-runtime-protection-unhealthy-eks.json")
    event["detail-type"] = "GuardDuty Runtime Protection Healthy"
    return event


def _inspector_ec2() -> dict[str, Any]:
    event: dict[str, Any] = load_json(SAMPLES / "ecr" / "Inspector2_Finding_ECR_PACKAGE_VULNERABILITY.2024-doc.json")
    event["detail"]["resources"] = [{"type": "AWS_EC2_INSTANCE", "id": "i-0abc1234567890def", "region": "us-east-1"}]
    return event


class Told:
    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, report: dict[str, Any]) -> None:
        self.sent.append(report)


@pytest.mark.parametrize(
    ("event", "said"),
    [
        (_healthy(), "GuardDuty Runtime Protection Healthy: the cluster's runtime coverage is healthy again"),
        (_inspector_ec2(), "an Inspector finding about AWS_EC2_INSTANCE, not a container image"),
    ],
    ids=["runtime-protection-healthy", "inspector-ec2"],
)
def test_an_event_not_subscribed_is_one_line_and_not_alerted(event: dict[str, Any], said: str) -> None:
    told = Told()
    result = intake.handle(copy.deepcopy(event), Responder(load_rules(DEFAULT_RULES_FILE), Settings()), Mode.PLAN,
                           notifiers=[told])  # fmt: skip
    assert set(result) == {"event_id", "not_handled"}
    assert result["not_handled"].startswith(said)
    assert "required, missing" not in result["not_handled"]
    assert told.sent == []


def test_replay_prints_why_and_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "healthy.json"
    path.write_text(json.dumps(_healthy()))
    assert main(["replay", str(path)]) == 0
    assert "  not handled: GuardDuty Runtime Protection Healthy: " in capsys.readouterr().out


def test_a_broken_event_of_a_handled_kind_is_still_rejected() -> None:
    event = _inspector_ec2()
    event["detail"]["resources"] = [{"type": "AWS_ECR_CONTAINER_IMAGE"}]  # the kind handled, fields missing
    result = intake.handle(event, Responder(load_rules(DEFAULT_RULES_FILE), Settings()), Mode.PLAN)
    assert "error" in result
    assert "not_handled" not in result
