"""Load and validate a rules file once; errors name the file, the rule and the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from chalicelib import actions, validation
from chalicelib.errors import RulesError
from chalicelib.policy.model import RulesFile
from chalicelib.validation import ValidationError, describe, parse, problem


def load_rules(path: Path) -> RulesFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    doc = _parsed_copy(path, text)
    if doc is None:
        try:
            doc = validation.load_text(text)  # libyaml's loader
        except validation.TextError as exc:
            raise RulesError(f"{path}: not valid YAML: {exc}") from None
    return parse_rules(doc, str(path))


def parsed_copy_path(path: Path) -> Path:
    """Where a rules file's parsed copy is kept: `rules.yaml` -> `rules.yaml.json`."""
    return path.with_name(path.name + ".json")


def parsed_copy(text: str) -> str:
    """The parsed copy of a rules file's text: its data as JSON, with the SHA-256 of the text it
    was made from (`python -m chalicelib.generate.permissions` writes the shipped file's)."""
    return json.dumps({"sha256": _digest(text), "rules": validation.load_text(text)}, indent=1, default=str) + "\n"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parsed_copy(path: Path, text: str) -> Any:
    """The data of `text` from its parsed copy, when there is one made from this very text (a cold
    start then never imports PyYAML); None otherwise. The data is validated as the YAML's would be."""
    try:
        copy = json.loads(parsed_copy_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(copy, dict) or copy.get("sha256") != _digest(text):
        return None  # the YAML changed since: it is what the operator reads, so it is what is loaded
    return copy.get("rules")


def parse_rules(doc: Any, origin: str) -> RulesFile:
    if not isinstance(doc, dict):
        raise RulesError(f"{origin}: expected a mapping with `version` and `rules`")
    try:
        rules = parse(doc, RulesFile)
    except ValidationError as exc:
        raise RulesError(f"{origin}: {_explain(exc, doc)}") from None
    for rule in rules.rules:
        for index, step in enumerate(rule.actions):
            where = f"{origin}: rule {rule.name!r}, action #{index + 1}"
            try:
                action = actions.get(step.action)
            except KeyError as exc:
                raise RulesError(f"{where}: {exc.args[0]}") from None
            try:
                parse(step.params, action.params_model)
            except ValidationError as exc:
                raise RulesError(f"{where} ({step.action}) params: {describe(exc, 'params')}") from None
    return rules


def _rule_name(doc: dict[str, Any], index: Any) -> str:
    rules = doc.get("rules")
    if isinstance(index, int) and isinstance(rules, list) and index < len(rules):
        entry = rules[index]
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            return f"rule {entry['name']!r}"
    return f"rule #{index + 1}" if isinstance(index, int) else "rules"


def _explain(exc: ValidationError, doc: dict[str, Any]) -> str:
    loc, what = problem(exc)
    if len(loc) >= 2 and loc[0] == "rules":  # noqa: PLR2004
        return f"{_rule_name(doc, loc[1])}: {'.'.join(str(p) for p in loc[2:]) or 'rule'}: {what}"
    return f"{'.'.join(str(p) for p in loc) or 'file'}: {what}"
