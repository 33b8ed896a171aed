"""The scanner: one pass over flow-log records, flagging what the detectors look for.

Detectors: connections to or from the threat list, mining-pool ports, SSH/RDP accepted from
the internet, port scans, sweeps of many internal addresses (east-west), connections to
destinations ours must never reach, unusual egress volume. A compiled first pass (`_prefilter.c`)
reads each block and hands on only the records a detector could act on (most records are traffic
between our own addresses); those are split at once and the columns every record needs are sliced
out; per record the work is two dict lookups and a few comparisons of bytes, and a record is
decoded only when a detector fires. Without the compiled pass the whole block takes that road.
Memory is bounded by distinct addresses and findings, never by the number of records.
"""

from __future__ import annotations

import gc
import heapq

from chalicelib.flow_detectors import DETECTORS, MINING_PORTS
from chalicelib.flowlogs.addresses import FORBIDDEN, NO_ADDRESS, PUBLIC, THREAT, Classifier, Forbidden
from chalicelib.flowlogs.fields import Layout
from chalicelib.flowlogs.values import Value

TYPE_CHECKING = False  # no `typing` in the scanner's process (addresses.py says why)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

SCANNER = 8  # an address already seen scanning: its records are kept from then on
ADMIN_PORTS = (22, 3389)
TOP_FLOWS = 10
_KEEP = 50  # remote addresses and interfaces kept per finding
MARK_EVERY = 50_000  # records between checks for new port scanners (a check walks every source seen)
MAX_PROBING_SOURCES = 200_000  # sources whose probed ports are counted in one delivery
# The largest TCP packet without payload: a 40-byte IPv6 header and a 60-byte TCP header (full
# options). A SYN-ACK, an ACK or a RST never exceeds it; a packet that does carries data.
BARE_TCP_PACKET = 100
# A probe's outbound side: a SYN (and its retries), or SYN, ACK and RST of a connect scan. Any
# exchange that carried a request has more: a scraper's or a health check's flows never count.
PROBE_PACKETS = 3
TCP = "6"
# A miner is the client of its pool: ours sends from a port the OS picked, never a privileged one.
# Ours on a privileged port (a server answering) and a packet the VPC rejected (a scanner whose
# source port happens to be a pool's) are not mining.
CLIENT_PORTS = 1024
MAX_PROBE_DIGITS = 18  # the compiled first pass reads byte counts up to this many digits
_LONGEST = (1 << 63) - 1  # the compiled pass's egress counts are C long longs
# The fields the first pass judges a record by, and the ones this scanner (and `Flow`) ever reads.
_DECISIVE = ("srcaddr", "dstaddr", "srcport", "dstport", "bytes")
_READ = (
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "bytes",
    "interface-id",
    "action",
    "protocol",
    "packets",
    "start",
    "end",
)


def _sources_at_least(ports: dict[bytes, set[bytes]], least: int) -> list[bytes]:
    """The sources that probed at least `least` ports."""
    return [src for src, seen in ports.items() if len(seen) >= least]


_keep: Callable[..., tuple[int, list[bytes]] | None] | None
_at_least: Callable[[dict[bytes, set[bytes]], int], list[bytes]] = _sources_at_least
try:  # the compiled first pass (deploy/native.py builds it); without it, the same findings, slower
    from chalicelib.flowlogs._prefilter import at_least as _compiled_at_least
    from chalicelib.flowlogs._prefilter import keep as _keep

    _at_least = _compiled_at_least
except ImportError:  # pragma: no cover - a machine without a C compiler, or a package built off Linux
    _keep = None


