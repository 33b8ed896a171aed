"""Slack's Approve and Reject clicks: verified, checked against the approvers, then decided.

Slack signs every request with the app's signing secret (HMAC-SHA256 of `v0:<timestamp>:<body>`);
a request with a bad signature, or a timestamp more than five minutes away (a replay), is refused
before its body is read. Only users on APPROVERS decide; anyone else is told so, and the attempt
is logged. The answer goes back to the clicker only (ephemeral): the decision itself, and what
was carried out, reach the channel through the incident's messages.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from chalicelib.notifiers.slack_message import literal

logger = logging.getLogger("eks_responder")

ACTIONS = {"approve": True, "reject": False, "release": None}
PAST = {"approve": "approved", "reject": "rejected", "release": "released"}
_USER = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_GROUP = re.compile(r"^S[A-Z0-9]{2,20}$")
MAX_BODY = 64 * 1024  # Slack's payloads are a few KB


def approved_by(user: str, approvers: tuple[str, ...], members: Callable[[str], set[str]] | None) -> bool:
    """The user is listed, or is a member of a listed user group (asked of Slack, when it can be)."""
    if user in approvers:
        return True
    for group in (a for a in approvers if _GROUP.match(a)):
        if members is None:
            logger.warning("approver group not checked", extra={"group": group, "reason": "no SLACK_BOT_TOKEN_SECRET"})
            continue
        try:
            if user in members(group):
                return True
        except Exception as exc:  # noqa: BLE001 - an unreadable group approves nobody
            logger.warning("approver group not read", extra={"group": group, "error": f"{type(exc).__name__}: {exc}"})
    return False


def _answer(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def handle(
    headers: Mapping[str, str],
    body: bytes,
    *,
    signing_secret: str,
    approvers: tuple[str, ...],
    decide: Callable[..., dict[str, Any]],
    release: Callable[..., dict[str, Any]] | None = None,
    members: Callable[[str], set[str]] | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one interactivity request."""
    from slack_sdk.signature import Clock, SignatureVerifier

    class _Clock(Clock):
        def now(self) -> float:
            return clock()

    timestamp = headers.get("x-slack-request-timestamp") or ""
    signature = headers.get("x-slack-signature") or ""
    if len(body) > MAX_BODY or not SignatureVerifier(signing_secret, clock=_Clock()).is_valid(
        body, timestamp, signature
    ):
        logger.warning("slack request refused", extra={"reason": "bad or stale signature"})
        return 401, {"error": "invalid or stale signature"}
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        user = str(payload["user"]["id"])
        action = payload["actions"][0]
        verb = str(action["action_id"]).split("-", 1)[0]
        parts = str(action["value"]).rsplit("|", 2)
        # A button from before decisions were bound to their plan has no revision: it is stale too.
        incident_id, step, revision = parts if len(parts) == 3 else (*parts, "-")  # noqa: PLR2004
        steps = None if step == "*" else (int(step),)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return 400, {"error": "not a block action this app sent"}
    if verb not in ACTIONS or not incident_id or not _USER.match(user):
        return 400, {"error": "not a block action this app sent"}
    if not approved_by(user, approvers, members):
        logger.warning("approval refused", extra={"user": user, "incident_id": incident_id, "decision": verb})
        return 200, _answer(f"You are not on the approvers list (APPROVERS): nothing was {PAST[verb]}.")
    if verb == "release":
        if release is None:
            return 200, _answer("Release from Slack is not enabled here: use `eks-responder release`.")
        result = release(incident_id, steps=steps, who=f"slack:{user}", revision=revision)
    else:
        result = decide(incident_id, approve=ACTIONS[verb], steps=steps, who=f"slack:{user}", revision=revision)
    text = literal(result.get("message") or result.get("error") or "done")
    done = result.get("carried_out") or {}
    if isinstance(done, dict) and done.get("actions"):
        lines = (f"{a['status']}: {literal(a['action'])} on {literal(a['target'])}" for a in done["actions"])
        text += "\n" + "\n".join(lines)
    return 200, _answer(text)


GROUP_TTL = 300.0  # seconds a user group's members are trusted before Slack is asked again
_groups: dict[str, tuple[float, set[str]]] = {}


def group_members(token_secret: str | None, api_url: str) -> Callable[[str], set[str]] | None:
    """A Slack user group's members (usergroups.users.list with the bot token in `token_secret`),
    cached five minutes; None without a bot token (a group then approves nobody)."""
    if not token_secret:
        return None
    secret = token_secret

    def members(group: str) -> set[str]:
        cached = _groups.get(group)
        if cached and time.monotonic() - cached[0] < GROUP_TTL:
            return cached[1]
        from aws_lambda_powertools.utilities import parameters
        from slack_sdk import WebClient

        token = str(parameters.get_secret(secret, max_age=300)).strip()
        client = WebClient(token=token, base_url=api_url, timeout=5)
        found = {str(u) for u in client.usergroups_users_list(usergroup=group).get("users") or []}
        _groups[group] = (time.monotonic(), found)
        return found

    return members


def forget_groups() -> None:
    """Drop the cached group members (tests, or a changed environment)."""
    _groups.clear()
