"""Cap slots: taken once per target, given back when the action did nothing, told once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chalicelib.actions.base import ActionContext
from chalicelib.actions.k8s.cordon_node import CordonNode
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.interfaces import CORDONED_AT_ANNOTATION, Target
from chalicelib.response import guardrails
from chalicelib.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Caps:
    """An in-memory CapStore with the same contract as the DynamoDB one."""

    def __init__(self) -> None:
        self.slots: dict[tuple[str, str, int], str] = {}
        self.told: set[tuple[str, str]] = set()

    def reserve(self, kind: str, scope: str, cap: int, target: str, incident: str, now: datetime) -> int | None:
        for index in range(cap):
            if self.slots.get((kind, scope, index)) in {None, target}:
                self.slots[(kind, scope, index)] = target
                return index
        return None

    def release(self, kind: str, scope: str, index: int, target: str) -> None:
        if self.slots.get((kind, scope, index)) == target:
            del self.slots[(kind, scope, index)]

    def holders(self, kind: str, scope: str, cap: int, now: datetime) -> set[str]:
        return {t for (k, sc, _), t in self.slots.items() if (k, sc) == (kind, scope)}

    def first_to_reach(self, kind: str, scope: str, now: datetime) -> bool:
        first = (kind, scope) not in self.told
        self.told.add((kind, scope))
        return first


class Kube:
    def __init__(self, cordoned: dict[str, str] | None = None) -> None:
        self.cordoned = cordoned or {}  # node -> its cordoned-at annotation

    def get_node(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": {}, "annotations": {}}}

    def list_nodes(self) -> list[dict[str, Any]]:
        return [
            {"metadata": {"name": n, "annotations": {CORDONED_AT_ANNOTATION: at}}} for n, at in self.cordoned.items()
        ]


def _ctx(caps: Caps, kube: Kube | None = None, cap: int = 1) -> ActionContext:
    incident = Incident(
        id="inc", source="guardduty", type="t", title="t", severity=Severity.HIGH, score=8.0,
        account="123456789012", region="us-east-1", resource_kind=ResourceKind.NODE, cluster="prod",
    )  # fmt: skip
    settings = Settings(max_nodes_cordoned_per_hour=cap)
    return ActionContext(incident, settings, kube or Kube(), NOW, dry_run=False, caps=caps)  # type: ignore[arg-type]


def test_a_failed_action_gives_its_slot_back() -> None:
    caps = Caps()
    ctx = _ctx(caps)
    action, first, second = CordonNode(), Target("node", "node-a"), Target("node", "node-b")
    assert guardrails.block(action, first, ctx) is None
    assert guardrails.block(action, second, _ctx(caps)) is not None  # the only slot is node-a's
    guardrails.settle(ctx, action, first, succeeded=False)
    assert guardrails.block(action, second, _ctx(caps)) is None


def test_a_succeeded_action_keeps_its_slot_and_the_cap_is_told_once() -> None:
    caps = Caps()
    ctx = _ctx(caps)
    action = CordonNode()
    assert guardrails.block(action, Target("node", "node-a"), ctx) is None
    guardrails.settle(ctx, action, Target("node", "node-a"), succeeded=True)
    held = [_ctx(caps) for _ in range(3)]
    reasons = [guardrails.block(action, Target("node", f"node-{i}"), c) for i, c in enumerate(held)]
    assert all(r and "blast-radius cap reached" in r for r in reasons)
    assert sum(len(c.notes) for c in held) == 1
    # The same node again (a redelivery) keeps its own slot.
    assert guardrails.block(action, Target("node", "node-a"), _ctx(caps)) is None


def test_a_dry_run_takes_no_slot() -> None:
    caps = Caps()
    ctx = _ctx(caps)
    ctx.dry_run = True
    assert guardrails.block(CordonNode(), Target("node", "node-a"), ctx) is None
    assert caps.slots == {}


def test_the_clusters_markers_count_when_the_leases_were_lost() -> None:
    """A table restored empty holds no lease, but the nodes still say when they were cordoned: the
    count is the union, so the cap holds; a marker older than the hour no longer counts."""
    recent, old = "2026-12-01T11:30:00+00:00", "2026-12-01T10:30:00+00:00"
    kube = Kube({"node-a": recent, "node-b": recent, "node-c": old})
    caps = Caps()
    reason = guardrails.block(CordonNode(), Target("node", "node-d"), _ctx(caps, kube, cap=2))
    assert reason is not None
    assert "counting the cluster's own markers (2 marked)" in reason
    assert caps.slots == {}  # the slot taken to count was given back
    # One marked node, one lease held by another target: two counted, the cap of three has room.
    kube = Kube({"node-a": recent, "node-c": old})
    caps = Caps()
    caps.slots[("node", "123456789012#us-east-1#prod", 0)] = "node-b"
    assert guardrails.block(CordonNode(), Target("node", "node-d"), _ctx(caps, kube, cap=3)) is None
    # A lease and a marker of the same node count once: node-a, node-b (leased and marked), node-d (leased).
    both = Kube({"node-a": recent, "node-b": recent})
    assert guardrails.block(CordonNode(), Target("node", "node-e"), _ctx(caps, both, cap=4)) is None
    assert guardrails.block(CordonNode(), Target("node", "node-f"), _ctx(caps, both, cap=4)) is not None
