"""The documentation keeps up with the code: examples load, every action and option is described."""

from __future__ import annotations

import inspect
import re
import textwrap

import pytest
import yaml

from chalicelib import actions
from chalicelib import settings as settings_module
from chalicelib.actions.base import Action
from chalicelib.policy.loader import parse_rules
from chalicelib.policy.model import Match, Rule, Step
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
    # Every environment variable the settings module reads, found in its source: a new one fails here.
    source = inspect.getsource(settings_module)
    env_names = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    assert {"DRY_RUN", "CLUSTERS", "FLOW_DETECTORS", "THREAT_LIST"} <= env_names
    missing = sorted(name for name in env_names if f"`{name}`" not in README)
    assert missing == [], f"settings not in the README: {missing}"
