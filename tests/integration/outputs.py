"""The outputs as a deployment builds them: settings in, secrets in (moto) Secrets Manager."""

from __future__ import annotations

import uuid
from typing import Any

from chalicelib.notifiers import outputs
from chalicelib.notifiers.base import Notifier
from chalicelib.settings import Settings

# What a stage with every output names (the IAM proof's stage has these too, so every call the
# outputs make in a function's name is judged against the policy generated for them).
OUTPUTS_ENV = {
    "EVENT_BUS_NAME": "security-events",
    "PAGERDUTY_ROUTING_KEY_SECRET": "eks-responder/pagerduty",
    "TEAMS_WEBHOOK_SECRET": "eks-responder/teams",
    "WEBHOOK_URL": "https://hooks.example.com/eks-responder",
    "WEBHOOK_SIGNING_SECRET": "eks-responder/webhook",
    "SERVICENOW_INSTANCE_URL": "https://example.service-now.com",
    "SERVICENOW_CREDENTIALS_SECRET": "eks-responder/servicenow",
    "WRITEBACK_SOURCES": "guardduty,securityhub,inspector",
    "ARCHIVE_GUARDDUTY_FINDINGS": "true",
}


def secret(aws_session: Any, value: str, name: str | None = None) -> str:
    """A secret holding `value` (under `name`, else a fresh one); Powertools' cache is cleared, so
    a name used again with another value is read again, as after its five minutes."""
    from aws_lambda_powertools.utilities import parameters

    name = name or f"eks-responder/{uuid.uuid4().hex[:12]}"
    aws_session.client("secretsmanager").create_secret(Name=name, SecretString=value)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    return name


def built(env: dict[str, str], aws_session: Any) -> list[Notifier]:
    return outputs.build(Settings.from_env(env), lambda: aws_session)
