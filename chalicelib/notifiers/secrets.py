"""Secrets the outputs need (webhook URLs, routing keys, signing keys, credentials): read from
Secrets Manager, cached five minutes by Powertools, never from a plain variable or a log line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalicelib.interfaces import IAMStatement

MAX_AGE = 300


def secret(name: str) -> Callable[[], str]:
    """The secret's text, read on first use (not at import or cold start)."""

    def read() -> str:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(name, max_age=MAX_AGE)).strip()

    return read


def secret_json(name: str) -> Callable[[], dict[str, Any]]:
    """A secret holding a JSON object (credentials with several parts)."""
    text = secret(name)

    def read() -> dict[str, Any]:
        try:
            value = json.loads(text())
        except ValueError:
            raise RuntimeError(f"secret {name} is not a JSON object") from None
        if not isinstance(value, dict):
            raise RuntimeError(f"secret {name} is not a JSON object")
        return value

    return read


def permissions(*names: str | None) -> list[IAMStatement]:
    """Reading these secrets (Secrets Manager appends six characters to a secret's ARN)."""
    arns = tuple(f"arn:aws:secretsmanager:{{region}}:{{account}}:secret:{n}-*" for n in names if n)
    return [IAMStatement(("secretsmanager:GetSecretValue",), arns)] if arns else []
