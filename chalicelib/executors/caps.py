"""Blast-radius caps that hold across concurrent invocations: leases in the incident table.

A cap of N per hour is N slot items (`cap#<kind>#<account>#<region>#<cluster>#<i>`). Taking a
slot is one conditional PutItem that succeeds only when the slot is free, its lease is older than
an hour, or it already belongs to the same target; DynamoDB serialises the writes, so fifty
simultaneous findings can never take more than N slots between them.

A shared effect (one network ACL deny that several incidents rely on) is one item
(`holds#<effect>`) with the set of incidents that hold it: a release takes its incident out, and
only the last holder undoes the effect.

The leases are not the only count: the cluster's own markers (a node's cordoned-at annotation, an
instance's isolated-at tag) are counted beside them (response/guardrails.py), so a table restored
empty, or replaced, never lets more than N through in the hour.
"""

from __future__ import annotations

import contextlib
import json
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

    def holders(self, kind: str, scope: str, cap: int, now: datetime) -> set[str]:
        """The targets holding one of the cap's slots in this window."""
        since = int((now - WINDOW).timestamp())
        found: set[str] = set()
        for index in range(cap):
            # Consistent: a lease taken just before this read must be seen (what keeps a burst under the cap).
            key = self._slot(kind, scope, index)
            item = self._dynamodb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            if item and int(item["at"]["N"]) >= since:
                found.add(item["target"]["S"])
        return found

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

    def hold(self, effect: str, incident: str, made: dict[str, Any] | None = None) -> None:
        """Record that `incident` relies on a shared effect (atomically: ADD to a set). `made`, the prior
        state of an incident that changed it, is kept only when nobody held the effect before: it is the
        state before the first change, which whichever holder lets go last puts back (a later
        incident's own prior is the state the first one left)."""
        key = {"id": {"S": f"holds#{effect}"}}
        me = {":me": {"SS": [incident]}}
        if made is not None:
            try:
                self._dynamodb.update_item(
                    TableName=self._table, Key=key, UpdateExpression="ADD #holders :me SET #made = :made",
                    ConditionExpression="attribute_not_exists(#holders)",
                    ExpressionAttributeNames={"#holders": "holders", "#made": "made"},
                    ExpressionAttributeValues={**me, ":made": {"S": json.dumps(made, sort_keys=True)}},
                )  # fmt: skip
                return
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                pass  # held already: the first change's prior state stays
        self._dynamodb.update_item(TableName=self._table, Key=key, UpdateExpression="ADD #holders :me",
                                   ExpressionAttributeNames={"#holders": "holders"},
                                   ExpressionAttributeValues=me)  # fmt: skip

    def let_go(self, effect: str, incident: str) -> tuple[list[str], dict[str, Any] | None]:
        """`incident` no longer relies on the effect: (the incidents that still do, how to undo it).
        The record stays, so a release tried again (refused the first time) still knows."""
        answer = self._dynamodb.update_item(
            TableName=self._table, Key={"id": {"S": f"holds#{effect}"}}, UpdateExpression="DELETE #holders :me",
            ExpressionAttributeNames={"#holders": "holders"}, ExpressionAttributeValues={":me": {"SS": [incident]}},
            ReturnValues="ALL_NEW",
        )  # fmt: skip
        item = answer.get("Attributes") or {}
        made = item.get("made", {}).get("S")
        return sorted(item.get("holders", {}).get("SS", [])), json.loads(made) if made else None

    def remade(self, effect: str, made: dict[str, Any]) -> None:
        """The effect was changed by another incident (a deny evicted, or put back): how to undo it now."""
        value = {":made": {"S": json.dumps(made, sort_keys=True)}}
        self._dynamodb.update_item(TableName=self._table, Key={"id": {"S": f"holds#{effect}"}},
                                   UpdateExpression="SET #made = :made", ExpressionAttributeNames={"#made": "made"},
                                   ExpressionAttributeValues=value)  # fmt: skip

    def held_by(self, effect: str) -> tuple[list[str], dict[str, Any] | None]:
        """Who holds the effect, and how to undo it (read only: a dry-run release changes nothing)."""
        item = self._dynamodb.get_item(TableName=self._table, Key={"id": {"S": f"holds#{effect}"}}).get("Item") or {}
        made = item.get("made", {}).get("S")
        return sorted(item.get("holders", {}).get("SS", [])), json.loads(made) if made else None

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
