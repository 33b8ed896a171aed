"""Microsoft Teams, through a Workflows webhook ("When a Teams webhook request is received"): an
Adaptive Card with the same facts as the Slack message.

Where no value from an event is structure: a card's TextBlock and FactSet parse Markdown (bold,
links), so every value from an event is a TextRun inside a RichTextBlock, which the Adaptive Card
schema renders as text ("Markdown is not supported"). Beyond that, a value's URL schemes and
`www.` are defanged (`hxxp[:]//`) so no client links them, `{{...}}` (the card's date functions) is
broken apart, and the card carries no `msteams.entities`, so `<at>` is never a mention. The one
link is ours: the AWS console, built from validated parts. The webhook URL is a secret (its query
string signs the request): it comes from Secrets Manager and never appears in an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from chalicelib.interfaces import IAMStatement
from chalicelib.notifiers import facts, http, secrets

CARD_VERSION = "1.4"
MAX_STEP_LINES = 25
TEXT_LIMIT = 1000
STYLE = {facts.FAILED: "attention", facts.CONTAINED: "good", facts.RELEASED: "good", facts.AWAITING: "warning"}
MARK = {"succeeded": "✔", "failed": "✖", "skipped": "»", "planned": "•", "awaiting-approval": "⏳", "rejected": "⊘"}
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*):(/{2,}|\\{2,})")
_WWW = re.compile(r"(?i)\bwww\.")


def inert(value: Any, limit: int = TEXT_LIMIT) -> str:
    """An event value as text no Teams client links or evaluates."""
    text = " ".join(str(value)[:limit].split())
    text = _SCHEME.sub(lambda m: m.group(1).replace("t", "x").replace("T", "X") + "[:]" + m.group(2), text)
    text = _WWW.sub(lambda m: m.group(0)[:-1] + "[.]", text)
    return text.replace("{{", "{ {").replace("}}", "} }")


def _run(value: Any, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": inert(value), **style}


def _ours(text: str, **style: Any) -> dict[str, Any]:
    """A label of ours (never from an event), as it is."""
    return {"type": "TextRun", "text": text, **style}


def _line(*inlines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(inlines), **extra}


def card(report: dict[str, Any]) -> dict[str, Any]:
    """The Adaptive Card for a report."""
    found = facts.of(report)
    body: list[dict[str, Any]] = [
        _line(_run(found.headline, size="Large", weight="Bolder")),
    ]
    if found.title:
        body.append(_line(_run(found.title)))
    if found.dry_run and found.status == facts.PLANNED:
        body.append(_line(_run("DRY-RUN: nothing was changed.", weight="Bolder", color="Warning")))
    body += [_line(_ours(f"{label}: ", weight="Bolder"), _run(value)) for label, value in found.fields]
    steps = found.steps[:MAX_STEP_LINES]
    if steps:
        body.append(_line(_run("Steps", weight="Bolder"), separator=True))
        body += [_line(_ours(f"{MARK.get(s.status, '•')} "), _run(s.line())) for s in steps]
        if len(found.steps) > len(steps):
            body.append(_line(_run(f"and {len(found.steps) - len(steps)} more step(s): see the timeline")))
    elif found.kind not in (facts.REJECTED, facts.DELIVERY):
        body.append(_line(_run(f"No action: {report.get('reason') or 'no action'}")))
    footer = [f"{label} {value}" for label, value in (("rule", found.rule), ("incident", found.incident_id),
              ("by", found.by), ("timeline:", found.timeline)) if value]  # fmt: skip
    if footer:
        body.append(_line(_run(" · ".join(footer), isSubtle=True, size="Small"), separator=True))
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": [{"type": "Container", "style": STYLE.get(found.status, "default"), "items": body}],
        "msteams": {"width": "Full"},
    }
    if found.link:
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open in the AWS console", "url": found.link}]
    return content


def message(report: dict[str, Any]) -> dict[str, Any]:
    """The Workflows webhook's body: a message with the card as its one attachment."""
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card(report)}
        ],
    }


class TeamsNotifier:
    name = "teams"

    def __init__(self, webhook_url: Callable[[], str]) -> None:
        self._webhook_url = webhook_url

    def send(self, report: dict[str, Any]) -> None:
        http.send(self._webhook_url(), message(report), what="Teams", secret_url=True)


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    return secrets.permissions(stage_env.get("TEAMS_WEBHOOK_SECRET"))
