"""Kubernetes label selectors, evaluated as the API server does (matchLabels and matchExpressions)."""

from __future__ import annotations

from typing import Any


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """True when a LabelSelector matches these labels. An empty selector matches every object;
    a malformed one (an unknown operator) is treated as matching, so a check built on it errs
    towards "still selected" and never reports isolation that may not hold."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression(expression, labels) for expression in selector.get("matchExpressions") or [])


def _expression(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key = str(expression.get("key", ""))
    operator = expression.get("operator")
    values = set(expression.get("values") or [])
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return True


def service_selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """A Service's selector (a plain map): an empty or absent one selects no pod."""
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())
