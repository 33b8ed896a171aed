"""Blast-radius caps that hold across concurrent invocations: leases in the incident table.

A cap of N per hour is N slot items (`cap#<kind>#<account>#<region>#<cluster>#<i>`). Taking a
slot is one conditional PutItem that succeeds only when the slot is free, its lease is older than
an hour, or it already belongs to the same target; DynamoDB serialises the writes, so fifty
simultaneous findings can never take more than N slots between them.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

WINDOW = timedelta(hours=1)


class CapLeases:
    def __init__(self, table: str, dynamodb: Any) -> None:
        self._table = table
        self._dynamodb = dynamodb

    @staticmethod
    def _slot(kind: str, scope: str, index: int) -> dict[str, Any]:
        return {"id": {"S": f"cap#{kind}#{scope}#{index}"}}

    def holder(self, kind: str, scope: str, cap: int, target: str, now: datetime) -> int | None:
        """The slot `target` already holds in this window, if any."""
        since = int((now - WINDOW).timestamp())
        for index in range(cap):
            item = self._dynamodb.get_item(TableName=self._table, Key=self._slot(kind, scope, index)).get("Item")
            if item and item["target"]["S"] == target and int(item["at"]["N"]) >= since:
                return index
        return None

    def reserve(self, kind: str, scope: str, cap: int, target: str, incident: str, now: datetime) -> int | None:
        """Take a slot for `target` (atomically); None when all `cap` slots are held by others."""
        held = self.holder(kind, scope, cap, target, now)
        if held is not None:
            return held
        since = int((now - WINDOW).timestamp())
        at = int(now.timestamp())
        for index in range(cap):
            item = {
                **self._slot(kind, scope, index),
                "target": {"S": target},
                "incident": {"S": incident},
                "at": {"N": str(at)},
                "expiration": {"N": str(at + 2 * int(WINDOW.total_seconds()))},
            }
            try:
                self._dynamodb.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(id) OR #at < :since OR #target = :target",
                    ExpressionAttributeNames={"#at": "at", "#target": "target"},
                    ExpressionAttributeValues={":since": {"N": str(since)}, ":target": {"S": target}},
                )
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                continue
            return index
        return None

    def release(self, kind: str, scope: str, index: int, target: str) -> None:
        """Give a slot back (the action did not take the target out of service after all)."""
        with contextlib.suppress(self._dynamodb.exceptions.ConditionalCheckFailedException):
            self._dynamodb.delete_item(
                TableName=self._table,
                Key=self._slot(kind, scope, index),
                ConditionExpression="#target = :target",
                ExpressionAttributeNames={"#target": "target"},
                ExpressionAttributeValues={":target": {"S": target}},
            )

    def first_to_reach(self, kind: str, scope: str, now: datetime) -> bool:
        """True for exactly one caller per cap and hour: the one that tells people the cap was reached."""
        hour = now.strftime("%Y-%m-%dT%H")
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": f"cap-reached#{kind}#{scope}#{hour}"},
                    "expiration": {"N": str(int(now.timestamp()) + 2 * int(WINDOW.total_seconds()))},
                },
                ConditionExpression="attribute_not_exists(id)",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True