class DetectorSettings(Value):
    """What the detectors look for (the deployment's settings, or these defaults)."""

    __slots__ = ("admin_ports", "egress_bytes", "enabled", "forbidden", "mining_ports", "scan_max_bytes",
                 "scan_max_port", "scan_min_ports", "sweep_min_addresses")  # fmt: skip

    def __init__(
        self,
        *,
        enabled: frozenset[str] = frozenset(DETECTORS),
        mining_ports: tuple[int, ...] = MINING_PORTS,
        admin_ports: tuple[int, ...] = ADMIN_PORTS,
        scan_min_ports: int = 100,  # distinct destination ports below `scan_max_port` from one source
        scan_max_port: int = 32767,  # above: ephemeral ports, where servers answer (never a scan)
        scan_max_bytes: int = 1000,  # a probe is small; bigger flows are not counted as probes
        egress_bytes: int = 1 << 30,  # per source address (on one interface), to public addresses, per batch
        sweep_min_addresses: int = 64,  # distinct internal addresses one internal source sent bare TCP probes to
        forbidden: Forbidden | None = None,  # destinations ours must never reach
    ) -> None:
        self.enabled = enabled
        self.mining_ports = mining_ports
        self.admin_ports = admin_ports
        self.scan_min_ports = scan_min_ports
        self.scan_max_port = scan_max_port
        self.scan_max_bytes = scan_max_bytes
        self.egress_bytes = egress_bytes
        self.sweep_min_addresses = sweep_min_addresses
        self.forbidden = forbidden


class Flow(Value):
    """One record, decoded (a slotted class: made for each record a detector reads, it costs a fifth
    of a frozen dataclass)."""

    __slots__ = ("action", "dst", "dst_port", "end", "interface", "packets", "protocol", "size", "src", "src_port",
                 "start")  # fmt: skip

    def __init__(
        self,
        interface: str,
        src: str,
        dst: str,
        src_port: str,
        dst_port: str,
        size: int,  # bytes
        action: str,
        protocol: str = "-",
        packets: int = 0,
        start: int = 0,  # the capture window's start and end (Unix seconds); 0 when the format lacks them
        end: int = 0,
    ) -> None:
        self.interface = interface
        self.src = src
        self.dst = dst
        self.src_port = src_port
        self.dst_port = dst_port
        self.size = size
        self.action = action
        self.protocol = protocol
        self.packets = packets
        self.start = start
        self.end = end

    def __hash__(self) -> int:  # a record, never changed once decoded
        return hash(self._state())

    @classmethod
    def parse(cls, fields: list[bytes], at: int, layout: Layout) -> Flow:
        """The record starting at `fields[at]`, every field the alerts show decoded: in one decode
        (fields hold no whitespace, so a space joins them and splits them apart again)."""
        interface, src, dst, sport, dport, size, action, protocol, packets, start, end = (
            b" ".join([b"-" if index is None else fields[at + index] for index in _positions(layout)])
            .decode("ascii", "replace")
            .split(" ")
        )
        return cls(interface, src, dst, sport, dport, _number(size), action, protocol, _number(packets),
                   _number(start), _number(end))  # fmt: skip

    @property
    def carried_data(self) -> bool:
        """The sender's TCP stack sent payload on an accepted flow, so the handshake completed: the
        peer received our SYN-ACK (or sent its own), which a forged source address cannot do.
        Bytes above BARE_TCP_PACKET per packet on average mean at least one packet carried data.
        Ports and flags prove nothing here: whoever forges a packet chooses both."""
        return (
            self.action == "ACCEPT"
            and self.protocol == TCP
            and self.packets > 0
            and self.size > self.packets * BARE_TCP_PACKET
        )

    def __str__(self) -> str:
        where = f"{self.src}:{self.src_port} -> {self.dst}:{self.dst_port}"
        return f"{where} {self.size} B {self.action} ({self.interface})"


class Finding(Value):
    """Everything one detector saw about one address in one batch."""

    __slots__ = ("address", "bytes", "capped", "detector", "established", "first", "interfaces", "last", "ports",
                 "records", "remote", "remotes", "top")  # fmt: skip

    def __init__(self, detector: str, address: str, remote: bool, records: int = 0) -> None:
        self.detector = detector
        self.address = address  # ours (a pod or node address) or, for an internet scanner, theirs
        self.remote = remote  # `address` is outside the VPC
        self.records = records
        self.bytes = 0
        self.remotes: set[str] = set()
        self.interfaces: set[str] = set()
        self.ports: set[int] = set()
        self.top: list[tuple[int, int, Flow]] = []  # heap of the biggest flows
        self.established: set[str] = set()  # remotes ours sent data to: safe to block
        self.capped = False  # counting stopped at a limit: `records` is a lower bound
        self.first = 0  # the earliest start and latest end of its flows (Unix seconds), 0 when unknown
        self.last = 0

    def add(self, flow: Flow, remote: str | None, port: int | None = None) -> None:
        self.records += 1
        self.bytes += flow.size
        if remote and len(self.remotes) < _KEEP:
            self.remotes.add(remote)
        if len(self.interfaces) < _KEEP:
            self.interfaces.add(flow.interface)
        if port is not None:
            self.ports.add(port)
        if flow.start > 0:
            self.first = min(self.first or flow.start, flow.start)
            self.last = max(self.last, flow.end)
        entry = (flow.size, self.records, flow)
        if len(self.top) < TOP_FLOWS:
            heapq.heappush(self.top, entry)
        elif entry > self.top[0]:
            heapq.heapreplace(self.top, entry)

    @property
    def flows(self) -> list[Flow]:
        return [flow for _, _, flow in sorted(self.top, reverse=True)]


