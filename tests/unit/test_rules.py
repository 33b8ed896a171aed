from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chalicelib import validation
from chalicelib.errors import RulesError
from chalicelib.policy import loader
from chalicelib.policy.loader import load_rules, parse_rules
from chalicelib.settings import DEFAULT_RULES_FILE


def test_default_rules_load() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    names = [r.name for r in rules.rules]
    assert names[0] == "kms-failed-call"
    assert names.index("kms-no-change") < names.index("report-low-severity")
    assert names[-1] == "report-everything-else"


def test_default_rules_never_delete_pods() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    assert all(step.action != "k8s:delete-pod" for rule in rules.rules for step in rule.actions)


def _doc(**rule: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "my-rule", "actions": [{"action": "k8s:label-pod"}]}
    base.update(rule)
    return {"version": 1, "rules": [base]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(colour="red"), "rule 'my-rule': colour: not a known field"),
        (_doc(match={"severity": "high"}), "rule 'my-rule': match.severity: not a known field"),
        (_doc(match={"min_severity": "urgent"}), "rule 'my-rule': match.min_severity"),
        (_doc(match={"min_severity": "high", "max_severity": "low"}), "min_severity high is above max_severity low"),
        (_doc(match={"resource_kinds": ["planet"]}), "rule 'my-rule': match.resource_kinds.0"),
        (_doc(match={"privileged": "sometimes"}), "match.privileged"),
        (_doc(match={"privileged": "true"}), "match.privileged: Expected `bool | null`, got `str`"),  # never coerced
        (_doc(match={"min_cvss": "7.5"}), "match.min_cvss: Expected `float | null`, got `str`"),
        (_doc(actions=[{"action": "k8s:explode-pod"}]), "rule 'my-rule', action #1: unknown action 'k8s:explode-pod'"),
        (
            _doc(actions=[{"action": "k8s:delete-pod", "params": {"grace": 1}}]),
            "rule 'my-rule', action #1 (k8s:delete-pod) params: grace: not a known field",
        ),
        (
            _doc(actions=[{"action": "k8s:delete-pod", "params": {"grace_period_seconds": -1}}]),
            "grace_period_seconds: Expected `int` >= 0",
        ),
        (_doc(actions=[]), "rule 'my-rule': rule: a rule with no actions needs a `reason`"),
        (_doc(name="Bad Name"), "rule 'Bad Name': name: Expected `str` matching regex"),
        ({"version": 2, "rules": []}, "version: Invalid enum value 2"),
        ({"version": 1, "rules": []}, "rules: Expected `array` of length >= 1"),
        ([1], "expected a mapping"),
    ],
)
def test_invalid_rules_name_the_rule_and_the_problem(doc: object, message: str) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(doc, "my-rules.yaml")
    assert str(err.value).startswith("my-rules.yaml: ")
    assert message in str(err.value)


def test_duplicate_rule_names_are_rejected() -> None:
    doc = {"version": 1, "rules": [{"name": "a", "reason": "x"}, {"name": "a", "reason": "y"}]}
    with pytest.raises(RulesError, match="rule name 'a' is used twice"):
        parse_rules(doc, "f")


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)


def test_a_valid_custom_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(_doc(match={"namespaces": ["prod-*"], "min_severity": "high"})))
    rules = load_rules(path)
    assert rules.rules[0].match.namespaces == ("prod-*",)


def test_the_shipped_rules_load_from_their_parsed_copy_and_read_the_same_as_the_yaml() -> None:
    text = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
    assert loader.parsed_copy_path(DEFAULT_RULES_FILE).read_text(encoding="utf-8") == loader.parsed_copy(text)
    assert loader._parsed_copy(DEFAULT_RULES_FILE, text) is not None  # used: no YAML parser at a cold start
    assert load_rules(DEFAULT_RULES_FILE) == parse_rules(validation.load_text(text), str(DEFAULT_RULES_FILE))


def test_a_parsed_copy_of_other_text_is_never_used(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: from-yaml\n    reason: the YAML decides\n")
    loader.parsed_copy_path(rules).write_text(loader.parsed_copy(
        "version: 1\nrules:\n  - name: from-copy\n    reason: stale\n"))  # fmt: skip
    assert [r.name for r in load_rules(rules).rules] == ["from-yaml"]
    loader.parsed_copy_path(rules).write_text("{not json")
    assert [r.name for r in load_rules(rules).rules] == ["from-yaml"]


def test_a_parsed_copy_is_validated_as_the_yaml_would_be(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    text = "version: 1\nrules:\n  - name: ok\n    reason: fine\n"
    rules.write_text(text)
    forged = json.loads(loader.parsed_copy(text))
    forged["rules"]["rules"][0]["actions"] = [{"action": "k8s:explode-pod"}]
    loader.parsed_copy_path(rules).write_text(json.dumps(forged))
    with pytest.raises(RulesError, match="unknown action 'k8s:explode-pod'"):
        load_rules(rules)
