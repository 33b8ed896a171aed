"""How incidents are told: each notifier takes the report (never the raw event)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("eks_responder")


class Notifier(Protocol):
    name: str

    def send(self, report: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Delivery:
    notifier: str
    delivered: bool
    error: str | None = None
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"notifier": self.notifier, "delivered": self.delivered, "error": self.error, "attempts": self.attempts}


def notify(report: dict[str, Any], notifiers: list[Notifier]) -> list[Delivery]:
    """Send to every notifier; a failure is retried once, then logged and counted, never raised."""
    deliveries = []
    for notifier in notifiers:
        error: str | None = None
        for attempt in (1, 2):
            try:
                notifier.send(report)
            except Exception as exc:  # noqa: BLE001 - a notifier failure must not lose the incident
                error = f"{type(exc).__name__}: {exc}"
                continue
            deliveries.append(Delivery(notifier.name, delivered=True, attempts=attempt))
            break
        else:
            from chalicelib import metrics

            metrics.notifier_failure(notifier.name)
            logger.error(
                "notifier failed",
                extra={
                    "notifier": notifier.name,
                    "incident_id": (report.get("incident") or {}).get("id"),
                    "error": error,
                },
            )
            deliveries.append(Delivery(notifier.name, delivered=False, error=error, attempts=2))
    return deliveries
