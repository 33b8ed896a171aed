"""What the Lambda runtime hands a handler, made safe to use: a CloudWatchEvent that accepts any
payload, so a malformed event reaches our error handling.

Chalice's own class raises KeyError while building the event object, before any handler or
middleware runs: the invocation would fail (and be retried) without a word about why.
"""

from __future__ import annotations

from typing import Any

from chalice.app import CloudWatchEvent

_ENVELOPE_DEFAULTS: dict[str, Any] = {
    "version": "",
    "account": "",
    "region": "",
    "detail": None,
    "detail-type": "",
    "source": "",
    "time": "",
    "id": None,
    "resources": [],
}


class TolerantCloudWatchEvent(CloudWatchEvent):
    def _extract_attributes(self, event_dict: Any) -> None:
        complete = {**_ENVELOPE_DEFAULTS, **event_dict} if isinstance(event_dict, dict) else _ENVELOPE_DEFAULTS
        super()._extract_attributes(complete)
