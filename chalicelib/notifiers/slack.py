"""Slack through an incoming webhook. The URL is a secret: it comes from Secrets Manager or an SSM
SecureString (cached by Powertools parameters), never from a plain variable or a log line."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from chalicelib.interfaces import IAMStatement
from chalicelib.notifiers import secrets, slack_message

TIMEOUT_SECONDS = 5
# An incoming webhook's path is its secret (/services/T…/B…/<token>): wherever it appears, whole or not.
_SERVICES_PATH = re.compile(r"/?services/[^\s\"'<>]+", re.IGNORECASE)


def redacted(text: str, url: str) -> str:
    """`text` with the webhook URL, its path and each of its secret segments taken out: a body or an
    error that echoes the request path (a 404 page, a proxy's message) must not store the token."""
    if url:
        text = text.replace(url, "<slack webhook>")
        path = urlsplit(url).path
        if len(path) > 1:
            text = text.replace(path, "<slack webhook path>")
        for segment in path.split("/"):
            if len(segment) >= 8:  # noqa: PLR2004 - T…, B… and the token; "services" itself is harmless
                text = text.replace(segment, "<secret>")
    return _SERVICES_PATH.sub("services/<secret>", text)


class _Redact(logging.Filter):
    """Replaces the webhook URL (a bearer secret) in every record slack_sdk logs."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        cleaned = redacted(text, self._secret)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


def _quiet_logger(secret: str) -> logging.Logger:
    """slack_sdk's logger for one send: warnings and errors only, the URL never in them (at DEBUG it
    logs every request with its URL, and on a retry it logs the URL at INFO)."""
    logger = logging.getLogger("eks_responder.slack_sdk")
    logger.setLevel(logging.WARNING)
    for old in list(logger.filters):
        logger.removeFilter(old)
    logger.addFilter(_Redact(secret))
    return logger


class SlackNotifier:
    name = "slack"

    def __init__(self, webhook_url: Callable[[], str]) -> None:
        self._webhook_url = webhook_url

    def send(self, report: dict[str, Any]) -> None:
        from slack_sdk.webhook import WebhookClient

        message = slack_message.build(report)
        url = self._webhook_url()
        client = WebhookClient(url, timeout=TIMEOUT_SECONDS, logger=_quiet_logger(url))
        # The steps beyond one message follow it, in order, each with the buttons of its own steps.
        for part in [message, *message.get("followups", [])]:
            try:
                response = client.send(text=part["text"], attachments=part["attachments"])
            except Exception as exc:  # noqa: BLE001 - re-raised without the secret
                # The exception text can carry the URL too (connection errors name it): never pass it on.
                raise RuntimeError(redacted(str(exc), url)) from None
            if response.status_code != 200:  # noqa: PLR2004
                said = redacted(str(response.body), url)[:200]
                raise RuntimeError(f"Slack answered {response.status_code}: {said}")


def secret_webhook(secret_name: str | None, parameter_name: str | None) -> Callable[[], str]:
    """The webhook URL, read (and cached for 5 minutes) from Secrets Manager or SSM."""

    if secret_name:
        return secrets.secret(secret_name)

    def read() -> str:
        from aws_lambda_powertools.utilities import parameters

        assert parameter_name is not None
        return str(parameters.get_parameter(parameter_name, decrypt=True, max_age=secrets.MAX_AGE)).strip()

    return read


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    secret = stage_env.get("SLACK_WEBHOOK_SECRET")
    parameter = (stage_env.get("SLACK_WEBHOOK_PARAMETER") or "").lstrip("/")
    found = secrets.permissions(secret)
    if parameter:
        found.append(
            IAMStatement(("ssm:GetParameter",), (f"arn:aws:ssm:{{region}}:{{account}}:parameter/{parameter}",))
        )
    return found


def signing_permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    """Reading Slack's signing secret (and the bot token that lists approver groups), for the route."""
    return secrets.permissions(*(stage_env.get(k) for k in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN_SECRET")))
