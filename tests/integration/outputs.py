"""The outputs as a deployment builds them: settings in, secrets in (moto) Secrets Manager."""

from __future__ import annotations

import uuid
from typing import Any

from chalicelib.notifiers import outputs
from chalicelib.notifiers.base import Notifier
from chalicelib.settings import Settings


def secret(aws_session: Any, value: str) -> str:
    """A new secret holding `value`; its name (fresh each time: Powertools caches by name)."""
    name = f"eks-responder/{uuid.uuid4().hex[:12]}"
    aws_session.client("secretsmanager").create_secret(Name=name, SecretString=value)
    return name


def built(env: dict[str, str], aws_session: Any) -> list[Notifier]:
    return outputs.build(Settings.from_env(env), lambda: aws_session)
