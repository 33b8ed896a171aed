"""YAML text to data with the safe loader, libyaml's where the wheel has it (the Lambda's does).

A document that is JSON (a kubeconfig written by a tool, a rules file's parsed copy) is read as
JSON: the same data, without importing PyYAML (some 20 ms of a cold start).
"""

from __future__ import annotations

import json
from typing import Any


class TextError(ValueError):
    """The text is neither JSON nor YAML; says where, as PyYAML does."""


def load(text: str) -> Any:
    """Safe loading only (no Python objects); raises TextError on bad text."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML's flow style, not JSON: PyYAML reads it (or names what is wrong)
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise TextError(str(exc)) from None
