"""Address classification for the scanner: public or not, on the threat list or not, memoised.

A file of a million records holds some ten thousand distinct addresses, so each address is
classified once (`inet_pton`, then `bisect` over merged threat ranges) and looked up in a dict
afterwards. Never `ipaddress` objects or a linear scan of CIDRs on this path: they are
hundreds of times slower.
"""

from __future__ import annotations

import os

# The socket module's C half: the module itself imports selectors, enum and more, which a scan never uses.
from _socket import AF_INET, AF_INET6, inet_pton
from bisect import bisect_right

from chalicelib.errors import EventError
from chalicelib.flowlogs.values import Value

# The scanner's process imports neither `typing` nor `collections.abc` (with `re`, `enum` and
# `contextlib`, some 6 ms of every scan): names for annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_ipv4_ranges: Callable[[bytes], tuple[list[int], list[int], list[bytes]] | None] | None
try:  # the compiled reader of a plain list (deploy/native.py builds it); without it, the same ranges
    from chalicelib.flowlogs._prefilter import ipv4_ranges as _compiled_reader

    _ipv4_ranges = _compiled_reader
except ImportError:  # pragma: no cover - a machine without a C compiler
    _ipv4_ranges = None

PUBLIC = 1
THREAT = 2
NO_ADDRESS = 4  # "-": NODATA / SKIPDATA records
FORBIDDEN = 16  # in a range ours must never reach (8 is the scanner's mark, set by the scanner)


def _pack_v4(address: str) -> bytes:
    return inet_pton(AF_INET, address)  # strict dotted quads only, like _parse


MEMO_LIMIT = 1_000_000  # a flood of spoofed sources cannot exhaust memory: beyond it, classified each time
# The compiled pass's table of addresses it has read from the memo (64 bytes an entry, and a header):
# 1 MB holds 8,192 addresses, what a VPC's million records hold; beyond, the memo is read as before.
KNOWN_BYTES = ((1 << 14) + 1) * 64

# Not public: RFC 1918, shared (CGNAT), loopback, link-local, multicast, reserved; IPv6 ULA,
# link-local, loopback, multicast, documentation prefixes stay public (they are never routed).
_PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
               "0.0.0.0/8", "224.0.0.0/3")  # fmt: skip
_PRIVATE_V6 = ("fc00::/7", "fe80::/10", "::1/128", "::/128", "ff00::/8", "::ffff:0:0/96")


def _parse(address: str) -> tuple[int, int] | None:
    """(family bits, integer) or None when it is not an address."""
    try:
        if ":" in address:
            return 128, int.from_bytes(inet_pton(AF_INET6, address), "big")
        return 32, int.from_bytes(inet_pton(AF_INET, address), "big")
    except OSError:
        return None


def _network(text: str) -> tuple[int, int, int]:
    """(bits, first, last) of an address or CIDR; a host part is masked off."""
    address, _, prefix = text.strip().partition("/")
    parsed = _parse(address)
    if parsed is None:
        raise ValueError(f"not an IP address or CIDR: {text!r}")
    bits, value = parsed
    length = int(prefix) if prefix else bits
    if not 0 <= length <= bits:
        raise ValueError(f"bad prefix length in {text!r}")
    span = (1 << (bits - length)) - 1
    first = value & ~span
    return bits, first, first | span


