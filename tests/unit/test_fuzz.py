"""Mutated events through every source's intake: nothing escapes, and hostile identifiers never act.

A fixed budget and seed, so `make test` is repeatable; `make fuzz` runs the long campaign.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.errors import EventError
from chalicelib.sources import registry
from tests.conftest import load_event
from tests.fuzzing.mutations import Harness, check, containment, hostile_identifiers, mutate, seed_events

SEEDS = seed_events()
HARNESS = Harness()


@settings(max_examples=600, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(index=st.integers(0, len(SEEDS) - 1), seed=st.integers(0, 2**32 - 1), count=st.integers(1, 3))
def test_no_mutated_event_escapes_and_hostile_identifiers_never_act(index: int, seed: int, count: int) -> None:
    mutated = mutate(SEEDS[index], random.Random(seed), count)
    outputs = HARNESS.run(mutated.event)  # no exception may escape
    check(outputs)  # every output one valid JSON object (no NaN, no Infinity)
    if hostile_identifiers(mutated.event):
        acted = containment(outputs)
        assert not acted, (mutated.changes, acted)


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("detail", "resource", "kubernetesDetails", "kubernetesWorkloadDetails", "namespace"), "x/../kube-system",
         "namespace"),
        (("region",), "x|pwn> <!channel> <http://evil.example", "region"),
        (("detail", "region"), "us-east-1|<!here>", "region"),
        (("detail", "resource", "eksClusterDetails", "name"), "prod/../other", "cluster"),
        (("detail", "service", "additionalInfo", "sample"), "true", "sample"),
        (("detail", "service", "additionalInfo", "sample"), 1, "sample"),
        (("detail", "service", "additionalInfo", "sample"), {}, "sample"),
        (("detail", "severity"), "8", "severity"),
        (("detail", "resource", "kubernetesDetails", "kubernetesWorkloadDetails", "hostPID"), "yes", "hostPID"),
        (("detail", "resource", "kubernetesDetails", "kubernetesWorkloadDetails", "hostIPC"), 1, "hostIPC"),
        (("account",), "12345678901x", "account"),
    ],
)  # fmt: skip
def test_hostile_identifying_fields_are_errors(path: tuple[str, ...], value: Any, words: str) -> None:
    event = copy.deepcopy(load_event("execution-runtime-reverse-shell"))
    target = event
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    if path == ("account",):
        event["detail"]["accountId"] = value
    with pytest.raises(EventError, match=words):
        registry.to_incident(event)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    event = load_event("execution-runtime-reverse-shell")
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    event["detail"]["title"] = deep
    with pytest.raises(EventError, match="levels deep"):
        registry.to_incident(event)


def test_a_list_valued_source_is_an_error() -> None:
    event = load_event("execution-runtime-reverse-shell")
    event["source"] = ["aws.guardduty"]  # EventBridge patterns match array-valued fields
    with pytest.raises(EventError, match="source is list"):
        registry.to_incident(event)
