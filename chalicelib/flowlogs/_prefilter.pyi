# The compiled first pass of the flow-log scanner (_prefilter.c).

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
    /,
) -> tuple[int, list[bytes]] | None: ...
