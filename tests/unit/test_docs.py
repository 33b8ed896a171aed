"""The documentation keeps up with the code: examples load, every action and option is described,
the site builds strictly, and the README stays a front door."""

from __future__ import annotations

import inspect
import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from chalicelib import actions
from chalicelib import settings as settings_module
from chalicelib.actions.base import Action
from chalicelib.policy.loader import parse_rules
from chalicelib.policy.model import Match, Rule, Step
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
FRONT_DOOR_BYTES = 12 * 1024


def _page(name: str) -> str:
    return (DOCS / name).read_text()


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
def test_a_written_page_describes_every_action(name: str) -> None:
    written = [p for p in DOCS.glob("*.md") if f"| `{name}` |" in p.read_text()]
    assert written, f"{name} has no row in an action table of docs/ (actions.md, kms.md, ...)"


_OPTIONS = {*Match.__struct_fields__, *Rule.__struct_fields__, *Step.__struct_fields__} - {"match"}


@pytest.mark.parametrize("field", sorted(_OPTIONS))
def test_the_rules_page_describes_every_rule_option(field: str) -> None:
    assert f"{field}:" in _page("rules.md"), f"rule option {field!r} is not in the rules example of docs/rules.md"


def test_the_configuration_reference_has_every_setting_and_only_real_ones() -> None:
    from chalicelib.generate.settings_reference import REFERENCE

    # Every environment variable the settings module reads, found in its source: a new one fails here.
    source = inspect.getsource(settings_module)
    env_names = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    assert {"DRY_RUN", "CLUSTERS", "FLOW_DETECTORS", "THREAT_LIST", "AVML_SHA256"} <= env_names
    described = {n for names, _, _ in REFERENCE for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", names)}
    assert sorted(env_names - described) == [], "settings with no entry in chalicelib/generate/settings_reference.py"
    code = "".join(p.read_text() for p in (ROOT / "chalicelib").rglob("*.py") if p.name != "settings_reference.py")
    assert sorted(n for n in described if f'"{n}"' not in code) == [], "entries for variables nothing reads"
    page = _page("configuration.md")  # generated from it (python -m chalicelib.generate.permissions --check)
    assert all(f"| {names} |" in page for names, _, _ in REFERENCE)


def test_the_readme_is_a_front_door() -> None:
    assert len(README.encode()) < FRONT_DOOR_BYTES
    assert "make demo" in README
    assert "make test" in README
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):  # every relative link leads somewhere
        assert (ROOT / target).exists(), target


def test_every_written_page_is_in_the_site_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python/name:", ""))

    def pages(nav: object) -> set[str]:
        if isinstance(nav, str):
            return {nav}
        if isinstance(nav, dict):
            return {p for v in nav.values() for p in pages(v)}
        if isinstance(nav, list):
            return {p for v in nav for p in pages(v)}
        return set()

    written = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")} - {
        str(p.relative_to(DOCS)) for p in (DOCS / "reference").rglob("*.md")
    }
    assert written <= pages(config["nav"]), written - pages(config["nav"])


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    import subprocess
    import sys

    mkdocs = Path(sys.executable).parent / "mkdocs"
    built = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                           check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "actions" / "ec2-capture-memory" / "index.html").exists()
