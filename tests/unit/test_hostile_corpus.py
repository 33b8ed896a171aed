"""The hostile-values corpus in `make test`: one seed per source and detail type, every field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fuzzing import hostile

ESCAPES = ("live_mentions", "foreign_links", "formatted_event_text", "hostile_request_paths",
           "actions_on_malformed_deciding_fields", "invalid_output", "uncaught", "output_escapes")  # fmt: skip


@pytest.fixture(scope="module")
def seeds() -> list[dict[str, Any]]:
    return hostile.one_per_source(hostile.all_seeds())


def test_every_source_is_in_the_corpus(seeds: list[dict[str, Any]]) -> None:
    sources = {str(s.get("source") or ("flowlogs" if "awslogs" in s else "")) for s in seeds}
    assert {"aws.guardduty", "aws.ecr", "aws.inspector2", "aws.kms", "flowlogs", "aws.s3"} <= sources


def test_no_hostile_value_in_any_field_escapes(seeds: list[dict[str, Any]]) -> None:
    result = hostile.campaign(seeds)
    assert result["fields"] >= 400, result["fields"]  # every leaf of every seed, every flow column
    assert {k: result[k] for k in ESCAPES} == dict.fromkeys(ESCAPES, 0), result["examples"]


def test_the_corpus_sees_what_the_boundary_stops(seeds: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the identifier checks, hostile names reach planned targets and the corpus says so.
    from chalicelib import identifiers

    monkeypatch.setattr(identifiers, "_kubernetes", lambda incident: None)
    monkeypatch.setattr(identifiers, "_aws", lambda incident: None)
    result = hostile.campaign(seeds)
    assert result["hostile_request_paths"] > 0


def test_the_corpus_sees_what_the_outputs_neutralise(
    seeds: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the Teams card's defanging and ServiceNow's tag breaking, hostile values escape and the corpus says so.
    from chalicelib.notifiers import servicenow, teams

    monkeypatch.setattr(teams, "inert", lambda value, limit=1000: str(value))
    monkeypatch.setattr(servicenow, "inert", str)
    result = hostile.campaign(hostile.one_per_source(seeds)[:3])
    assert result["output_escapes"] > 0
