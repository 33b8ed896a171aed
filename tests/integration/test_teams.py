"""Microsoft Teams: a Workflows webhook stand-in that checks each message's Adaptive Card."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.notifiers import facts
from chalicelib.notifiers.base import notify
from devstack import stand_ins
from tests import reports
from tests.integration.outputs import built, secret

pytestmark = pytest.mark.integration
SIGNED_PATH = "/workflows/3f1c0a8e/triggers/manual/paths/invoke?sig=Zm9vYmFyc2VjcmV0"


@pytest.fixture
def teams() -> Iterator[stand_ins.StandIn]:
    server = stand_ins.teams()
    yield server
    server.close()


def _texts(card: Any) -> list[str]:
    if isinstance(card, dict):
        found = [card["text"]] if card.get("type") == "TextRun" else []
        return found + [t for v in card.values() for t in _texts(v)]
    return [t for v in card for t in _texts(v)] if isinstance(card, list) else []


def test_every_report_is_a_card_teams_accepts_with_the_slack_messages_facts(
    teams: stand_ins.StandIn, aws_session: Any
) -> None:
    (notifier,) = built({"TEAMS_WEBHOOK_SECRET": secret(aws_session, teams.url + SIGNED_PATH)}, aws_session)
    sent = [reports.live(), reports.live(status="failed"), reports.approved(), reports.released(), reports.rejected()]
    assert all(d.delivered for r in sent for d in notify(r, [notifier]))
    assert teams.refused == []
    assert len(teams.received) == len(sent)
    assert teams.received[0].path == SIGNED_PATH.split("?", maxsplit=1)[0]
    texts = _texts(teams.received[0].json)
    found = facts.of(sent[0])
    for label, value in found.fields:
        assert f"{label}: " in texts
        assert value in texts
    assert any(found.steps[0].action in t for t in texts)
    styles = [r.json["attachments"][0]["content"]["body"][0]["style"] for r in teams.received]
    assert styles[:2] == ["good", "attention"]


def test_the_secret_url_never_appears_in_an_error(teams: stand_ins.StandIn, aws_session: Any) -> None:
    url = teams.url + "/nowhere/Zm9vYmFyc2VjcmV0"  # a wrong path: the stand-in answers 404
    (notifier,) = built({"TEAMS_WEBHOOK_SECRET": secret(aws_session, url)}, aws_session)
    (delivery,) = notify(reports.live(), [notifier])
    assert not delivery.delivered
    assert "Teams answered 404" in str(delivery.error)
    assert "Zm9vYmFyc2VjcmV0" not in json.dumps(delivery.to_dict())
    assert "127.0.0.1" not in str(delivery.error)
