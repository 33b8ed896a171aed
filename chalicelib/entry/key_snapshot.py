"""The hourly key-policy snapshot: the current policy of every protected key, kept as the last known
good one that kms:restore-key-policy puts back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.executors.kms import KeyRegistry, KMSGateway, PolicyStore


def refresh(
    store: PolicyStore, home: tuple[KeyRegistry, KMSGateway], members: Iterable[str],
    member: Callable[[str], tuple[KeyRegistry, KMSGateway]],
) -> dict[str, Any]:  # fmt: skip
    """Every protected key of this account, then each member's (read through its spoke role) into the
    hub's store; one member's failure is reported and never stops the others."""
    from chalicelib.executors.kms import snapshot_policies

    result: dict[str, Any] = {"stored": snapshot_policies(*home, store)}
    for account in members:
        try:
            registry, gateway = member(account)
            result["stored"].extend(snapshot_policies(registry, gateway, store))
        except Exception as exc:  # noqa: BLE001 - one member's failure never stops the others
            result.setdefault("errors", {})[account] = f"{type(exc).__name__}: {exc}"
    return result
