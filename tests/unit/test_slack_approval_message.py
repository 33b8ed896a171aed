"""An approver sees every step a button acts on: no step cut, buttons only for steps shown in full."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.notifiers import slack_message
from chalicelib.notifiers.slack_message import TEXT_LIMIT
from tests.unit.test_notifiers import _report


def _long_plan(steps: int, waiting: list[int], undoable: list[int] | None = None) -> dict[str, Any]:
    report = _report()
    report["actions"] = [
        {"action": "k8s:isolate-pod", "target": f"payments/web-{i}", "step": i,
         "status": "awaiting-approval" if i in waiting else "succeeded",
         "detail": f"step {i} says everything it will do: " + "ensure the deny-all policy, move selectors; " * 15}
        for i in range(1, steps + 1)
    ]  # fmt: skip
    report["approval"] = {"waiting": waiting, "expires_at": "2999-01-01T00:00:00+00:00", "revision": "r1"}
    if undoable:
        report["undo"] = {"steps": undoable, "revision": "r1"}
    return report


def _messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [message, *message.get("followups", [])]


def _buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["attachments"][0]["blocks"] if b["type"] == "actions"
            for e in b["elements"]]  # fmt: skip


def _text(message: dict[str, Any]) -> str:
    return "\n".join(b["text"]["text"] for b in message["attachments"][0]["blocks"]
                     if b["type"] == "section" and "text" in b)  # fmt: skip


def test_every_waiting_step_is_shown_whole_beside_its_button() -> None:
    message = slack_message.build(_long_plan(15, [13, 14, 15]))
    sections = [b for b in message["attachments"][0]["blocks"] if b["type"] == "section" and "text" in b]
    assert all(len(b["text"]["text"]) <= TEXT_LIMIT for b in sections)
    text = _text(message)
    for step in range(1, 16):
        assert f"{step}. `k8s:isolate-pod` `payments/web-{step}`" in text  # none cut off
    assert text.count("move selectors;`") == 15  # each detail to its end
    assert _buttons(message) == ["approve", "reject", "approve-step-13", "approve-step-14", "approve-step-15"]
    assert "followups" not in message


def test_steps_beyond_one_message_follow_with_their_own_buttons() -> None:
    message = slack_message.build(_long_plan(30, [5, 6, 7, 8, 28], undoable=[1, 29]))
    first, second = _messages(message)
    # Not every waiting step is in the first message: no button there approves or releases all of them.
    assert _buttons(first) == ["approve-step-5", "approve-step-6", "approve-step-7"]
    assert _buttons(second) == ["approve-step-28"]
    for part in (first, second):
        shown = _text(part)
        for button in _buttons(part):
            step = button.rsplit("-", 1)[1]
            assert f"{step}. `k8s:isolate-pod`" in shown  # what a button approves is in its own message
    said = json.dumps(first)
    assert "Step(s) 8 wait too: `eks-responder approve`" in said
    assert "eks-responder release" in json.dumps(second)  # the release spans both: the command, no button
    assert "Steps 26 to 30" in json.dumps(second)
    rendered = slack_message.render_text(message)
    assert "--- next message ---" in rendered
    assert "[Approve step 28]" in rendered


def test_no_button_without_a_stored_plan() -> None:
    report = _long_plan(3, [3])
    del report["approval"]  # what a report carries when no table keeps its plan
    assert _buttons(slack_message.build(report)) == []
