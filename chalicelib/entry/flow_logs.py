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
from chalicelib.flowlogs.incidents import Batch, to_incident
from chalicelib.flowlogs.reader import ReadError, gzip_blocks, logs_payload, text_blocks, with_layout

if TYPE_CHECKING:
    from chalicelib.entry.intake import Ledger
    from chalicelib.flowlogs.attribution import Attribution
    from chalicelib.flowlogs.fields import Layout
    from chalicelib.incident import Incident
    from chalicelib.notifiers.base import Notifier
    from chalicelib.response.execute import Responder
    from chalicelib.response.report import Mode
    from chalicelib.settings import Settings

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
    from chalicelib.entry import intake as incidents
    from chalicelib.notifiers import metrics

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
    from chalicelib.entry import intake as incidents

    logger.error("rejected event", extra={"event_id": origin, "error": str(error)})
    return incidents.told({"event_id": origin, "error": str(error)}, notifiers)


def now() -> datetime:
    return datetime.now(UTC)


def s3_objects(event: Any) -> list[tuple[str, str, str, str]]:
    """(bucket, key, account, region) from an EventBridge "Object Created" event or an S3 notification.

    Only string values are taken: anything else in those places makes the object unnamed, which the
    caller rejects, rather than a name built from whatever the event held.
    """
    from urllib.parse import unquote_plus

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    def field(value: Any, *path: str) -> Any:
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        return value

    if not isinstance(event, dict):
        return []
    if event.get("source") == "aws.s3":
        detail = event.get("detail")
        return [(text(field(detail, "bucket", "name")), text(field(detail, "object", "key")),
                 text(event.get("account")), text(event.get("region")))]  # fmt: skip
    records = event.get("Records")
    found = []
    for record in records if isinstance(records, list) else []:
        key = unquote_plus(text(field(record, "s3", "object", "key")))  # notifications URL-encode keys
        found.append((text(field(record, "s3", "bucket", "name")), key, "", text(field(record, "awsRegion"))))
    return found


def objects(
    event: dict[str, Any],
    current: Settings,
    intake: Intake,
    setup: Callable[[], tuple[Layout | None, Scanner]],
    default_region: str,
) -> dict[str, Any]:
    """Every object an S3 event names, read when it is the configured flow-log bucket's: scanned,
    attributed and answered; a bucket that is not the flow-log bucket is ignored, a key that names
    another account than the bucket's is refused unread."""
    from chalicelib.errors import ConfigError, EventError, ResponderError, RetryLaterError
    from chalicelib.executors.flow_sources import open_object
    from chalicelib.flowlogs.incidents import Batch

    objects = s3_objects(event)
    if not objects or not all(bucket and key for bucket, key, _, _ in objects):
        why = EventError("no S3 bucket and key in the event")
        event_id = event.get("id") if isinstance(event, dict) else None
        return rejected(event_id if isinstance(event_id, str) else "s3-event", why, intake.notifiers)
    results = []
    for bucket, key, account, object_region in objects:
        origin = f"s3://{bucket}/{key}"
        plan = intake.mode.value == "plan"
        where = object_region or default_region
        # The bucket's owner: the account of an EventBridge event, else (an S3 notification) our own.
        owner = account or (None if plan else intake.responder.own_account()) or ""
        expected = current.flow_logs_bucket_of(owner, where)
        # Only the configured bucket: other .log.gz objects (load balancer or application logs)
        # would otherwise be read as flow logs and raise alerts.
        if expected is None:
            results.append({"origin": origin, "ignored": "FLOW_LOGS_BUCKET is not set: no bucket is read as flow logs"})
            continue
        if bucket != expected:
            whose = f" of account {owner}" if expected != current.flow_logs_bucket else ""
            results.append({"origin": origin, "ignored": f"not the flow-log bucket {expected}{whose}"})
            continue
        if plan:
            # A plan contacts nothing: not S3 for the object, not S3 for the threat list.
            offline = f"an offline plan reads nothing: replay with --live to read {origin}"
            results.append({"origin": origin, "ignored": offline})
            continue
        flows_of, flows_in, refused = whose_flows(current, key, owner, where)
        if refused:  # not even read: the object's content is the writer's to choose as well
            results.append(rejected(origin, EventError(refused), intake.notifiers))
            continue
        try:
            reader = intake.responder.bucket_reader(owner or None, where)
            if isinstance(reader, str):  # an account this responder does not manage: a setting
                raise ConfigError(reader)
            layout, scan = setup()
            stream = open_object(reader[1], bucket, key)
        except ResponderError as exc:  # a setting: told, and retrying would not help
            results.append(respond(Delivery(origin, error=f"cannot read the object: {exc}"), intake))
            continue
        except Exception as exc:
            # S3, STS or the threat list failing now: told, then the invocation fails so Lambda
            # delivers the event again (and, out of retries, to the failure queue).
            results.append(respond(Delivery(origin, error=f"cannot read the object now (tried again "
                                                        f"later): {exc}"), intake))  # fmt: skip
            raise RetryLaterError(f"{origin}: {exc}") from exc
        delivery = Batch(flows_of, flows_in, origin, now())
        results.append(respond(scan_object(stream, key, layout, scan, delivery), intake))
    return {"deliveries": results}


