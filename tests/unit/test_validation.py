"""The one way a value is checked against a model: strict types, finite numbers, readable errors."""

from __future__ import annotations

import math
from typing import Annotated

import msgspec
import pytest

from chalicelib.validation import Finite, Lenient, Strict, ValidationError, describe, given, parse, problem


class Inner(Strict, frozen=True):
    count: Annotated[int, msgspec.Meta(ge=0)] = 0


class Outer(Strict, frozen=True, kw_only=True):
    name: str
    items: tuple[Inner, ...] = ()
    scores: dict[str, Finite] = msgspec.field(default_factory=dict)


class Event(Lenient, frozen=True):
    account: str = msgspec.field(name="accountId")
    score: Finite | None = None


def _error(value: object, model: type) -> str:
    with pytest.raises(ValidationError) as err:
        parse(value, model)
    return describe(err.value)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ({}, "name: required, missing"),
        ({"name": "a", "colour": "red"}, "colour: not a known field"),
        ({"name": "a", "items": [{"count": -1}]}, "items.0.count: Expected `int` >= 0"),
        ({"name": "a", "items": [{}, {"count": "1"}]}, "items.1.count: Expected `int`, got `str`"),
        ({"name": "a", "items": [{"count": True}]}, "items.0.count: Expected `int`, got `bool`"),
        ({"name": "a", "scores": {"x": math.nan}}, "scores.<key>: Expected a finite number"),
        ({"name": "a", "scores": {"x": -math.inf}}, "scores.<key>: Expected a finite number"),
        ([], "event: Expected `object`, got `array`"),
    ],
)
def test_an_invalid_value_is_described_with_where_it_is(value: object, said: str) -> None:
    assert _error(value, Outer) == said


def test_what_aws_writes_keeps_unknown_fields_out_and_reads_its_own_names() -> None:
    event = parse({"accountId": "123456789012", "score": 7, "addedLater": {"x": 1}}, Event)
    assert event == Event(account="123456789012", score=7.0)
    assert _error({"account": "123456789012"}, Event) == "accountId: required, missing"
    assert _error({"accountId": "1", "score": math.inf}, Event) == "score: Expected a finite number"


def test_a_hostile_field_name_is_cut_in_the_error() -> None:
    where, what = problem(_exc({"name": "a", "x" * 500: 1}))
    assert what == "not a known field"
    assert where == ["x" * 80]


def test_a_field_name_the_pattern_cannot_read_still_gives_a_bounded_error() -> None:
    where, what = problem(_exc({"name": "a", "x`" + "y" * 500: 1}))
    assert where == []
    assert what.startswith("Object contains unknown field")
    assert len(what) <= 200


def _exc(value: object) -> ValidationError:
    try:
        parse(value, Outer)
    except ValidationError as exc:
        return exc
    raise AssertionError("valid")


def test_models_are_frozen() -> None:
    outer = parse({"name": "a"}, Outer)
    with pytest.raises(AttributeError):
        outer.name = "b"  # type: ignore[misc]


def test_given_lists_only_what_differs_from_the_defaults() -> None:
    assert given(parse({"name": "a"}, Outer)) == {"name": "a"}
    assert given(parse({"name": "a", "items": [{"count": 2}], "scores": {}}, Outer)) == {
        "name": "a",
        "items": [{"count": 2}],
    }
