"""Exactly once: Powertools idempotency records and one incident record per incident, in DynamoDB.

One table (partition key `id`, string) holds both: Powertools' in-progress/completed records,
keyed by incident id, severity band and mode, and `incident#<id>` items with the latest report.
A dry run is recorded as a dry run: it never makes the live run of the same finding a repeat.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chalicelib.incident import Incident, Severity
from chalicelib.interfaces import IAMStatement

RECORD_DAYS = 30


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    table = stage_env.get("INCIDENTS_TABLE")
    if not table:
        return []
    arn = f"arn:aws:dynamodb:{{region}}:{{account}}:table/{table}"
    return [
        IAMStatement(("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"), (arn,))
    ]


MAX_RECORD_BYTES = 300_000  # DynamoDB items hold 400 KB; the rest is keys and attributes
PROGRESS_ATTRIBUTES = ("severity", "rank", "updated_at", "mode", "complete", "expiration", "steps")
MAX_STEP_BYTES = 16_000  # one step's progress entry (its detail and prior state); a longer one is done again


class WorkDoneError(Exception):
    """The work ran but its idempotency record could not be stored: never run it again."""

    def __init__(self, result: dict[str, Any], cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.result = result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What an idempotency record keeps of a result: enough to say what was done, always small."""
    return {
        "event_id": result.get("event_id"),
        "incident_id": (result.get("incident") or {}).get("id") or result.get("incident_id"),
        "rule": result.get("rule"),
        "mode": result.get("mode"),
        "actions": [
            {k: str(a.get(k, ""))[:200] for k in ("action", "target", "status")} for a in result.get("actions", [])[:50]
        ],
    }


def bounded(report: dict[str, Any]) -> str:
    """The report as stored in the incident record: whole when it fits, else its summary."""
    text = json.dumps(report, default=str)
    if len(text.encode()) <= MAX_RECORD_BYTES:
        return text
    return json.dumps({**summary(report), "truncated": f"the full report was {len(text.encode())} bytes"})


