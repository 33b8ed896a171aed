"""YAML text to data with the safe loader, libyaml's where the wheel has it (the Lambda's does)."""

from __future__ import annotations

from typing import Any

import yaml


def load(text: str) -> Any:
    """Safe loading only (no Python objects); raises yaml.YAMLError on bad text."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