_FLOW_FIELDS = ("interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "bytes", "action", "protocol", "packets",
                "start", "end")  # fmt: skip
# The last layout asked about, by identity (one tuple, replaced whole): a layout is one object for
# a whole delivery, and hashing one (a tuple of field names) for every flagged record would cost
# more than the answer.
_LAST: tuple[Layout | None, tuple[int | None, ...], tuple[int, int, int] | None] = (None, (), None)


def _positions(layout: Layout) -> tuple[int | None, ...]:
    """Where a `Flow`'s fields are in a record of this layout (None: not in it)."""
    last = _LAST
    if last[0] is not layout:
        last = _remember(layout)
    return last[1]


def _places(layout: Layout) -> tuple[int, int, int]:
    """The interface's, the source's and the destination's positions (the scanner pads a layout without them)."""
    last = _LAST
    if last[0] is not layout:
        last = _remember(layout)
    if last[2] is None:
        raise ValueError("the layout has no interface-id, srcaddr or dstaddr")
    return last[2]


def _remember(layout: Layout) -> tuple[Layout | None, tuple[int | None, ...], tuple[int, int, int] | None]:
    global _LAST  # noqa: PLW0603 - one tuple replaced whole, never mutated
    positions = tuple(layout.index(name) for name in _FLOW_FIELDS)
    interface, src, dst = positions[:3]
    _LAST = (layout, positions, None if interface is None or src is None or dst is None else (interface, src, dst))
    return _LAST


def sweep_limit(settings: DetectorSettings) -> int:
    """Addresses counted per sweeping source: enough to say how wide, bounded in memory (the count
    stops there, and the alert says "at least")."""
    return max(4 * settings.sweep_min_addresses, _KEEP)


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace")


