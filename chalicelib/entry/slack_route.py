"""The Slack interactivity route: verify the request, check the approver, and answer the clicker."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalice.app import Response

    from chalicelib.settings import Settings

SECRET_MAX_AGE = 300  # seconds the signing secret is cached before Secrets Manager is asked again


def respond(
    request: Any, current: Settings, decide: Callable[..., dict[str, Any]], release: Callable[..., dict[str, Any]],
    members: Callable[[str], set[str]] | None,
) -> Response:  # fmt: skip
    """503 while no signing secret is configured (approvals from Slack are off); otherwise what
    `slack_interactivity.handle` answers, which checks the signature before reading anything."""
    from chalice.app import Response

    from chalicelib.notifiers import slack_interactivity

    headers = request.headers if request is not None else {}
    raw = request.raw_body if request is not None else b""
    body = raw if isinstance(raw, bytes) else str(raw or "").encode()
    json_type: dict[str, str | list[str]] = {"Content-Type": "application/json"}
    if not current.slack_signing_secret:
        off = {"error": "SLACK_SIGNING_SECRET is not set: approvals from Slack are off"}
        return Response(body=json.dumps(off), status_code=503, headers=json_type)
    from aws_lambda_powertools.utilities import parameters

    secret = str(parameters.get_secret(current.slack_signing_secret, max_age=SECRET_MAX_AGE)).strip()
    status, answer = slack_interactivity.handle(
        headers, body, signing_secret=secret, approvers=current.approvers, decide=decide, release=release,
        members=members,
    )  # fmt: skip
    return Response(body=json.dumps(answer), status_code=status, headers=json_type)