class IncidentLedger:
    def __init__(self, table: str, dynamodb: Any) -> None:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
        )

        self._table = table
        self._dynamodb = dynamodb
        self._persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)
        self._config = IdempotencyConfig(
            event_key_jmespath="[incident_id, severity, mode]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=RECORD_DAYS * 86400,
        )

    def previous(self, incident_id: str) -> dict[str, Any] | None:
        item = self._dynamodb.get_item(TableName=self._table, Key={"id": {"S": f"incident#{incident_id}"}}).get("Item")
        if not item:
            return None
        return {
            "severity": item["severity"]["S"],
            "rank": int(item["rank"]["N"]),
            "updated_at": item["updated_at"]["S"],
            "mode": _mode(item),
            # False when steps failed on a passing fault: the incident is not handled yet.
            "complete": bool(item["complete"]["BOOL"]) if "complete" in item else True,
            "done": _done(item),
            # False between the record and its message: a crash there is told by the redelivery.
            "told": bool(item["told"]["BOOL"]) if "told" in item else True,
        }

    def stored_report(self, incident_id: str) -> dict[str, Any] | None:
        """The report an incident's record keeps (to tell it when its own invocation could not)."""
        item = self._dynamodb.get_item(TableName=self._table, Key={"id": {"S": f"incident#{incident_id}"}}).get("Item")
        try:
            report = json.loads(item["report"]["S"]) if item else None
        except (KeyError, TypeError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def progress(self, incident: Incident, mode: str, step: dict[str, Any]) -> None:
        """One step of a live response finished: kept in the incident's record, marked not complete,
        so a redelivery after a crash resumes after it instead of doing it again."""
        now = datetime.now(UTC)
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"id": {"S": f"incident#{incident.id}"}},
            UpdateExpression="SET #severity = :severity, #rank = :rank, #updated_at = :now, #mode = :mode, "
            "#complete = :false, #expiration = :expiration, #steps = list_append(if_not_exists(#steps, :none), :step)",
            ExpressionAttributeNames={f"#{name}": name for name in PROGRESS_ATTRIBUTES},
            ExpressionAttributeValues={
                ":severity": {"S": incident.severity.label},
                ":rank": {"N": str(incident.severity.value)},
                ":now": {"S": now.isoformat()},
                ":mode": {"S": mode},
                ":false": {"BOOL": False},
                ":expiration": {"N": str(int(now.timestamp()) + RECORD_DAYS * 86400)},
                ":none": {"L": []},
                ":step": {"L": [{"S": json.dumps(step, default=str)[:MAX_STEP_BYTES]}]},
            },
        )

    def told(self, incident_id: str) -> None:
        """The incident's message went out (after its record): a redelivery does not tell it again."""
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"id": {"S": f"incident#{incident_id}"}},
            UpdateExpression="SET #told = :true",
            ConditionExpression="attribute_exists(id)",
            ExpressionAttributeNames={"#told": "told"},
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )

    def record(self, report: dict[str, Any]) -> None:
        incident = report["incident"]
        now = datetime.now(UTC)
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "id": {"S": f"incident#{incident['id']}"},
                "severity": {"S": incident["severity"]},
                "rank": {"N": str(Severity.parse(incident["severity"]).value)},
                "updated_at": {"S": now.isoformat()},
                "mode": {"S": str(report.get("mode") or "live")},
                "complete": {"BOOL": not passing_failures(report)},
                "told": {"BOOL": False},
                "report": {"S": bounded(report)},
                "expiration": {"N": str(int(now.timestamp()) + RECORD_DAYS * 86400)},
            },
        )

    def once(self, incident: Incident, work: Callable[[], dict[str, Any]], mode: str = "live") -> dict[str, Any]:
        """Run `work` once per (incident, severity band, mode).

        The in-progress record expires with the invocation (its Lambda context is registered), so
        a crashed or timed-out invocation blocks the incident only until its own deadline, and the
        redelivery finishes the work. What Powertools stores is a bounded summary, never the full
        report, so no report is too large for a DynamoDB item; a repeat gets that summary back,
        marked as a duplicate.
        """
        from aws_lambda_powertools.utilities.idempotency import idempotent_function

        from chalicelib.invocation import current_context

        self._config.register_lambda_context(current_context())
        ran: dict[str, dict[str, Any]] = {}

        @idempotent_function(  # type: ignore[untyped-decorator]
            data_keyword_argument="key", persistence_store=self._persistence, config=self._config
        )
        def respond(key: dict[str, str]) -> dict[str, Any]:  # noqa: ARG001 - the key is what Powertools hashes
            ran["result"] = work()
            return summary(ran["result"])

        try:
            key = {"incident_id": incident.id, "severity": incident.severity.label, "mode": mode}
            stored: dict[str, Any] = respond(key=key)
        except Exception as exc:
            if "result" in ran:
                raise WorkDoneError(ran["result"], exc) from exc
            raise
        if "result" in ran:
            return ran["result"]
        return {**stored, "duplicate": True, "reason": "already handled by an earlier invocation: nothing done again"}


def _mode(item: dict[str, Any]) -> str:
    """The mode a record was made in; records written before modes were kept say so in their report."""
    if "mode" in item:
        return str(item["mode"]["S"])
    try:
        return str(json.loads(item["report"]["S"]).get("mode") or "live")
    except (KeyError, TypeError, ValueError):
        return "live"  # unknown: the safe reading is that it acted, so it is not acted on twice


def passing_failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps of a report that failed on a passing fault (worth delivering the event again)."""
    return [a for a in report.get("actions") or [] if a.get("status") == "failed" and a.get("transient")]


def _done(item: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The steps earlier deliveries finished ((action, target) -> the latest result): from the
    report, and from the steps kept as they finished (a delivery that died before its report)."""
    found: list[Any] = []
    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
        found.extend(json.loads(item["report"]["S"]).get("actions") or [])
    for entry in (item.get("steps") or {}).get("L") or []:
        try:
            found.append(json.loads(entry["S"]))
        except (KeyError, TypeError, ValueError):
            continue  # cut at its size limit: that step is done again (actions skip what is done)
    return {(str(a.get("action")), str(a.get("target"))): a for a in found if isinstance(a, dict)}
