"""Reports as the responder makes them, for the outputs' tests: a real event through the real
rules (plan mode), then its steps as a live run reports them."""

from __future__ import annotations

import copy
from typing import Any

from chalicelib.policy.loader import load_rules
from chalicelib.response.execute import Responder
from chalicelib.response.report import Mode
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from chalicelib.sources import guardduty
from tests.conftest import load_event

RULES = load_rules(DEFAULT_RULES_FILE)
EVENT = "execution-runtime-reverse-shell"


def planned(name: str = EVENT, **detail: Any) -> dict[str, Any]:
    event = load_event(name)
    event["detail"].update(detail)
    return Responder(RULES, Settings()).handle(guardduty.to_incident(event), Mode.PLAN).to_dict()


def live(name: str = EVENT, status: str = "succeeded", **detail: Any) -> dict[str, Any]:
    """The report of a live run whose every step ended `status`."""
    report = planned(name, **detail)
    report["mode"] = "live"
    for index, action in enumerate(report["actions"], 1):
        action.update(status=status, step=index, detail=f"{action['action']}: {status}")
    report["event_id"] = "e1"
    return report


def released(name: str = EVENT) -> dict[str, Any]:
    report = copy.deepcopy(live(name))
    report["released_by"] = "alice@example.com"
    for action in report["actions"]:
        action["detail"] = "released: put back as it was"
    return report


def approved(name: str = EVENT) -> dict[str, Any]:
    return {**live(name), "approved_by": ["U024BE7LH"]}


def rejected() -> dict[str, Any]:
    return {"event_id": "bad-1", "error": "not a GuardDuty finding: detail.type missing"}
