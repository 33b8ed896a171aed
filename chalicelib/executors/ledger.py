"""Exactly once: Powertools idempotency records and one incident record per incident, in DynamoDB.

One table (partition key `id`, string) holds both: Powertools' in-progress/completed records,
keyed by incident id and severity band, and `incident#<id>` items with the latest report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chalicelib.actions.base import IAMStatement
from chalicelib.incident import Incident, Severity

RECORD_DAYS = 30


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    table = stage_env.get("INCIDENTS_TABLE")
    if not table:
        return []
    arn = f"arn:aws:dynamodb:{{region}}:{{account}}:table/{table}"
    return [
        IAMStatement(("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"), (arn,))
    ]


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
            event_key_jmespath="[incident_id, severity]",
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
        }

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
                "report": {"S": json.dumps(report, default=str)},
                "expiration": {"N": str(int(now.timestamp()) + RECORD_DAYS * 86400)},
            },
        )

    def once(self, incident: Incident, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run `work` once per (incident, severity band); a repeat gets the first result back."""
        from aws_lambda_powertools.utilities.idempotency import idempotent_function

        @idempotent_function(  # type: ignore[untyped-decorator]
            data_keyword_argument="key", persistence_store=self._persistence, config=self._config
        )
        def respond(key: dict[str, str]) -> dict[str, Any]:  # noqa: ARG001 - the key is what Powertools hashes
            return work()

        result: dict[str, Any] = respond(key={"incident_id": incident.id, "severity": incident.severity.label})
        return result