def whose_flows(current: Settings, key: str, owner: str, where: str) -> tuple[str, str, str | None]:
    """(account, region, why refused) of the flows in an object. A bucket per account belongs to its
    member, who can write any key into it: there the account (and, with `{region}`, the region) is the
    bucket's, and a key naming another is refused, never acted on in the account it names. A central
    bucket holds every account's flows, written by the delivery service: there the key says whose."""
    logged_by, logged_in = origin_of(key)
    template = current.flow_logs_bucket or ""
    if "{account}" not in template:
        return logged_by or owner, logged_in or where, None
    if logged_by and logged_by != owner:
        return owner, where, (f"refused: the key names account {_shown(logged_by)}, but the object is in the "
                              f"flow-log bucket of account {owner}, which holds only that account's flows")  # fmt: skip
    if "{region}" in template and logged_in and logged_in != where:
        return owner, where, (f"refused: the key names region {_shown(logged_in)}, but the object is in the "
                              f"flow-log bucket of region {where}")  # fmt: skip
    return owner, logged_in or where, None


def _shown(value: str) -> str:
    """A value from a key, quoted safely for a message: what no identifier can hold becomes '?'."""
    from chalicelib import identifiers

    return value if identifiers.ACCOUNT.match(value) or identifiers.REGION.match(value) else "?"


def origin_of(key: str) -> tuple[str, str]:
    """(account, region) of the flow log an S3 key names: `.../AWSLogs/<account>/vpcflowlogs/<region>/...`,
    or with Hive-compatible prefixes `aws-account-id=<account>/aws-service=vpcflowlogs/aws-region=<region>`.
    Checked where the batch is made, like any value from outside."""
    parts = key.split("/")[:-1]
    if "AWSLogs" not in parts:
        return "", ""
    rest = parts[parts.index("AWSLogs") + 1 :]
    account = rest[0].removeprefix("aws-account-id=") if rest else ""
    region = rest[2].removeprefix("aws-region=") if len(rest) > 2 else ""  # noqa: PLR2004
    return account, region


def function_account(context: Any) -> str | None:
    """The account the function runs in, from its own ARN (no call needed); None outside Lambda."""
    arn = str(getattr(context, "invoked_function_arn", "") or "")
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else None  # noqa: PLR2004


def payload(
    event: dict[str, Any],
    setup: Callable[[], tuple[Layout | None, Scanner]],
    where: str,
    subscribed_in: Callable[[], str | None],
    notifiers: Sequence[Notifier],
    intake: Callable[[], Intake],
) -> dict[str, Any]:
    """A CloudWatch Logs subscription delivery: scanned and answered; a setting that is wrong is told,
    and a threat list S3 cannot serve now fails the invocation so the payload comes again."""
    from chalicelib.errors import EventError, ResponderError, RetryLaterError

    try:
        layout, scan = setup()
        found = scan_payload(event, layout, scan, now(), where, subscribed_in=subscribed_in)
    except ResponderError as exc:
        return rejected("cloudwatch-logs-payload", exc, notifiers)
    except Exception as exc:
        # A threat list S3 could not serve now: told, then failed so Lambda delivers the payload again.
        rejected("cloudwatch-logs-payload", EventError(f"flow-log setup failed (tried again later): {exc}"), notifiers)
        raise RetryLaterError(f"flow-log setup failed: {exc}") from exc
    return respond(found, intake())
