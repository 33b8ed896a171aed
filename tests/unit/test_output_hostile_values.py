"""Hostile values in every field every output shows: Teams, PagerDuty, ServiceNow, the event bus
and the webhook keep them as text, link nothing of theirs, and stay strict JSON."""

from __future__ import annotations

import json

import pytest

from chalicelib.notifiers import facts, servicenow, teams
from tests.fuzzing.hostile import MARK, every_field_report, output_findings
from tests.unit.test_slack_hostile_values import HOSTILE

MORE = [
    f"[code]<img src=x onerror=alert(1)>[/code] {MARK}",
    f"{{{{DATE(2017-02-14T06:00:00Z, SHORT)}}}} {MARK}",
    f"www.evil.example {MARK}",
    f"<at>Security Team</at> {MARK}",
    f"[{MARK}](https://evil.example) **{MARK}**",
    f"javascript://evil.example/%0aalert(1) {MARK}",
]


@pytest.mark.parametrize("value", [*HOSTILE, *MORE], ids=range(len(HOSTILE) + len(MORE)))
def test_hostile_values_in_every_field_stay_text_in_every_output(value: str) -> None:
    for source in ("guardduty", "ecr", "inspector", "kms", "flowlogs"):
        report = every_field_report(value)
        report["incident"]["source"] = source
        assert output_findings(report) == [], source
        card = json.dumps(teams.message(report))
        assert MARK in card  # shown, not dropped
        found = servicenow.wanted(report)
        assert found is not None
        assert MARK in servicenow.note(found)


def test_a_value_is_defanged_not_lost() -> None:
    assert teams.inert("see http://evil.example/x and www.evil.example") == (
        "see hxxp[:]//evil.example/x and www[.]evil.example")  # fmt: skip
    assert teams.inert("{{DATE(x)}}") == "{ {DATE(x)} }"
    assert servicenow.inert("[code]<b>x</b>[/CODE]") == "(code)<b>x</b>(/CODE)"
    assert facts.of(every_field_report("x")).link is None  # a region that is not one links nothing
