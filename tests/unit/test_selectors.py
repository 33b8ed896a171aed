"""Label selectors as the API server evaluates them: what the isolation check relies on."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.actions.k8s.isolate_pod import not_deny_all, quarantine_policy
from chalicelib.actions.k8s.selectors import selects, service_selects

POD = {"app": "checkout", "tier": "web"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, True),
        ({}, True),
        ({"matchLabels": {"app": "checkout"}}, True),
        ({"matchLabels": {"app": "checkout", "tier": "db"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
        # Unknown operators err towards "selected": a check never claims isolation that may not hold.
        ({"matchExpressions": [{"key": "app", "operator": "Sometimes"}]}, True),
    ],
)
def test_label_selectors(selector: dict[str, Any] | None, expected: bool) -> None:
    assert selects(selector, POD) is expected


def test_a_service_without_a_selector_selects_no_pod() -> None:
    assert not service_selects(None, POD)
    assert not service_selects({}, POD)
    assert service_selects({"app": "checkout"}, POD)
    assert not service_selects({"app": "checkout", "tier": "db"}, POD)


def test_only_the_exact_deny_all_shape_is_trusted() -> None:
    good = quarantine_policy("ns", "inc-1")
    assert not_deny_all(good) is None
    narrowed = {
        **good,
        "spec": {**good["spec"], "podSelector": {"matchLabels": {"eks-responder.io/quarantine": "true", "x": "y"}}},
    }
    assert "selects" in (not_deny_all(narrowed) or "")
    ingress_only = {**good, "spec": {**good["spec"], "policyTypes": ["Ingress"]}}
    assert "policyTypes" in (not_deny_all(ingress_only) or "")
    allows = {**good, "spec": {**good["spec"], "egress": [{}]}}
    assert not_deny_all(allows) == "it has allow rules"