def _number(value: str | bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


_OWNERS = iter(range(1, 1 << 63))  # a number per scanner, for the compiled pass's links (never 0, never reused)


class Scanner:
    """Feed it blocks of records (bytes) with their layout; read `findings()` at the end."""

    def __init__(
        self, classifier: Classifier, settings: DetectorSettings | None = None, *, compiled: bool = True
    ) -> None:
        self.settings = settings or DetectorSettings()
        self.classifier = classifier
        self.records = 0
        self.skipped = 0  # NODATA / SKIPDATA records
        self.malformed = 0
        self.untracked = 0  # probes of sources beyond MAX_PROBING_SOURCES, not counted for port scans
        self._marked = 0  # records when sources were last checked against the port-scan threshold
        # The interface of each probing source's first probe, in the order of `_ports` (a source's
        # set is made once and never removed): a list, not a dict beside it, is a tenth of the memory.
        self._interfaces: list[bytes] = []
        self._block_first: dict[bytes, int] = {}
        self._starts: dict[int, list[int]] = {}
        self._found: dict[tuple[str, bytes], Finding] = {}
        # A value of these three, once made, is never replaced or removed: the compiled pass links an
        # address's to its entry in the classifier's known table (through `_links`, this scanner's,
        # numbered `_owner`) and looks it up once a table, not once a block.
        self._ports: dict[bytes, set[bytes]] = {}
        self._egress: dict[bytes, list[Any]] = {}  # address -> [the interface counted, bytes sent]
        self._sweeps: dict[bytes, set[bytes]] = {}  # internal source -> internal addresses it probed
        self._links: list[object] = []
        self._owner = next(_OWNERS)
        self._egress_flows: dict[bytes, Finding] = {}
        self._established: dict[bytes, set[str]] = {}  # ours -> remotes ours sent data to (flagged records)
        on = self.settings.enabled
        self._mining = {str(p).encode() for p in self.settings.mining_ports} if "mining-pool" in on else set()
        self._admin = {str(p).encode() for p in self.settings.admin_ports} if "admin-from-internet" in on else set()
        self._threats = "threat-list" in on
        self._scans = "port-scan" in on
        self._egress_on = "egress-volume" in on
        self._sweeping = "address-sweep" in on and self._scans
        forbidden = self.settings.forbidden
        self._forbidden = forbidden if "forbidden-destination" in on and forbidden and forbidden.rules else None
        # What the compiled first pass needs to judge a record as `_rows` would: a plain public
        # address's flags, the mining and admin ports, and what makes a record a probe; the
        # classifier, for an address seen first; and the egress counts and the probed ports and
        # swept addresses it adds to, as `_rows` adds (None: they stay Python's alone).
        probe_digits = len(str(self.settings.scan_max_bytes)) if self._scans else 0
        limit = self.settings.egress_bytes
        counted = self._egress if self._egress_on and limit < _LONGEST else None
        self._judge = (PUBLIC, tuple(self._mining), tuple(self._admin), probe_digits, self.settings.scan_max_bytes,
                       str(self.settings.scan_max_port).encode(), counted, min(limit, _LONGEST),
                       self.classifier.classify, self._ports if self._scans else None,
                       self._sweeps if self._sweeping else None, sweep_limit(self.settings),
                       BARE_TCP_PACKET * PROBE_PACKETS, PROBE_PACKETS)  # fmt: skip
        self._plans: dict[Layout, tuple[tuple[int, ...], tuple[int, ...], Layout]] = {}
        # What `_rows` reads of the settings and of each layout, worked out once, not once a block.
        self._constants = (probe_digits, self.settings.scan_max_bytes, len(str(self.settings.scan_max_port)),
                           str(self.settings.scan_max_port).encode(), self.settings.egress_bytes,
                           sweep_limit(self.settings), {str(n).encode() for n in range(1, PROBE_PACKETS + 1)},
                           BARE_TCP_PACKET * PROBE_PACKETS)  # fmt: skip
        self._columns: dict[Layout, tuple[int, int, int, int | None, int | None]] = {}
        self._keep = _keep if compiled and _keep is not None and probe_digits <= MAX_PROBE_DIGITS else None

    @property
    def compiled(self) -> bool:
        """The compiled first pass is in use (built, and not turned off)."""
        return self._keep is not None

    # -- the hot path ---------------------------------------------------------------------------

    def scan(self, block: bytes, layout: Layout) -> None:
        """One block of whole records (newline-separated) in one layout."""
        # Neither the compiled pass nor the loop makes reference cycles; the collector would only
        # walk the block's short-lived fields and tuples.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._scan(block, layout)
        finally:
            if collecting:
                gc.enable()
        if self.records - self._marked >= MARK_EVERY:
            self.end_block()

    def _scan(self, block: bytes, layout: Layout) -> None:
        width = len(layout.fields)
        kept = self._prefiltered(block, layout)
        if kept is not None:
            records, fields, layout = kept
            width = len(layout.fields)
            lines = len(fields) // width
            self.records += records
        else:
            fields = block.split()
            lines = block.count(b"\n") + 1 if block else 0
            if layout.missing or len(fields) != lines * width or not _aligned(fields, layout):
                fields, lines, layout = self._regular(block, layout)
                width = len(layout.fields)
            self.records += lines
        # Columns by slicing the block's fields: one split per block, not one per record, is what
        # makes this fast. Only what every record needs is a column; the rest is read at `at`.
        src, dst, size = (fields[layout.position(name) :: width] for name in ("srcaddr", "dstaddr", "bytes"))
        rows = zip(src, dst, size, self._offsets(lines, width), strict=True)
        self._block_first = {}
        # A number that is not one stops the loop with ValueError: that record is counted as
        # malformed and the block goes on from the next one.
        while True:
            try:
                self._rows(rows, fields, layout)
                break
            except ValueError:
                self.malformed += 1
        self._note_first(self._block_first, fields, layout)

    def _prefiltered(self, block: bytes, layout: Layout) -> tuple[int, list[bytes], Layout] | None:
        """The compiled first pass (`_prefilter.c`): the block's record count, and the fields this
        scanner reads of the records it could act on, in a layout of those fields alone; None where
        the pass does not apply (not built, a layout the scanner pads, a block that is not regular).
        It counts probes (a source's first too, making its set, while the block cannot bring the
        scanner to MAX_PROBING_SOURCES) and hands on every other probe, so the counts of probing
        sources (and `untracked`) are the same either way."""
        if self._keep is None or layout.missing:
            return None
        plan = self._plans.get(layout)
        if plan is None:
            optional = (layout.index(name) for name in ("log-status", "interface-id", "protocol", "packets"))
            decisive = (*(layout.position(name) for name in _DECISIVE), *(-1 if at is None else at for at in optional))
            read = tuple(name for name in _READ if name in layout.fields)
            plan = self._plans[layout] = (decisive, tuple(layout.position(name) for name in read), Layout(read))
        decisive, wanted, reduced = plan
        classifier = self.classifier
        kept = self._keep(block, len(layout.fields), decisive, wanted, classifier.memo, *self._judge, classifier.known,
                          classifier.known_keys, classifier.tables(), self._links, self._owner, self._interfaces,
                          MAX_PROBING_SOURCES)  # fmt: skip
        return None if kept is None else (kept[0], kept[1], reduced)

    def _offsets(self, lines: int, width: int) -> list[int]:
        """Where each record starts in the block's fields: kept between blocks, so no int is made per record."""
        known = self._starts.get(width)
        if known is None or len(known) < lines:
            known = self._starts[width] = list(range(0, max(lines, 8192) * width, width))
        return known[:lines]

    def _regular(self, block: bytes, layout: Layout) -> tuple[list[bytes], int, Layout]:
        """The slow path for a block with blank, short or annotated lines, or a layout without
        some field the detectors read: each record cut to the layout's width, missing fields
        appended as "-"; lines with fewer fields are counted as malformed."""
        width = len(layout.fields)
        padding = [layout.fill(name) for name in layout.missing]
        fields: list[bytes] = []
        lines = 0
        for line in block.split(b"\n"):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < width:
                self.malformed += 1
                continue
            fields.extend(parts[:width])
            fields.extend(padding)
            lines += 1
        return fields, lines, layout.padded

    def _rows(  # noqa: C901, PLR0915 - the hot loop stays flat: a call per record costs more than a branch
        self, rows: Iterator[tuple[bytes, bytes, bytes, int]], fields: list[bytes], layout: Layout
    ) -> None:
        memo = self.classifier.memo
        classify = self.classifier.classify
        flagged = self._flagged
        ports = self._ports
        probe_digits, max_bytes, port_digits, max_port, egress_limit, sweep_cap, probe_packets, probe_bytes = (
            self._constants
        )
        mining, admin = self._mining, self._admin
        egress = self._egress if self._egress_on else None
        sweeps = self._sweeps if self._sweeping else None
        columns = self._columns.get(layout)
        if columns is None:
            place, has = layout.position, layout.index
            columns = (place("srcport"), place("dstport"), place("interface-id"), has("protocol"), has("packets"))
            self._columns[layout] = columns
        sp, dp, ip, pr, pk = columns
        if pr is None or pk is None:
            sweeps, pr, pk = None, 0, 0  # a layout without them cannot tell a bare probe from a request
        for src, dst, nbytes, at in rows:
            try:
                fs = memo[src]
                fd = memo[dst]
            except KeyError:
                fs = memo[src] if src in memo else classify(src)
                fd = memo[dst] if dst in memo else classify(dst)
            if fs or fd:
                # The two common cases inline (ours to a plain public address, and back); the rest in `_flagged`.
                if fd == PUBLIC and not fs:
                    # Mining-pool connections, and our answers from SSH/RDP (is the session established?).
                    if fields[at + dp] in mining or fields[at + sp] in admin:
                        flagged(at, fields, layout, fs, fd)
                    elif egress is not None:
                        # Counted on the first interface that logged the address: through a NAT gateway
                        # the same bytes are logged twice (ours, and the gateway's), and must count once.
                        sent = egress.get(src)
                        if sent is None:
                            egress[src] = [fields[at + ip], int(nbytes) if nbytes != b"-" else 0]
                        elif sent[0] == fields[at + ip]:
                            sent[1] += int(nbytes) if nbytes != b"-" else 0
                            if sent[1] >= egress_limit:
                                self._egress_flow(src, Flow.parse(fields, at, layout), sent[1])
                elif fs == PUBLIC and not fd:
                    if fields[at + sp] in mining or fields[at + dp] in admin:
                        flagged(at, fields, layout, fs, fd)
                elif (fs | fd) & NO_ADDRESS:
                    self.skipped += 1
                    continue
                else:
                    flagged(at, fields, layout, fs, fd)
            # A probe: small, to a port below the ephemeral range, from a higher port (not a reply).
            size = len(nbytes)
            if size <= probe_digits and (size < probe_digits or int(nbytes) <= max_bytes):
                dport = fields[at + dp]
                sport = fields[at + sp]
                size = len(dport)
                # A port that is no number (damage, or a forged line) is never counted: the alert lists them as numbers.
                if (
                    (size < port_digits or (size == port_digits and dport <= max_port))
                    and (len(sport) > size or (len(sport) == size and sport > dport))
                    and dport.isdigit()
                ):
                    seen = ports.get(src)
                    if seen is None:
                        seen = self._new_prober(src, at)
                    if seen is not None:
                        seen.add(dport)
                        # East-west: ours to ours, a bare TCP probe (a scraper's or health check's
                        # requests take more packets and never count).
                        if (
                            sweeps is not None
                            and not (fs or fd)
                            and fields[at + pr] == b"6"
                            and fields[at + pk] in probe_packets
                            and int(nbytes) <= probe_bytes
                        ):
                            targets = sweeps.get(src)
                            if targets is None:
                                targets = sweeps[src] = set()
                            if len(targets) < sweep_cap:
                                targets.add(dst)

    def _new_prober(self, src: bytes, at: int) -> set[bytes] | None:
        """A source's first probe: start counting its ports, unless too many sources are counted already."""
        if len(self._ports) >= MAX_PROBING_SOURCES:  # a flood of spoofed sources: memory stays bounded
            self.untracked += 1
            return None
        self._block_first[src] = at  # where its records are until it is marked as a scanner
        seen = self._ports[src] = set()
        return seen

    def _note_first(self, first: dict[bytes, int], fields: list[bytes], layout: Layout) -> None:
        where = layout.position("interface-id")
        self._interfaces.extend(fields[at + where] for at in first.values())

    def _flagged(self, at: int, fields: list[bytes], layout: Layout, fs: int, fd: int) -> None:
        """A record with a public, threat-listed or scanning address that the inline cases did not
        settle: a flow (every field decoded) is built only when a detector fires."""
        flow = Flow.parse(fields, at, layout)
        interface, source, destination = _places(layout)
        src, dst, logged = fields[at + source], fields[at + destination], fields[at + interface]
        if fd & (PUBLIC | THREAT) and not fs & PUBLIC and flow.carried_data:
            answered = self._established.setdefault(src, set())
            if len(answered) < _KEEP * 4:
                answered.add(flow.dst)
        if self._threats and (fs | fd) & THREAT:
            ours, theirs = (dst, flow.src) if fs & THREAT else (src, flow.dst)
            self._finding("threat-list", ours, bool(fs & THREAT and fd & THREAT)).add(flow, theirs)
        if fd & PUBLIC and not fs & PUBLIC:
            if flow.dst_port.encode() in self._mining and _number(flow.src_port) >= CLIENT_PORTS:
                self._finding("mining-pool", src, False).add(flow, flow.dst, _number(flow.dst_port))
            if self._egress_on:
                sent = self._egress.setdefault(src, [logged, 0])
                if sent[0] == logged:
                    sent[1] += flow.size
                    if sent[1] >= self.settings.egress_bytes:
                        self._egress_flow(src, flow, sent[1])
        elif fs & PUBLIC and not fd & PUBLIC:
            to_our_client = flow.action == "ACCEPT" and _number(flow.dst_port) >= CLIENT_PORTS
            if to_our_client and flow.src_port.encode() in self._mining:
                self._finding("mining-pool", dst, False).add(flow, flow.src, _number(flow.src_port))
            if flow.dst_port.encode() in self._admin and flow.action == "ACCEPT":
                self._finding("admin-from-internet", dst, False).add(flow, flow.src, _number(flow.dst_port))
        if fs & SCANNER:
            self._finding("port-scan", src, bool(fs & PUBLIC)).add(flow, flow.dst, _number(flow.dst_port))
        if self._forbidden and fd & FORBIDDEN and not fs & PUBLIC and flow.action == "ACCEPT":
            port = _number(flow.dst_port)
            if self._forbidden.forbids(flow.dst, port):
                self._finding("forbidden-destination", src, False).add(flow, flow.dst, port)

    def _egress_flow(self, src: bytes, flow: Flow, total: int) -> None:
        finding = self._egress_flows.get(src)
        if finding is None:
            finding = self._egress_flows[src] = Finding("egress-volume", flow.src, False)
            finding.bytes = total - flow.size  # what went out before the threshold was crossed
        finding.add(flow, flow.dst)

    def _finding(self, detector: str, address: bytes, remote: bool) -> Finding:
        key = (detector, address)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = Finding(detector, _text(address), remote)
        return found

    def _first_interfaces(self, wanted: Callable[[bytes, set[bytes]], bool] | None = None) -> dict[bytes, bytes]:
        """The first interface of each probing source (the `wanted` ones), by source."""
        pairs = zip(self._ports.items(), self._interfaces, strict=True)
        return {src: first for (src, seen), first in pairs if wanted is None or wanted(src, seen)}

    def end_block(self) -> None:
        """Mark sources that crossed the port-scan threshold, so later records of theirs are kept."""
        if not self._scans:
            return
        self._marked = self.records
        memo = self.classifier.memo
        for src in _at_least(self._ports, self.settings.scan_min_ports):
            flags = memo.get(src)
            if flags is None:
                flags = self.classifier.classify(src)
            self.classifier.mark(src, flags | SCANNER)

    def findings(self) -> list[Finding]:
        self.end_block()
        found = [f for f in self._found.values() if f.detector != "port-scan"]
        found.extend(self._egress_flows.values())
        for finding in (*self._found.values(), *self._egress_flows.values()):
            if not finding.remote:
                sent = self._established.get(finding.address.encode(), set())
                finding.established = finding.remotes & sent
        least = self.settings.scan_min_ports
        sweeping = {src for src, targets in self._sweeps.items() if len(targets) >= self.settings.sweep_min_addresses}
        interface = self._first_interfaces(lambda src, seen: len(seen) >= least or src in sweeping)
        for src, targets in self._sweeps.items():
            if len(targets) >= self.settings.sweep_min_addresses:
                sweep = Finding("address-sweep", _text(src), False, records=len(targets))
                sweep.capped = len(targets) >= sweep_limit(self.settings)
                sweep.remotes = {_text(t) for t in sorted(targets)[:_KEEP]}
                sweep.ports = {int(p) for p in self._ports.get(src, ())}
                if src in interface:
                    sweep.interfaces.add(_text(interface[src]))
                found.append(sweep)
        for src, seen in self._ports.items():
            if len(seen) < self.settings.scan_min_ports:
                continue
            public = bool(self.classifier.memo.get(src, 0) & PUBLIC)
            scan = self._found.get(("port-scan", src)) or Finding("port-scan", _text(src), public)
            scan.ports = {int(p) for p in seen}
            if src in interface:
                scan.interfaces.add(_text(interface[src]))
            found.append(scan)
        return sorted(found, key=lambda f: (DETECTORS.index(f.detector), f.address))


def _aligned(fields: list[bytes], layout: Layout) -> bool:
    """Same count of fields is not proof: the log-status column must hold only statuses."""
    at = layout.index("log-status")
    return at is None or set(fields[at :: len(layout.fields)]) <= _STATUSES


_STATUSES = {b"OK", b"NODATA", b"SKIPDATA"}