class Ranges:
    """Disjoint, merged ranges per family; membership by one bisect."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._merge(_network(text) for text in networks)

    @classmethod
    def of_spans(cls, spans: Iterable[tuple[int, int, int]]) -> Ranges:
        """From (bits, first, last) triples already parsed."""
        ranges = cls(())
        ranges._merge(spans)
        return ranges

    def _merge(self, triples: Iterable[tuple[int, int, int]], v4: list[int] | None = None) -> None:
        # IPv4 spans sort as single integers (first, then last, in one 64-bit key): several times
        # faster than tuples for a threat list of tens of thousands of entries. `v4`: keys made already.
        v4 = [] if v4 is None else v4
        v6: list[tuple[int, int]] = []
        for bits, first, last in triples:
            if bits == 32:  # noqa: PLR2004
                v4.append(first << 32 | last)
            else:
                v6.append((first, last))
        v4.sort()
        v6.sort()
        starts: list[int] = []
        ends: list[int] = []
        reach = -2  # the end of the span being grown
        for key in v4:  # one pass, no tuple per entry: a list of 50,000 addresses merges in a few ms
            first, last = key >> 32, key & 0xFFFFFFFF
            if first <= reach + 1:
                if last > reach:
                    reach = ends[-1] = last
            else:
                starts.append(first)
                ends.append(last)
                reach = last
        self._starts: dict[int, list[int]] = {32: starts}
        self._ends: dict[int, list[int]] = {32: ends}
        starts, ends = [], []
        for first, last in v6:
            if ends and first <= ends[-1] + 1:
                ends[-1] = max(ends[-1], last)
            else:
                starts.append(first)
                ends.append(last)
        self._starts[128], self._ends[128] = starts, ends
        self.size = len(self._starts[32]) + len(starts)

    def contains(self, bits: int, value: int) -> bool:
        starts = self._starts[bits]
        at = bisect_right(starts, value) - 1
        return at >= 0 and value <= self._ends[bits][at]


_PRIVATE = Ranges(_PRIVATE_V4 + _PRIVATE_V6)


class Forbidden(Value):
    """Destinations ours must never reach: the ranges (for the classifier), and per range the
    destination ports it forbids (none: every port)."""

    __slots__ = ("ranges", "rules")

    def __init__(self, ranges: Ranges, rules: tuple[tuple[Ranges, frozenset[int] | None], ...]) -> None:
        self.ranges = ranges
        self.rules = rules

    def forbids(self, address: str, port: int) -> bool:
        parsed = _parse(address)
        if parsed is None:
            return False
        return any(r.contains(*parsed) and (ports is None or port in ports) for r, ports in self.rules)


def parse_forbidden(entries: Iterable[str], where: str) -> Forbidden:
    """`CIDR` or `CIDR:port` or `CIDR:first-last` (IPv6 as `[CIDR]:port`); a bad entry is named."""
    rules = []
    spans = []
    for entry in entries:
        text = entry.strip()
        network, ports = text, None
        if text.startswith("["):
            network, _, rest = text[1:].partition("]")
            ports = rest.removeprefix(":") or None
        elif text.count(":") == 1:
            network, ports = text.split(":")
        try:
            span = _network(network)
            chosen: frozenset[int] | None = None
            if ports:
                first, _, last = ports.partition("-")
                low, high = int(first), int(last or first)
                if not 0 < low <= high <= 65535:  # noqa: PLR2004
                    raise ValueError(f"ports {ports!r} are not within 1-65535")
                chosen = frozenset(range(low, high + 1))
        except ValueError as exc:
            raise EventError(f"{where}: {text!r}: {exc}") from None
        spans.append(span)
        rules.append((Ranges.of_spans([span]), chosen))
    return Forbidden(Ranges.of_spans(spans), tuple(rules))


def parse_networks(text: str, where: str) -> Ranges:
    """One address or CIDR per line (a threat list, internal ranges); `#` comments; a bad line is named."""
    fast = _plain_list(text)
    return fast if fast is not None else _parse_lines(text, where)


def _plain_list(text: str) -> Ranges | None:
    """A list of one entry per line, no comments (what threat feeds publish), mostly IPv4 addresses:
    the addresses are converted together in C, a few milliseconds for fifty thousand. None when
    the text is anything else, or an entry is bad: the line-by-line parse then names the line."""
    if "#" in text:
        return None
    if _ipv4_ranges is not None and text.isascii():
        read = _ipv4_ranges(text.encode("ascii"))
        if read is not None:
            return _of_read(*read)
    entries = text.split()
    # Two entries on one line are an error the line-by-line parse reports. In ASCII text only a
    # space, a tab or \x1f separates entries without ending a line, so without them no line can
    # hold two (the common case: counting the lines costs a feed of 50,000 entries 25 ms).
    spaced = not text.isascii() or " " in text or "\t" in text or "\x1f" in text
    if spaced and len(entries) != sum(1 for line in text.splitlines() if line and not line.isspace()):
        return None
    hosts = [e for e in entries if "/" not in e and ":" not in e]
    try:
        import struct  # here: the compiled reader is the common path

        packed = b"".join(map(_pack_v4, hosts))
        values = struct.unpack(f">{len(hosts)}I", packed)
        others = [_network(e) for e in entries if "/" in e or ":" in e]
    except (OSError, ValueError):
        return None
    ranges = Ranges(())
    ranges._merge(others, [v << 32 | v for v in values])
    return ranges


def _of_read(starts: list[int], ends: list[int], others: list[bytes]) -> Ranges | None:
    """The ranges of what the compiled reader merged and the entries it left (IPv6, or whatever
    `_network` makes of them); None when one of those is bad."""
    try:
        spans = [_network(entry.decode("ascii")) for entry in others]
    except ValueError:
        return None
    ranges = Ranges(())
    if any(bits == 32 for bits, _, _ in spans):  # noqa: PLR2004 - IPv4 the compiled reader did not read: merge all again
        ranges._merge(spans, [first << 32 | last for first, last in zip(starts, ends, strict=True)])
        return ranges
    ranges._merge(spans)
    ranges._starts[32], ranges._ends[32] = starts, ends
    ranges.size = len(starts) + len(ranges._starts[128])
    return ranges


def _parse_lines(text: str, where: str) -> Ranges:
    spans = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            spans.append(_network(line))
        except ValueError as exc:
            raise EventError(f"{where}:{number}: {exc}") from None
    return Ranges.of_spans(spans)


def _known_table() -> bytearray:
    """An empty table for the compiled pass, with its hash's secret: random, so that addresses in
    packets anyone can send cannot be chosen to collide in it."""
    table = bytearray(KNOWN_BYTES)
    table[8:16] = os.urandom(8)
    return table


class Classifier:
    """Flags per address (bytes as they appear in the record), filled on first sight. `internal`: also
    ours (an IPv6 VPC's /56, say); `forbidden`: destinations ours must never reach."""

    def __init__(self, threats: Ranges, internal: Ranges | None = None, forbidden: Ranges | None = None) -> None:
        self.threats = threats
        self.internal = Ranges(()) if internal is None else internal
        self.forbidden = Ranges(()) if forbidden is None else forbidden
        self.memo: dict[bytes, int] = {b"-": NO_ADDRESS}
        # The compiled pass's copy of what it read from the memo, and the addresses as bytes objects
        # (its own, made once): entries are only ever added to the memo, except by `mark`, which
        # starts both again.
        self.known = _known_table()
        self.known_keys: list[bytes] = []

    def tables(self) -> tuple[object, ...]:
        """What the compiled pass needs to classify a dotted quad as `classify` does: the IPv4 ranges
        (private, internal, threat-listed, forbidden or None), and the memo's limit."""
        forbidden = (self.forbidden._starts[32], self.forbidden._ends[32]) if self.forbidden.size else (None, None)
        return (_PRIVATE._starts[32], _PRIVATE._ends[32], self.internal._starts[32], self.internal._ends[32],
                self.threats._starts[32], self.threats._ends[32], *forbidden, MEMO_LIMIT)  # fmt: skip

    def mark(self, address: bytes, flags: int) -> None:
        """Change an address's flags (the scanner marks a port scanner)."""
        if self.memo.get(address) != flags:
            self.memo[address] = flags
            self.known = _known_table()
            self.known_keys = []

    def classify(self, address: bytes) -> int:
        parsed = _parse(address.decode("ascii", "replace"))
        if parsed is None:
            flags = NO_ADDRESS
        else:
            bits, value = parsed
            flags = 0 if _PRIVATE.contains(bits, value) or self.internal.contains(bits, value) else PUBLIC
            if self.threats.contains(bits, value):
                flags |= THREAT
            if self.forbidden.size and self.forbidden.contains(bits, value):
                flags |= FORBIDDEN
        if len(self.memo) < MEMO_LIMIT:
            self.memo[address] = flags
        return flags
