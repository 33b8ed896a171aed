"""Reading what others write: the models' base classes and the one way a value is checked against a
model (msgspec), the depth limit of an event, and YAML text to data.

Two kinds of model: `Strict` for what an operator writes (the rules file, an action's `params`), where
an unknown key is a mistake to name; `Lenient` for what AWS writes (events), where AWS adds fields
over time and unknown ones are ignored. Both are frozen, and checked in msgspec's strict mode: no
string turns into a number, no number into a boolean.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Any, TypeVar

import msgspec
import msgspec.json

from chalicelib.errors import EventError

ValidationError = msgspec.ValidationError
T = TypeVar("T")

# A float that is a number: NaN and the infinities fail these bounds (json.loads accepts both).
Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Written by an operator: unknown keys are errors."""


class Lenient(msgspec.Struct, frozen=True):
    """Written by AWS: unknown keys are ignored."""


def parse(value: Any, model: type[T]) -> T:
    """`value` (JSON-like: dicts, lists, strings, numbers) as a `model`, or ValidationError."""
    return msgspec.convert(value, model, strict=True)


_AT = re.compile(r" - at `\$([^`]*)`$")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_NAMED = re.compile(r"^Object (missing required|contains unknown) field `([^`]*)`$")
_SAID = {"missing required": "required, missing", "contains unknown": "not a known field"}
_NOT_FINITE = re.compile(r"^Expected `float` [<>]= -?1\.7976931348623157e\+308$")


def problem(exc: ValidationError) -> tuple[list[str | int], str]:
    """Where the value is wrong (keys and list indexes from the top) and what is wrong there."""
    text = str(exc)
    where: list[str | int] = []
    at = _AT.search(text)
    if at:
        text = text[: at.start()]
        for name, index in _STEP.findall(at.group(1)):
            where.append(name if name else int(index) if index.isdigit() else "<key>")  # msgspec names no key
    named = _NAMED.match(text)
    if named:  # the field is part of where: "detail.id: required, missing"
        where.append(named.group(2)[:80])
        text = _SAID[named.group(1)]
    elif _NOT_FINITE.match(text):
        text = "Expected a finite number"
    return where, text[:200]  # a key the pattern above cannot read is in msgspec's text: bounded


def describe(exc: ValidationError, whole: str = "event") -> str:
    """An invalid value's problem in one line, with where it is (`whole` when it is the value as a
    whole): for an error message."""
    where, what = problem(exc)
    return f"{'.'.join(str(p) for p in where) or whole}: {what}"


def given(value: msgspec.Struct) -> dict[str, Any]:
    """The fields of `value` that differ from their defaults, as JSON-like values."""
    out: dict[str, Any] = {}
    for info in msgspec.structs.fields(value):
        current = getattr(value, info.name)
        if info.default is not msgspec.NODEFAULT and current == info.default:
            continue
        if info.default_factory is not msgspec.NODEFAULT and current == info.default_factory():
            continue
        out[info.name] = plain(current)
    return out


def plain(value: Any) -> Any:
    """A model (or anything holding models) as JSON would hold it: dicts, lists, strings, numbers."""
    return msgspec.json.decode(msgspec.json.encode(value))


MAX_DEPTH = 64  # far deeper than any AWS event; deeper input is an attack on the parser, not data


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """EventError when `value` nests objects or arrays deeper than `limit` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise EventError(f"the event nests objects or arrays more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


class TextError(ValueError):
    """The text is neither JSON nor YAML; says where, as PyYAML does."""


def load_text(text: str) -> Any:
    """YAML text to data with the safe loader, libyaml's where the wheel has it (the Lambda's does).

    A document that is JSON (a kubeconfig written by a tool, a rules file's parsed copy) is read as
    JSON: the same data, without importing PyYAML (some 20 ms of a cold start). Safe loading only (no
    Python objects); raises TextError on bad text."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML's flow style, not JSON: PyYAML reads it (or names what is wrong)
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise TextError(str(exc)) from None
