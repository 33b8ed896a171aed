"""Slack's interactivity requests: signature, freshness, approvers, and what a click decides."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.notifiers import slack_interactivity, slack_message

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APPROVER = "U024BE7LH"


def signed(payload: dict[str, Any], *, at: float | None = None, secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    """Headers and body as Slack sends them (v0 signature of `v0:<timestamp>:<body>`)."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(at if at is not None else time.time()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": f"v0={digest}"}, body


def click(action_id: str, value: str, user: str = APPROVER) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user}, "actions": [{"action_id": action_id, "value": value}]}


class Decisions:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, incident_id: str, **how: Any) -> dict[str, Any]:
        self.calls.append({"incident_id": incident_id, **how})
        return {
            "message": f"step 1 (k8s:isolate-pod on ns/web): approved by {how['who']}",
            "carried_out": {"actions": [{"status": "succeeded", "action": "k8s:isolate-pod", "target": "ns/web"}]},
        }


def handle(headers: dict[str, str], body: bytes, decide: Decisions, clock: float | None = None) -> Any:
    return slack_interactivity.handle(headers, body, signing_secret=SECRET, approvers=(APPROVER,), decide=decide,
                                      clock=(lambda: clock) if clock is not None else time.time)  # fmt: skip


def test_a_signed_click_by_an_approver_decides() -> None:
    decide = Decisions()
    status, answer = handle(*signed(click("approve", "inc-1|*|r1")), decide)
    assert status == 200
    decided = {"incident_id": "inc-1", "approve": True, "steps": None, "who": f"slack:{APPROVER}", "revision": "r1"}
    assert decide.calls == [decided]
    assert "approved by slack:U024BE7LH" in answer["text"]
    assert answer["response_type"] == "ephemeral"


def test_a_step_button_and_reject_name_what_they_decide() -> None:
    decide = Decisions()
    handle(*signed(click("approve-step-2", "inc-1|2|r1")), decide)
    handle(*signed(click("reject", "inc-1|*|r1")), decide)
    assert [(c["approve"], c["steps"]) for c in decide.calls] == [(True, (2,)), (False, None)]


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (lambda: signed(click("approve", "inc-1|*|r1"), secret="not-the-secret"), "another secret"),
        (lambda: signed(click("approve", "inc-1|*|r1"), at=time.time() - 301), "older than five minutes"),
        (lambda: signed(click("approve", "inc-1|*|r1"), at=time.time() + 301), "from the future"),
        (lambda: ({"x-slack-request-timestamp": str(int(time.time()))}, b"payload=%7B%7D"), "no signature"),
    ],
    ids=["bad-signature", "stale", "future", "unsigned"],
)
def test_unsigned_wrongly_signed_or_replayed_requests_are_refused(request_: Any, why: str) -> None:
    decide = Decisions()
    headers, body = request_()
    status, answer = handle(headers, body, decide)
    assert (status, answer) == (401, {"error": "invalid or stale signature"}), why
    assert decide.calls == []


def test_a_replayed_body_with_a_fresh_timestamp_does_not_verify() -> None:
    headers, body = signed(click("approve", "inc-1|*|r1"), at=time.time() - 400)
    headers["x-slack-request-timestamp"] = str(int(time.time()))
    assert handle(headers, body, Decisions())[0] == 401


def test_someone_not_on_the_approvers_list_decides_nothing() -> None:
    decide = Decisions()
    status, answer = handle(*signed(click("approve", "inc-1|*|r1", user="U999OTHER")), decide)
    assert status == 200
    assert "not on the approvers list" in answer["text"]
    assert decide.calls == []


@pytest.mark.parametrize(
    "payload",
    [{"type": "block_actions"}, click("delete-everything", "inc-1|*|r1"), click("approve", "inc-1|x|r1"),
     click("approve", "|*|r1"), click("approve", "inc-1|*|r1", user="<!channel>")],
)  # fmt: skip
def test_a_payload_this_app_did_not_send_is_a_bad_request(payload: dict[str, Any]) -> None:
    decide = Decisions()
    assert handle(*signed(payload), decide)[0] == 400
    assert decide.calls == []


