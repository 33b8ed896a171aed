"""Hostile values in every field a Slack message shows: no mention, no foreign link, no formatting."""

from __future__ import annotations

import pytest

from chalicelib.notifiers import facts, slack_message
from tests.fuzzing.hostile import MARK, every_field_report, mrkdwn
from tests.fuzzing.hostile import slack_findings as findings

HOSTILE = [
    f"<!channel> {MARK}",
    f"<!here|here> {MARK}",
    f"<@U024BE7LH> {MARK}",
    f"<!subteam^S123|team> {MARK}",
    f"<http://evil.example|{MARK}>",
    f"http://evil.example/{MARK}",
    f"evil.example {MARK}",
    f"*{MARK}*",
    f"_{MARK}_",
    f"~{MARK}~",
    f"`{MARK}` <!here>",
    f"```{MARK}``` <!channel>",
    f"{MARK}\n<!everyone>",
    f"x|pwn> <!channel> <http://evil.example {MARK}",
    f"&lt;!channel&gt; {MARK}",
    f"{MARK} " + "`" * 7 + " <!channel>",
    f"{MARK} " + "x" * 5000 + " `<!channel>",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_in_every_field_are_shown_as_text(value: str) -> None:
    for source in ("guardduty", "ecr", "inspector", "kms", "flowlogs"):
        report = every_field_report(value)
        report["incident"]["source"] = source
        message = slack_message.build(report)
        assert findings(message) == {"mentions": [], "foreign links": [], "formatted event text": []}, source
        assert MARK in "".join(mrkdwn(message)), "the value is still shown"  # as text, not dropped


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_a_rejected_events_id_and_error_are_text_too(value: str) -> None:
    message = slack_message.build({"event_id": value, "error": value})
    assert findings(message) == {"mentions": [], "foreign links": [], "formatted event text": []}


def test_console_links_are_built_only_from_valid_parts() -> None:
    report = every_field_report("x")
    report["incident"].update(source="guardduty", region="x|pwn> <!channel> <http://evil.example", id="abc")
    assert facts.console_link(report["incident"]) is None
    report["incident"].update(region="eu-west-1", id="0f58ba0fda05c4a3253c92dd408cff48")
    assert facts.console_link(report["incident"]) == (
        "https://eu-west-1.console.aws.amazon.com/guardduty/home?region=eu-west-1"
        "#/findings?macros=current&fId=0f58ba0fda05c4a3253c92dd408cff48"
    )
    report["incident"].update(id="0f58<!channel>")
    assert facts.console_link(report["incident"]) is None


def test_the_checker_finds_what_a_naive_message_would_let_through() -> None:
    naive = {"text": f"<!channel> <http://evil.example|x> *{MARK}*", "attachments": [{"blocks": []}]}
    found = findings(naive)
    assert found["mentions"] == ["<!channel>"]
    assert found["foreign links"] == ["http://evil.example"]
    assert found["formatted event text"]
