"""Plans waiting for approval, in the incident table: `plan#<incident id>` items.

Every change is a conditional write on the item's version, so two clicks on Approve (or an
approval racing a rejection, or two invocations carrying out the same steps) cannot both win:
the second sees the state the first left and says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from chalicelib.incident import Incident

EXTRA_DAYS = 30  # a decided plan stays readable (for the audit trail and release) this long


class PlanConflictError(Exception):
    """Someone else changed the plan first: read it again."""


class Stored(Protocol):
    """What the store needs of a plan: whose it is, when it expires, and its JSON-able form."""

    @property
    def incident(self) -> Incident: ...
    @property
    def expires_at(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


P = TypeVar("P", bound=Stored)


class PlanStore(Generic[P]):
    """`load` turns a stored plan's dict back into a plan (the response stage's `Plan.from_dict`): the
    store keeps plans without knowing their shape."""

    def __init__(self, table: str, dynamodb: Any, load: Callable[[dict[str, Any]], P]) -> None:
        self._table = table
        self._dynamodb = dynamodb
        self._load = load

    @staticmethod
    def _key(incident_id: str) -> dict[str, Any]:
        return {"id": {"S": f"plan#{incident_id}"}}

    def put(self, plan: P) -> None:
        """A new plan replaces an older one of the same incident (a later, more severe occurrence)."""
        expires = int(datetime.fromisoformat(plan.expires_at).timestamp()) + EXTRA_DAYS * 86400
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                **self._key(plan.incident.id),
                "plan": {"S": json.dumps(plan.to_dict(), default=str)},
                "version": {"N": "1"},
                "expiration": {"N": str(expires)},
            },
        )

    def get(self, incident_id: str) -> tuple[P, int] | None:
        item = self._dynamodb.get_item(TableName=self._table, Key=self._key(incident_id), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        return self._load(json.loads(item["plan"]["S"])), int(item["version"]["N"])

    def all(self) -> list[tuple[P, int]]:
        """Every kept plan (a scan: the expiry schedule runs it every 15 minutes over a small table)."""
        found: list[tuple[P, int]] = []
        pages = self._dynamodb.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression="begins_with(#id, :plan)",
            ExpressionAttributeNames={"#id": "id"},
            ExpressionAttributeValues={":plan": {"S": "plan#"}},
        )
        for page in pages:
            for item in page.get("Items", []):
                found.append((self._load(json.loads(item["plan"]["S"])), int(item["version"]["N"])))
        return found

    def replace(self, plan: P, version: int) -> int:
        """Write `plan` if the stored one is still at `version`; the new version, or PlanConflictError."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(plan.incident.id),
                UpdateExpression="SET #p = :plan, #v = :next",
                ConditionExpression="#v = :seen",
                ExpressionAttributeNames={"#p": "plan", "#v": "version"},
                ExpressionAttributeValues={
                    ":plan": {"S": json.dumps(plan.to_dict(), default=str)},
                    ":next": {"N": str(version + 1)},
                    ":seen": {"N": str(version)},
                },
            )
        except Exception as exc:
            if type(exc).__name__ == "ConditionalCheckFailedException" or "ConditionalCheckFailed" in str(exc):
                raise PlanConflictError(plan.incident.id) from exc
            raise
        return version + 1
