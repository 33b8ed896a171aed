"""Every known GuardDuty finding type reaches a deliberate rule, never a fallback."""

from __future__ import annotations

from chalicelib.policy.coverage import FALLBACKS, reached
from chalicelib.policy.loader import load_rules
from chalicelib.settings import DEFAULT_RULES_FILE
from chalicelib.sources.finding_types import KNOWN

DEFAULT = load_rules(DEFAULT_RULES_FILE)


def test_no_known_type_reaches_a_fallback() -> None:
    fallen = sorted(
        f"{r.finding_type.name} on {r.kind.value} ({r.severity.label}): {r.rule}"
        for r in reached(DEFAULT)
        if r.rule in FALLBACKS or r.rule is None
    )
    assert not fallen, "give these a deliberate rule:\n" + "\n".join(fallen)


def test_the_catalogue_has_each_type_once() -> None:
    names = [t.name for t in KNOWN]
    assert len(names) == len(set(names))
