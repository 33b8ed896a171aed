"""An AWS client made when it is first used, not when its gateway is built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LazyClient:
    """Stands for a boto3 client until an attribute of it is asked for. A gateway holds clients
    for every action it may run, and an incident uses a few: each client loads its service model
    (EC2's alone takes about 40 ms), which a cold start should pay only for the calls it sends."""

    __slots__ = ("_client", "_make")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)
