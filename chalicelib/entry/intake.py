"""From a raw event to a report, with errors caught, logged with the event id and returned.

A malformed or unknown event never raises out of a handler: it would be retried for hours
and block nothing but itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.errors import EventError, NotHandledError, RetryLaterError
from chalicelib.executors import faults
from chalicelib.incident import timestamp
from chalicelib.invocation import in_invocation
from chalicelib.response import audit
from chalicelib.sources import registry

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from chalicelib.incident import Incident
    from chalicelib.interfaces import ActionResult
    from chalicelib.notifiers.base import Notifier
    from chalicelib.response.execute import Responder
    from chalicelib.response.report import Mode

logger = logging.getLogger("eks_responder")


def event_id(event: Any) -> str | None:
    value = event.get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


class Ledger(Protocol):
    def previous(self, incident_id: str) -> dict[str, Any] | None: ...
    def record(self, report: dict[str, Any]) -> None: ...
    def once(self, incident: Incident, work: Callable[[], dict[str, Any]], mode: str = "live") -> dict[str, Any]: ...
    def progress(self, incident: Incident, mode: str, step: dict[str, Any]) -> None: ...
    def told(self, incident_id: str) -> None: ...
    def stored_report(self, incident_id: str) -> dict[str, Any] | None: ...


def handle(
    event: Any,
    responder: Responder,
    mode: Mode,
    raw_ref: str | None = None,
    *,
    ledger: Ledger | None = None,
    notifiers: Sequence[Notifier] = (),
) -> dict[str, Any]:
    """One event: parse, respond (once), record, tell. Never raises for bad input."""
    eid = event_id(event)
    try:
        incident = registry.to_incident(event, raw_ref)
    except NotHandledError as exc:
        # Understood and out of scope (a subscription wider than the responder's, or a replay): said, not alerted.
        logger.info("not handled", extra={"event_id": eid, "why": str(exc), "event_ref": raw_ref})
        return {"event_id": eid, "not_handled": str(exc)}
    except EventError as exc:
        logger.error("rejected event", extra={"event_id": eid, "error": str(exc), "event_ref": raw_ref})
        rejected: dict[str, Any] = {"event_id": eid, "error": str(exc)}
        return told(rejected, notifiers)

    if incident.observed_at is None and isinstance(event, dict):
        incident = replace(incident, observed_at=timestamp(event.get("time")))  # when the event was sent
    return handle_incident(incident, eid, responder, mode, ledger=ledger, notifiers=notifiers)


def handle_incident(
    incident: Incident,
    eid: str | None,
    responder: Responder,
    mode: Mode,
    *,
    ledger: Ledger | None = None,
    notifiers: Sequence[Notifier] = (),
) -> dict[str, Any]:
    """An incident (from an event, or one of many from a flow-log batch): respond once, record, tell."""
    incident = responder.enrich(incident, mode)
    follows: dict[str, Any] | None = None
    done: dict[tuple[str, str], dict[str, Any]] = {}

    def work() -> dict[str, Any]:
        return _respond(incident, eid, responder, mode, ledger, notifiers, follows, done)

    accepted = responder.accepted_risk(incident)
    if ledger is None or accepted:
        # An accepted risk is neither recorded nor sent: recording would mark the image handled, and a
        # later CVE of the same image that nobody accepted would be dropped as a repeat. The audit log keeps it.
        return _respond(incident, eid, responder, mode, None, () if accepted else notifiers)
    try:
        previous = ledger.previous(incident.id)
        if previous and not previous.get("complete", True):
            # An earlier delivery stopped on a passing fault: this one does what it did not.
            done.update(previous.get("done") or {})
        elif previous and previous["rank"] >= incident.severity.value and _repeats(previous, mode):
            if not previous.get("told", True):
                # Recorded, then the invocation died before its message: the redelivery tells it, once.
                return ledger.once(incident, lambda: _retold(incident, eid, ledger, notifiers), str(mode))
            # Not the steps done (keyed by action and target): a log line holds what JSON can say.
            said = {key: value for key, value in previous.items() if key != "done"}
            logger.info("duplicate incident", extra={"event_id": eid, "incident_id": incident.id, **said})
            reason = (
                f"already handled at severity {previous['severity']} ({previous['updated_at']}): "
                "nothing done, nothing sent"
            )
            return _counted({"event_id": eid, "incident_id": incident.id, "duplicate": True, "reason": reason})
        if previous and previous.get("complete", True) and previous["rank"] >= incident.severity.value:
            follows = previous  # only a dry run was recorded: this live run acts, and says what it follows
        # An unverified copy is reported, never recorded: a forged copy that arrives first must not
        # make the native event of the same id a duplicate.
        return (
            _respond(incident, eid, responder, mode, None, notifiers)
            if incident.unverified
            else ledger.once(incident, work, str(mode))
        )
    except RetryLaterError:
        raise
    except Exception as exc:  # any storage failure: act without exactly-once, and say so
        ran = getattr(exc, "result", None)
        if isinstance(ran, dict):
            # The work ran (actions, record, messages); only its idempotency record failed: never run it twice.
            logger.warning("exactly-once record not stored", extra={"event_id": eid, "error": str(exc)})
            return {**ran, "exactly_once": False}
        if type(exc).__name__ == "IdempotencyAlreadyInProgressError":
            # Not done yet, maybe never (that invocation may have died): fail, so Lambda tries again later.
            logger.warning("being handled by another invocation", extra={"event_id": eid, "incident_id": incident.id})
            raise RetryLaterError(f"incident {incident.id} is being handled by another invocation") from exc
        # Acting matters more than deduplicating: without the table, act (actions skip what is done) and say so.
        logger.warning("exactly-once unavailable", extra={"event_id": eid, "error": f"{type(exc).__name__}: {exc}"})
        result = work()
        result["exactly_once"] = False
        return result


def _repeats(previous: dict[str, Any], mode: Mode) -> bool:
    """Whether an earlier record makes this run a repeat: a live record does for every mode; a dry
    run's record only for another dry run (a dry run changes nothing, so the live run must act)."""
    return previous.get("mode", "live") == "live" or mode != "live"