def test_the_answer_shows_event_text_as_text() -> None:
    def hostile(incident_id: str, **how: Any) -> dict[str, Any]:
        return {"message": "no plan is waiting for <!channel> <http://evil.example|x>"}

    _, answer = slack_interactivity.handle(*signed(click("approve", "x|*|r1")), signing_secret=SECRET,
                                           approvers=(APPROVER,), decide=hostile)  # fmt: skip
    assert "<!channel>" not in answer["text"]
    assert "<http" not in answer["text"]


def _steps(*numbers: int) -> list[dict[str, Any]]:
    """The steps a message shows (a button is offered only for steps it shows)."""
    return [{"action": "k8s:isolate-pod", "target": f"ns/web-{i}", "status": "awaiting-approval", "detail": "d",
             "step": i} for i in numbers]  # fmt: skip


def test_a_message_with_waiting_steps_has_the_buttons() -> None:
    report = {
        "incident": {"id": "inc-1", "type": "Execution:Runtime/ReverseShell", "severity": "high", "title": "t"},
        "rule": "r", "mode": "live", "actions": _steps(1, 2),
        "approval": {"waiting": [1, 2], "expires_at": "2026-12-01T20:00", "revision": "r1"},
    }  # fmt: skip
    (buttons,) = [b for b in slack_message.build(report)["attachments"][0]["blocks"] if b["type"] == "actions"]
    values = [(e["action_id"], e["value"]) for e in buttons["elements"]]
    assert values == [("approve", "inc-1|*|r1"), ("reject", "inc-1|*|r1"), ("approve-step-1", "inc-1|1|r1"),
                      ("approve-step-2", "inc-1|2|r1")]  # fmt: skip
    del report["approval"]
    assert not [b for b in slack_message.build(report)["attachments"][0]["blocks"] if b["type"] == "actions"]


def test_a_release_click_asks_the_release_and_nothing_else() -> None:
    decide = Decisions()
    released: list[dict[str, Any]] = []

    def release(incident_id: str, **how: Any) -> dict[str, Any]:
        released.append({"incident_id": incident_id, **how})
        return {"message": "step 3 (k8s:isolate-pod on ns/web): release requested by slack:U024BE7LH"}

    headers, body = signed(click("release", "inc-1|*|r1"))
    status, answer = slack_interactivity.handle(headers, body, signing_secret=SECRET, approvers=(APPROVER,),
                                                decide=decide, release=release)  # fmt: skip
    assert status == 200
    assert released == [{"incident_id": "inc-1", "steps": None, "who": f"slack:{APPROVER}", "revision": "r1"}]
    assert decide.calls == []
    assert "release requested" in answer["text"]
    _, off = handle(*signed(click("release", "inc-1|*|r1")), decide)
    assert "not enabled" in off["text"]


def test_a_message_about_undoable_steps_has_a_release_button() -> None:
    report = {
        "incident": {"id": "inc-1", "type": "Execution:Runtime/ReverseShell", "severity": "high", "title": "t"},
        "rule": "r", "mode": "live", "actions": _steps(1, 2, 3), "undo": {"steps": [1, 3], "revision": "r1"},
    }  # fmt: skip
    (buttons,) = [b for b in slack_message.build(report)["attachments"][0]["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in buttons["elements"]] == [("release", "inc-1|*|r1")]


def test_a_member_of_an_approver_group_decides_and_an_unreadable_group_approves_nobody() -> None:
    def members(group: str) -> set[str]:
        if group == "SBROKEN":
            raise RuntimeError("missing_scope")
        return {"U777MEMBER"} if group == "S0ONCALL" else set()

    assert slack_interactivity.approved_by("U777MEMBER", ("S0ONCALL",), members)
    assert not slack_interactivity.approved_by("U888OTHER", ("S0ONCALL",), members)
    assert not slack_interactivity.approved_by("U777MEMBER", ("SBROKEN",), members)
    assert not slack_interactivity.approved_by("U777MEMBER", ("S0ONCALL",), None)  # no token: groups unchecked
    decide = Decisions()
    headers, body = signed(click("approve", "inc-1|*|r1", user="U777MEMBER"))
    status, _ = slack_interactivity.handle(headers, body, signing_secret=SECRET, approvers=("S0ONCALL",),
                                           decide=decide, members=members)  # fmt: skip
    assert status == 200
    assert decide.calls[0]["who"] == "slack:U777MEMBER"
