"""Which rules, and so which actions, the incidents of one deployed function can reach.

The generated IAM policy of a function holds what these actions declare and nothing else.
"""

from __future__ import annotations

from chalicelib import actions, validation
from chalicelib.actions.base import Action
from chalicelib.functions import Function
from chalicelib.policy.model import Match, Rule, RulesFile


def _catches_everything_from(match: Match, source: str) -> bool:
    """A rule that matches every incident of `source`: the rules after it are out of reach."""
    given = validation.given(match)
    return set(given) <= {"sources"} and (not match.sources or source in match.sources)


def reachable_rules(function: Function, rules: RulesFile) -> list[Rule]:
    """The rules an incident of this function can be decided by (first match wins, top to bottom)."""
    found: list[Rule] = []
    for source in function.sources:
        for rule in rules.rules:
            if rule.match.sources and source not in rule.match.sources:
                continue
            if rule not in found:
                found.append(rule)
            if _catches_everything_from(rule.match, source):
                break
    return found


def reachable_actions(function: Function, rules: RulesFile) -> list[Action]:
    names = sorted({step.action for rule in reachable_rules(function, rules) for step in rule.actions})
    return [actions.get(name) for name in names]
