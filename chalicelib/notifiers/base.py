"""How incidents are told: each notifier takes the report (never the raw event)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import msgspec

logger = logging.getLogger("eks_responder")


class Notifier(Protocol):
    name: str

    def send(self, report: dict[str, Any]) -> None: ...


class Delivery(msgspec.Struct, frozen=True):
    notifier: str
    delivered: bool
    error: str | None = None
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"notifier": self.notifier, "delivered": self.delivered, "error": self.error, "attempts": self.attempts}


def notify(report: dict[str, Any], notifiers: list[Notifier]) -> list[Delivery]:
    """Send to every notifier; a failure is retried once, then logged, counted and alerted once
    through the outputs that did take the report, never raised: containment is already done."""
    deliveries = _sent(report, notifiers)
    failed = [d for d in deliveries if not d.delivered]
    if failed:
        _alert(report, failed, [n for n, d in zip(notifiers, deliveries, strict=True) if d.delivered])
    return deliveries


def failure_alert(report: dict[str, Any], failed: list[Delivery]) -> dict[str, Any]:
    """The one alert that says which outputs did not take a report."""
    incident = (report.get("incident") or {}).get("id") or report.get("event_id") or "a rejected event"
    said = "; ".join(f"{d.notifier}: {d.error}" for d in failed)
    names = ", ".join(d.notifier for d in failed)
    return {"event_id": report.get("event_id"), "delivery_failure": True, "incident_id": incident,
            "error": f"not told to {names} about {incident}: {said}"[:2000]}  # fmt: skip


def _alert(report: dict[str, Any], failed: list[Delivery], working: list[Notifier]) -> None:
    alert = failure_alert(report, failed)
    for notifier in working:  # once each, not retried: the failure itself is logged and counted
        try:
            notifier.send(alert)
        except Exception as exc:  # noqa: BLE001
            logger.error("delivery-failure alert not sent", extra={"notifier": notifier.name, "error": str(exc)})


def _sent(report: dict[str, Any], notifiers: list[Notifier]) -> list[Delivery]:
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
            from chalicelib.notifiers import metrics

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