def _counted(duplicate: dict[str, Any]) -> dict[str, Any]:
    """A duplicate is not told (its first copy was), only counted."""
    from chalicelib.notifiers import metrics

    metrics.report(duplicate)
    return duplicate


def _respond(
    incident: Incident,
    eid: str | None,
    responder: Responder,
    mode: Mode,
    ledger: Ledger | None,
    notifiers: Sequence[Notifier],
    follows: dict[str, Any] | None = None,
    done: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    try:
        report = responder.handle(incident, mode, done, _progress(incident, ledger) if ledger is not None else None)
    except Exception as exc:  # a bug, not bad input: logged with the event, never retried in a loop
        logger.exception("responder failed", extra={"event_id": eid, "incident_id": incident.id})
        passing = faults.transient(exc)
        why = "a passing fault, tried again" if passing else "internal error"
        failed: dict[str, Any] = {"event_id": eid, "error": f"{why} while responding to {incident.id}: {exc}"}
        told(failed, notifiers)
        if passing and in_invocation():
            # Throttled or cut off before any step (resolving a role, reading the cluster): nothing is
            # recorded as handled; the invocation fails so Lambda delivers the event again.
            raise RetryLaterError(f"responding to {incident.id} failed on a passing fault: {exc}") from exc
        return failed
    dry = {"severity": follows["severity"], "at": follows["updated_at"]} if follows is not None else None
    result = {"event_id": eid, **report.to_dict()}
    if follows is not None:
        result["follows_dry_run"] = dry
        result["notes"] = [
            *result.get("notes", []),
            f"follows a dry run of this finding ({follows['severity']}, {follows['updated_at']}): this run acts",
        ]
    recorded = False
    if ledger is not None:
        try:
            ledger.record(result)  # before any notification: a failed notifier never loses the incident
            recorded = True
        except Exception as exc:  # noqa: BLE001
            logger.warning("incident record not written", extra={"incident_id": incident.id, "error": str(exc)})
    audit.record(report, eid, follows_dry_run=dry)
    told(result, notifiers)
    if recorded and ledger is not None:
        _mark_told(ledger, incident.id)
    return _finished(result)


def _progress(incident: Incident, ledger: Ledger) -> Callable[[ActionResult], None]:
    """Each step, kept in the incident's record as it finishes (what a redelivery after a crash
    resumes from: it never runs a step that succeeded again, nor logs one whose outcome it repeats);
    a record that cannot be written costs only that resumption."""

    def kept(result: ActionResult) -> None:
        try:
            ledger.progress(incident, "live", result.to_dict())
        except Exception as exc:  # noqa: BLE001 - the step stands; a redelivery would do it again (idempotent)
            logger.warning("step progress not recorded", extra={"incident_id": incident.id, "error": str(exc)})

    return kept


def _mark_told(ledger: Ledger, incident_id: str) -> None:
    try:
        ledger.told(incident_id)
    except Exception as exc:  # noqa: BLE001 - at worst a redelivery tells it again
        logger.warning("incident not marked told", extra={"incident_id": incident_id, "error": str(exc)})


def _retold(incident: Incident, eid: str | None, ledger: Ledger, notifiers: Sequence[Notifier]) -> dict[str, Any]:
    """The incident was handled and recorded by an invocation that died before telling: tell it now
    from its record (nothing is done again), with its audit line."""
    stored = ledger.stored_report(incident.id) or {}
    result = {**stored, "event_id": eid, "notes": [*stored.get("notes", []),
              "told by a redelivery: the invocation that handled it stopped before its message"]}  # fmt: skip
    logger.info("incident", extra={"incident_id": incident.id, "event": eid, "what": "told again",
                                   "rule": stored.get("rule"), "mode": stored.get("mode")})  # fmt: skip
    told(result, notifiers)
    _mark_told(ledger, incident.id)
    return result


def _finished(result: dict[str, Any]) -> dict[str, Any]:
    """The result; in a Lambda invocation, a step that failed on a passing fault fails the
    invocation after it is told and recorded (as not complete), so Lambda delivers the event again
    and the next delivery does what this one could not."""
    from chalicelib.executors.ledger import passing_failures
    from chalicelib.invocation import in_invocation

    failed = passing_failures(result)
    if failed and in_invocation():
        steps = ", ".join(f"{a['action']} on {a['target']}" for a in failed[:5])
        logger.warning("steps failed on passing faults: delivered again", extra={"incident_id":
                       (result.get("incident") or {}).get("id"), "steps": steps})  # fmt: skip
        raise RetryLaterError(f"{len(failed)} step(s) failed on a passing fault ({steps}): tried again")
    return result


def told(result: dict[str, Any], notifiers: Sequence[Notifier]) -> dict[str, Any]:
    from chalicelib.notifiers import metrics
    from chalicelib.notifiers.base import notify

    metrics.report(result)
    if notifiers:
        result["notifications"] = [d.to_dict() for d in notify(result, list(notifiers))]
    return result
