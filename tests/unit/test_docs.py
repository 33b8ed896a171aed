"""The documentation keeps up with the code: examples load, every action and option is described."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import yaml

from chalicelib import actions
from chalicelib.actions.base import Action
from chalicelib.policy.loader import parse_rules
from chalicelib.policy.model import Match, Rule, Step
from chalicelib.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _example(action: Action) -> str:
    doc = inspect.getdoc(type(action)) or ""
    assert "Example::" in doc, f"{action.name}: docstring has no Example"
    return textwrap.dedent(doc.split("Example::", 1)[1])


@pytest.mark.parametrize("action", list(actions.REGISTRY.values()), ids=lambda a: a.name)
def test_docstring_examples_are_valid_rules(action: Action) -> None:
    steps = yaml.safe_load(_example(action))
    assert [s["action"] for s in steps] == [action.name]
    parse_rules({"version": 1, "rules": [{"name": "doc-example", "actions": steps}]}, f"{action.name} docstring")


@pytest.mark.parametrize("name", sorted(actions.REGISTRY))
def test_readme_describes_every_action(name: str) -> None:
    assert f"`{name}`" in README


@pytest.mark.parametrize("field", sorted({*Match.model_fields, *Rule.model_fields, *Step.model_fields} - {"match"}))
def test_readme_describes_every_rule_option(field: str) -> None:
    assert f"{field}:" in README, f"rule option {field!r} is not in the README's rules example"


def test_readme_describes_every_setting() -> None:
    env_names = {
        "DRY_RUN", "RULES_FILE", "PROTECTED_NAMESPACES", "RESPONDER_NAMESPACE", "PROTECTED_NODES",
        "PROTECTED_NODE_LABELS", "PROTECTED_CLUSTERS", "MAX_NODES_CORDONED_PER_HOUR", "EVIDENCE_BUCKET",
        "EVIDENCE_PREFIX", "EVIDENCE_DIR", "LOG_TAIL_LINES", "KUBECONFIG", "PROTECTED_INSTANCES",
        "MAX_INSTANCES_ISOLATED_PER_HOUR", "PROTECTED_PRINCIPALS", "ALLOWED_ACCOUNTS", "CLUSTERS", "PROTECTED_KEYS",
        "PROTECTED_KEY_TAG", "KMS_ADMIN_PRINCIPALS", "KEY_POLICY_BUCKET", "PROTECTED_IMAGES",
    }  # fmt: skip
    source = inspect.getsource(Settings.from_env)
    read = {name for name in env_names if f'"{name}"' in source}
    assert read == env_names, "Settings.from_env and this list disagree"
    for name in env_names:
        assert f"`{name}`" in README, name
