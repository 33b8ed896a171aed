# The compiled first pass of the flow-log scanner (_prefilter.c).
from collections.abc import Callable

def keep(
    block: bytes,
    width: int,
    decisive: tuple[int, ...],
    wanted: tuple[int, ...],
    memo: dict[bytes, int],
    public: int,
    mining_ports: tuple[bytes, ...],
    admin_ports: tuple[bytes, ...],
    probe_digits: int,
    max_bytes: int,
    max_port: bytes,
    egress: dict[bytes, list[object]] | None,
    egress_limit: int,
    classify: Callable[[bytes], int] | None,
    ports: dict[bytes, set[bytes]] | None,
    sweeps: dict[bytes, set[bytes]] | None,
    sweep_cap: int,
    probe_bytes: int,
    probe_packets: int,
    known: bytearray | None,
    known_keys: list[bytes],
    tables: tuple[object, ...] | None,
    links: list[object] | None = None,
    owner: int = 0,
    firsts: list[bytes] | None = None,
    max_probers: int = 0,
    /,
) -> tuple[int, list[bytes]] | None: ...
def ipv4_ranges(text: bytes, /) -> tuple[list[int], list[int], list[bytes]] | None: ...
def at_least(sets: dict[bytes, set[bytes]], least: int, /) -> list[bytes]: ...
