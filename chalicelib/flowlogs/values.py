"""Equality and repr for the scanner's slotted value classes, from their slots: the scanner's
process never imports `dataclasses` (and with it `inspect`, `ast` and `dis`, some 17 ms of a scan)."""

from __future__ import annotations


class Value:  # noqa: PLW1641 - unhashable (mutable, as a dataclass is) unless a class says otherwise
    """Two values are equal when they are of one class and their slots hold equal things."""

    __slots__: tuple[str, ...] = ()

    def _state(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Value) and self._state() == other._state()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"
