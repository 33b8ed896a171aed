"""What each write of a dry run became, so a report never claims more than happened.

Executors call `checked` when the API itself validated the write without applying it
(Kubernetes `dryRun=All`, EC2 `DryRun=True`) and `not_sent` when the API has no dry run (IAM,
KMS, EKS, Auto Scaling). The responder opens a journal around each action and puts what it
holds in the action's result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_journal: ContextVar[list[str] | None] = ContextVar("dry_run_journal", default=None)


def checked(call: str, how: str) -> None:
    """`call` went to the API as a dry run (`how`: the API's mechanism) and was accepted."""
    _note(f"{call} checked by the API ({how}), not applied")


def not_sent(call: str) -> None:
    """`call` was not sent: its API has no dry run."""
    _note(f"{call} not sent (the API has no dry run)")


APPLIED = "APPLIED"


def applied(call: str) -> None:
    """`call` went as a dry run and the endpoint carried it out (it answered with success, not
    `DryRunOperation`): the change is made and must be reported, and recorded, as made."""
    _note(f"{call} {APPLIED}: the endpoint ignored DryRun and made the change")


def any_applied(entries: list[str]) -> bool:
    return any(f" {APPLIED}: " in e for e in entries)


def held(call: str) -> None:
    """`call` was held, to go to the API with a later step's write to the same object."""
    _note(f"{call} held, sent with a later step's write to the same object")


def _note(entry: str) -> None:
    journal = _journal.get()
    if journal is not None and entry not in journal:
        journal.append(entry)


@contextmanager
def journal() -> Iterator[list[str]]:
    """Collect what the writes inside the block became."""
    entries: list[str] = []
    token = _journal.set(entries)
    try:
        yield entries
    finally:
        _journal.reset(token)


def describe(entries: list[str]) -> str:
    if not entries:
        return "no write was needed"
    return "; ".join(entries)
