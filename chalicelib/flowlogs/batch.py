"""One delivery of flow logs, from bytes to reports: an S3 object or a CloudWatch Logs payload.

Scan, turn findings into incidents, attribute them (one lookup cache per delivery), then each
incident goes through the same intake as every other source. A corrupt or truncated object is
scanned up to the damage; the damage is logged with the object's name and told like a rejected
event, never raised (S3 and CloudWatch Logs would retry the same bytes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from chalicelib.flowlogs.detect import Scanner
from chalicelib.flowlogs.reader import ReadError, gzip_blocks, logs_payload, text_blocks, with_layout
from chalicelib.sources.flowlogs import Batch, to_incident

if TYPE_CHECKING:
    from chalicelib.flowlogs.attribution import Attribution
    from chalicelib.flowlogs.fields import Layout
    from chalicelib.incident import Incident
    from chalicelib.intake import Ledger
    from chalicelib.notifiers.base import Notifier
    from chalicelib.responder import Mode, Responder

logger = logging.getLogger("eks_responder")


@dataclass
class Delivery:
    """What arrived, and what the scan made of it."""

    origin: str
    records: int = 0
    skipped: int = 0
    malformed: int = 0
    untracked: int = 0  # probes not counted for port scans: too many distinct sources in one delivery
    compiled: bool = False  # the compiled first pass dropped the idle records (else pure Python read them all)
    error: str | None = None
    incidents: list[Incident] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"origin": self.origin, "records": self.records, "nodata_or_skipdata": self.skipped,
                "malformed": self.malformed, "untracked_probes": self.untracked, "compiled_first_pass": self.compiled,
                "error": self.error, "incidents": len(self.incidents)}  # fmt: skip


def scan(blocks: Iterator[bytes], layout: Layout | None, scanner: Scanner, batch: Batch) -> Delivery:
    delivery = Delivery(batch.origin)
    try:
        for found, block in with_layout(blocks, layout):
            scanner.scan(block, found)
    except ReadError as exc:
        delivery.error = f"{exc}; the {scanner.records} record(s) before it were scanned"
    delivery.records, delivery.skipped, delivery.malformed = scanner.records, scanner.skipped, scanner.malformed
    delivery.untracked = scanner.untracked
    delivery.compiled = scanner.compiled
    delivery.incidents = [to_incident(finding, batch) for finding in scanner.findings()]
    return delivery


def scan_object(stream: BinaryIO, name: str, layout: Layout | None, scanner: Scanner, batch: Batch) -> Delivery:
    """An S3 object (gzip, or plain text when the name says so), read in bounded memory."""
    blocks = text_blocks(stream) if not name.endswith(".gz") else gzip_blocks(stream)
    return scan(blocks, layout, scanner, batch)


def scan_payload(
    event: dict[str, Any],
    layout: Layout | None,
    scanner: Scanner,
    at: datetime,
    region: str = "",
    subscribed_in: Callable[[], str | None] | None = None,
    *,
    replay: bool = False,
) -> Delivery:
    """A CloudWatch Logs subscription delivery (the function's own region); its log group names the flow log.

    A subscription delivers only its own account's log events to the function: a payload whose
    `owner` is another account (the subscription's account, `subscribed_in`, when given) is refused."""
    from chalicelib.errors import EventError

    payload = logs_payload(event)
    origin = f"logs:{payload.log_group}/{payload.log_stream}"
    expected = subscribed_in() if subscribed_in is not None else None
    if expected and payload.owner != expected:
        shown = payload.owner if payload.owner.isdigit() and len(payload.owner) == 12 else "?"  # noqa: PLR2004
        raise EventError(f"refused: {origin} says it is account {shown}'s, but the subscription is in account "
                         f"{expected}, which delivers only its own log events")  # fmt: skip
    batch = Batch(payload.owner, region, origin, at, replay=replay)
    if payload.control:
        return Delivery(batch.origin)
    return scan(iter([b"\n".join(payload.messages)]), layout, scanner, batch)


@dataclass(frozen=True)
class Intake:
    """The parts every incident of a delivery goes through."""

    responder: Responder
    mode: Mode
    attribution: Callable[[str], Attribution | str | None]  # the delivery's account -> its lookups, or why none
    ledger: Ledger | None = None
    notifiers: Sequence[Notifier] = ()


def respond(delivery: Delivery, intake: Intake) -> dict[str, Any]:
    """Attribute and respond to each incident; tell the damage, if any. Never raises."""
    from chalicelib import intake as incidents
    from chalicelib import metrics

    metrics.flow_delivery(delivery.summary())
    result: dict[str, Any] = {**delivery.summary(), "results": []}
    if delivery.error:
        logger.error("flow-log delivery damaged", extra={"origin": delivery.origin, "error": delivery.error})
        result["error_report"] = incidents.told({"event_id": delivery.origin, "error": delivery.error},
                                                intake.notifiers)  # fmt: skip
    attribution = intake.attribution(delivery.incidents[0].account) if delivery.incidents else None
    if attribution is not None and not isinstance(attribution, str):
        attribution.prefetch(list(delivery.incidents))
    for incident in delivery.incidents:
        if isinstance(attribution, str):
            found = replace(incident, details={**incident.details, "attribution": f"not looked up: {attribution}"})
        else:
            found = attribution.attribute(incident) if attribution is not None else incident
        result["results"].append(
            incidents.handle_incident(
                found, delivery.origin, intake.responder, intake.mode, ledger=intake.ledger, notifiers=intake.notifiers
            )
        )
    return result


def rejected(origin: str, error: Exception, notifiers: Sequence[Notifier]) -> dict[str, Any]:
    """An event that is not a flow-log delivery at all: logged with its id and told."""
    from chalicelib import intake as incidents

    logger.error("rejected event", extra={"event_id": origin, "error": str(error)})
    return incidents.told({"event_id": origin, "error": str(error)}, notifiers)


def now() -> datetime:
    return datetime.now(UTC)
