"""A generic webhook: the responder's event (the same `source`, `detail-type` and detail as on the
event bus) as JSON, signed with HMAC-SHA256 over a timestamp and the body, as Slack signs its
requests. A receiver recomputes the signature with the shared key (`verify` below is the whole
check), refuses a timestamp more than five minutes away (a replayed request), and may drop a
`X-EKS-Responder-Delivery` it has seen (a retry sends the same id)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from chalicelib.interfaces import IAMStatement
from chalicelib.notifiers import events_out, http, secrets

VERSION = "v1"
TIMESTAMP_HEADER = "X-EKS-Responder-Timestamp"
SIGNATURE_HEADER = "X-EKS-Responder-Signature"
DELIVERY_HEADER = "X-EKS-Responder-Delivery"
TOLERANCE_SECONDS = 300


def body(report: dict[str, Any]) -> bytes:
    detail = events_out.detail(report)
    event = {"source": events_out.SOURCE, "detail-type": events_out.DETAIL_TYPES[detail["kind"]], "detail": detail}
    return json.dumps(event, separators=(",", ":"), sort_keys=True, default=str).encode()


def signature(key: bytes, timestamp: str, payload: bytes) -> str:
    mac = hmac.new(key, f"{VERSION}:{timestamp}:".encode() + payload, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def headers(key: bytes, payload: bytes, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(key, timestamp, payload),
        DELIVERY_HEADER: hashlib.sha256(payload).hexdigest()[:32],  # the same for a retry of the same report
    }


def verify(key: bytes, timestamp: str, payload: bytes, signed: str, now: float | None = None) -> bool:
    """What a receiver checks: the signature over this timestamp and body, and a fresh timestamp."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= TOLERANCE_SECONDS and hmac.compare_digest(signature(key, timestamp, payload), signed)


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str, key: Callable[[], str], clock: Callable[[], float] = time.time) -> None:
        self._url = http.checked_url(url, "WEBHOOK_URL")
        self._key = key
        self._clock = clock

    def send(self, report: dict[str, Any]) -> None:
        payload = body(report)
        signed = headers(self._key().encode(), payload, self._clock())
        http.send(self._url, None, raw=payload, headers=signed, what="the webhook")


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    return secrets.permissions(stage_env.get("WEBHOOK_SIGNING_SECRET"))
