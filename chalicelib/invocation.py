"""The running invocation: its Lambda context and how much of its time is left.

Executors and notifiers read the deadline here (no call starts, and no retry waits, past it); the
Lambda entry sets the context for each invocation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


class LocalContext:
    """The Lambda context, where there is none (replay, tests): an invocation with a deadline."""

    def __init__(self, timeout_seconds: float = 120.0) -> None:
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


_invocation: ContextVar[Any] = ContextVar("lambda_context", default=None)


@contextmanager
def invocation(context: Any) -> Iterator[None]:
    """Run one invocation's work with its Lambda context known to the exactly-once ledger, so a
    crashed or timed-out invocation's in-progress record expires with the invocation."""
    token = _invocation.set(context)
    try:
        yield
    finally:
        _invocation.reset(token)


def current_context() -> Any:
    """The running invocation's context, or a local one with the function's timeout."""
    return _invocation.get() or LocalContext()


# Seconds kept, of an invocation's time, to record and tell: no call starts (and no retry waits) later.
DEADLINE_MARGIN = 15.0


class DeadlineError(Exception):
    """Not started: the invocation's deadline is too near to finish it and still record and tell."""


def check_deadline(what: str = "the call") -> None:
    left = remaining_seconds()
    if left is not None and left < DEADLINE_MARGIN:
        raise DeadlineError(f"not started: deadline ({left:.0f} s left of the invocation, {what} not sent)")


def in_invocation() -> bool:
    """Whether a Lambda invocation (or a test of one) is running: only there does failing an
    invocation make its event come again."""
    return _invocation.get() is not None


def remaining_seconds() -> float | None:
    """What is left of the running invocation (None outside one): a retry must not outlive it."""
    context = _invocation.get()
    if context is None:
        return None
    try:
        return float(context.get_remaining_time_in_millis()) / 1000
    except Exception:  # noqa: BLE001 - a context without a deadline
        return None
