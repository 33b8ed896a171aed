"""EventBridge patterns as literals, so importing app.py needs no environment."""

from __future__ import annotations

from typing import Any

GUARDDUTY_FINDING: dict[str, Any] = {
    "source": ["aws.guardduty"],
    "detail-type": ["GuardDuty Finding"],
}
