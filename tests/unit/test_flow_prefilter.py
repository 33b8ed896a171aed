"""The flow-log scanner's compiled first pass: it drops only records the scanner would do nothing
with, so findings and counts are those of the pure-Python scanner, on real traffic and on hostile
blocks alike."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib.flowlogs import detect
from chalicelib.flowlogs.addresses import PUBLIC, Classifier, Ranges
from chalicelib.flowlogs.detect import Scanner
from chalicelib.flowlogs.fields import DEFAULT, parse_format
from devstack import flowgen
from tests.fuzzing import flow_blocks

THREATS = Ranges(["45.10.0.0/16", "91.200.1.7"])
# srcaddr, dstaddr, srcport, dstport, bytes, log-status, interface-id, protocol, packets: the default format
V2 = (3, 4, 5, 6, 9, 13, 2, 7, 8)
ALL = tuple(range(14))
# No classifier, no probe counts (the tests that want them say so); a sweep cap of 256, a bare probe 300 B, 3 packets
REST: tuple[Any, ...] = (None, None, None, 256, 300, 3, None, [], None)
JUDGE = (PUBLIC, (b"3333", b"4444"), (b"22", b"3389"), 4, 1000, b"32767", None, 1 << 30, *REST)


def keep(block: bytes, memo: dict[bytes, int], wanted: tuple[int, ...] = ALL, judge: tuple[Any, ...] = JUDGE) -> Any:
    assert detect._keep is not None
    return detect._keep(block, 14, V2, wanted, memo, *judge)


def record(src: str, dst: str, sport: int | str, dport: int | str, nbytes: int | str, status: str = "OK") -> bytes:
    return f"2 123456789012 eni-1 {src} {dst} {sport} {dport} 6 1 {nbytes} 1 2 ACCEPT {status}".encode()


OURS, PEER, WEB = b"10.0.1.5", b"10.0.2.9", b"34.1.2.3"
MEMO = {OURS: 0, PEER: 0, WEB: PUBLIC, b"45.10.0.1": PUBLIC | 2}


def test_the_compiled_pass_is_built_and_used() -> None:
    """`make test` builds it (deploy/native.py): a scanner uses it unless told not to."""
    assert detect._keep is not None, "not built: `make native` (needs a C compiler and the Python headers)"
    assert Scanner(Classifier(THREATS))._keep is not None
    assert Scanner(Classifier(THREATS), compiled=False)._keep is None


def test_the_built_object_needs_nothing_newer_than_the_lambda_runtimes_glibc() -> None:
    """Amazon Linux 2 (glibc 2.26) runs the python3.11 runtime: the object asks for symbol versions
    up to 2.17 at most, whichever newer glibc built it."""
    built = Path(detect.__file__).with_name("_prefilter.abi3.so").read_bytes()
    versions = {(int(a), int(b)) for a, b in re.findall(rb"GLIBC_(\d+)\.(\d+)", built)}
    assert versions
    assert max(versions) <= (2, 17)


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (record("10.0.1.5", "10.0.2.9", 443, 51000, 5000), False),  # ours to ours, a server's answer
        (record("10.0.1.5", "10.0.2.9", 51000, 443, 5000), False),  # ours to ours, big: not a probe
        (record("10.0.1.5", "10.0.2.9", 51000, 443, 500), True),  # ours to ours, small: a probe candidate
        (record("10.0.1.5", "10.0.2.9", 51000, 40000, 500), False),  # to an ephemeral port: not a probe
        (record("10.0.1.5", "10.0.2.9", 443, 8080, 500), False),  # from a lower port: a reply
        (record("10.0.1.5", "10.0.2.9", 51000, 443, "1_000"), False),  # longer than a probe's: never read
        (record("10.0.1.5", "10.0.2.9", 51000, 443, "1_00"), True),  # int() reads it as 100: Python decides
        (record("10.0.1.5", "10.0.2.9", 51000, 443, "1_0"), True),  # shorter: a probe by its ports alone
        (record("10.0.1.5", "10.0.2.9", 51000, 443, "x100"), True),  # int() would fail: Python counts it
        (record("10.0.1.5", "10.0.2.9", 51000, 443, "-"), True),  # shorter than a probe's limit
        (record("34.1.2.3", "10.0.1.5", 51000, 443, 5000), False),  # an internet client of ours
        (record("34.1.2.3", "10.0.1.5", 51000, 22, 5000), True),  # to SSH
        (record("34.1.2.3", "10.0.1.5", 3333, 51000, 5000), True),  # from a mining pool's port
        (record("10.0.1.5", "34.1.2.3", 51000, 443, 5000), True),  # ours to the internet: egress counts
        (record("45.10.0.1", "10.0.1.5", 51000, 443, 5000), True),  # threat-listed
        (record("10.0.1.5", "10.0.9.9", 51000, 443, 5000), True),  # an address the memo does not hold
        (record("34.1.2.3", "34.1.2.3", 51000, 443, 5000), True),  # public to public
    ],
)
def test_a_record_is_dropped_only_when_the_scanner_would_ignore_it(line: bytes, kept: bool) -> None:
    records, fields = keep(line, MEMO)
    assert records == 1
    assert fields == (line.split() if kept else [])


def test_fields_are_cut_as_bytes_split_cuts_them() -> None:
    """Every ASCII whitespace separates; NUL, 0x1c-0x1f and non-ASCII bytes do not."""
    line = record("10.0.1.5", "10.0.9.9", 51000, 443, 5000)
    odd = line.replace(b" ", b"\t", 2).replace(b" ", b" \x0b\x0c ", 1).replace(b"eni-1", b"eni-\x00\x1c\xa0")
    block = b"\n".join([odd + b"\r", b"  " + line, line])
    records, fields = keep(block, MEMO)
    assert records == 3
    assert fields == block.split()


def test_only_the_wanted_fields_come_back() -> None:
    line = record("10.0.1.5", "34.1.2.3", 51000, 443, 5000)
    assert keep(line, MEMO, wanted=(3, 4, 2)) == (1, [b"10.0.1.5", b"34.1.2.3", b"eni-1"])


@pytest.mark.parametrize(
    "block",
    [
        record("10.0.1.5", "10.0.2.9", 443, 51000, 5000) + b" extra",  # a field too many
        record("10.0.1.5", "10.0.2.9", 443, 51000, 5000).rsplit(b" ", 1)[0],  # one too few
        record("10.0.1.5", "10.0.2.9", 443, 51000, 5000, status="OKAY"),  # not a status
        record("10.0.1.5", "10.0.2.9", 443, 51000, 5000) + b"\n",  # an empty last line
        b"\n" + record("10.0.1.5", "10.0.2.9", 443, 51000, 5000),  # an empty first line
    ],
)
def test_a_block_that_is_not_regular_is_left_to_python(block: bytes) -> None:
    assert keep(block, MEMO) is None


def test_arguments_it_cannot_judge_are_left_to_python_or_refused() -> None:
    line = record("10.0.1.5", "10.0.2.9", 443, 51000, 5000)
    assert keep(b"", MEMO) == (0, [])
    assert (
        keep(
            line, MEMO, judge=(PUBLIC, tuple(b"%d" % p for p in range(65)), (), 4, 1000, b"32767", None, 1 << 30, *REST)
        )
        is None
    )
    assert keep(line, MEMO, judge=(PUBLIC, (), (), 19, 10**18, b"32767", None, 1 << 30, *REST)) is None
    assert keep(line, MEMO, wanted=(14,)) is None
    with pytest.raises(TypeError):
        keep(bytearray(line), MEMO)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        keep(line, MEMO, judge=(PUBLIC, ("22",), (), 4, 1000, b"32767", None, 1 << 30, *REST))


# -- the same findings as the pure-Python scanner --------------------------------------------------


@pytest.mark.parametrize("kind", ["v2", "v5"])
def test_generated_traffic_gives_the_same_findings_with_most_records_dropped(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, truth, threats, _ = flowgen.generate(30_000, seed=5, v5=kind == "v5")
    layout = parse_format(lines[0])
    blocks = [(layout, "\n".join(chunk).encode()) for chunk in flowgen.chunks(lines[1:], 3000)]
    ranges = Ranges(threats[0] + threats[1])
    dropped = 0
    real = detect._keep
    assert real is not None

    def counting(*args: Any) -> Any:
        nonlocal dropped
        kept = real(*args)
        assert kept is not None  # every block of generated traffic is regular
        dropped += kept[0] - len(kept[1]) // len(args[3])
        return kept

    monkeypatch.setattr(detect, "_keep", counting)
    found, counts, *_ = flow_blocks.both(blocks, lambda compiled: Scanner(Classifier(ranges), compiled=compiled))
    assert counts[0] == len(lines) - 1  # the header is not a record
    assert dropped > counts[0] // 2
    assert {f.address for f in found if f.detector == "egress-volume"} == truth.egress
    assert {f.address for f in found if f.detector == "port-scan"} == truth.scanners


def _outcome(scanner: Scanner) -> tuple[Any, ...]:
    return (
        scanner.findings(),
        scanner.records,
        scanner.untracked,
        scanner._ports,
        scanner._sweeps,
        scanner._egress,
        scanner._first_interfaces(),
    )


def test_two_scanners_reading_through_one_classifier_count_each_its_own() -> None:
    """The known table links an address to its egress count and probe sets in one scanner's dicts:
    a second scanner on the same classifier must not add to the first one's."""
    lines, _, threats, _ = flowgen.generate(12_000, seed=7)
    layout = parse_format(lines[0])
    blocks = [(layout, "\n".join(chunk).encode()) for chunk in flowgen.chunks(lines[1:], 1500)]
    ranges = Ranges(threats[0] + threats[1])
    shared = Classifier(ranges)
    first, second, alone = Scanner(shared), Scanner(shared), Scanner(Classifier(ranges), compiled=False)
    for scanner in (first, second, alone):
        for block_layout, block in blocks:
            scanner.scan(block, block_layout)
    expected = _outcome(alone)
    assert expected[3]  # probes were counted
    assert expected[5]  # and egress
    assert _outcome(first) == expected
    assert _outcome(second) == expected
    assert first._links  # the table's links are the first scanner's ...
    assert not second._links  # ... and the second looked its own up, block by block


def test_links_start_again_with_a_new_table() -> None:
    """A port scanner marked mid-delivery replaces the classifier's table: the scanner's links to
    the old one's entries are dropped with it, and the counts go on as Python's would."""
    lines, truth, threats, _ = flowgen.generate(60_000, seed=3)
    layout = parse_format(lines[0])
    blocks = [(layout, "\n".join(chunk).encode()) for chunk in flowgen.chunks(lines[1:], 2000)]
    classifier = Classifier(Ranges(threats[0] + threats[1]))
    scanner = Scanner(classifier)
    replaced, last = 0, classifier.known
    for block_layout, block in blocks:
        before, table = len(scanner._links), classifier.known
        scanner.scan(block, block_layout)
        if table is not last:  # the first block on a new table: the old links are gone, few new ones made
            replaced += 1
            assert len(scanner._links) < before
        last = table
        if classifier.known is table:  # (a table replaced at the block's end is claimed by the next block)
            assert len(scanner._links) <= 3 * len(classifier.known_keys)  # an address's three links at most
    assert replaced  # a table was replaced mid-way
    pure = Scanner(Classifier(Ranges(threats[0] + threats[1])), compiled=False)
    for block_layout, block in blocks:
        pure.scan(block, block_layout)
    assert _outcome(scanner) == _outcome(pure)
    assert {f.address for f in scanner.findings() if f.detector == "port-scan"} == truth.scanners


@pytest.mark.parametrize("name", sorted(flow_blocks.SETTINGS))
def test_hostile_blocks_give_the_same_findings(name: str) -> None:
    """The short form of the `make fuzz` campaign (tests/fuzzing/flow_blocks.py)."""
    rng = random.Random(41)
    chosen = flow_blocks.blocks(rng, flow_blocks.base_records(), 120)
    regular = sum(keep(block, {}) is not None for _, block in chosen[:120])
    settings = flow_blocks.SETTINGS[name]
    counts = flow_blocks.both(chosen, lambda compiled: Scanner(Classifier(THREATS), settings, compiled=compiled))[1]
    assert regular >= 60  # the compiled pass judged most blocks, not only the fall-back
    assert counts[2] > 0  # malformed records were met, and counted alike


def test_a_flood_of_probing_sources_is_counted_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the sources the scanner tracks, probes are counted as untracked: the compiled pass
    never drops a probe, so the count is the same with it."""
    monkeypatch.setattr(detect, "MAX_PROBING_SOURCES", 5)
    probes = [record(f"10.0.7.{i}", "10.0.2.9", 40000 + i, 443, 60) for i in range(40)]
    quiet = [record("10.0.1.5", "10.0.2.9", 443, 51000, 5000)] * 40
    blocks = [(DEFAULT, b"\n".join(probes + quiet))] * 2
    counts = flow_blocks.both(blocks, lambda compiled: Scanner(Classifier(THREATS), compiled=compiled))[1]
    assert counts[3] == 2 * (40 - 5)  # untracked: each probe of a source beyond the first five, twice


# -- the egress counts the compiled pass adds to ---------------------------------------------------


def _counting(block: bytes, egress: dict[bytes, list[Any]], limit: int = 10_000) -> Any:
    assert detect._keep is not None
    judge = (*JUDGE[:6], egress, limit, *REST)
    return detect._keep(block, 14, V2, ALL, MEMO, *judge)


def test_ours_to_the_internet_is_counted_in_place_not_handed_on() -> None:
    egress: dict[bytes, list[Any]] = {}
    out: list[tuple[int, int, int | str]] = [(51000, 443, 2000), (443, 51001, "-"), (51002, 443, 3000)]
    block = b"\n".join(record("10.0.1.5", "34.1.2.3", sport, dport, size) for sport, dport, size in out)
    records, kept = _counting(block, egress)
    assert (records, kept) == (3, [])
    assert egress == {OURS: [b"eni-1", 5000]}
    other = record("10.0.1.5", "34.1.2.3", 51003, 443, 4000).replace(b"eni-1", b"eni-nat")
    assert _counting(other, egress) == (1, [])  # another interface logged it after: counted once, on the first
    assert egress == {OURS: [b"eni-1", 5000]}


def test_what_reaches_the_limit_or_follows_a_kept_record_is_left_to_python() -> None:
    egress: dict[bytes, list[Any]] = {OURS: [b"eni-1", 9000]}
    crossing = record("10.0.1.5", "34.1.2.3", 51000, 443, 1000)
    assert len(_counting(crossing, egress)[1]) == 14
    assert egress == {OURS: [b"eni-1", 9000]}
    mining = record("10.0.1.5", "34.1.2.3", 51000, 3333, 500)  # kept for the mining detector ...
    after = record("10.0.1.5", "34.1.2.3", 51001, 443, 500)  # ... so what follows from it is Python's too, in order
    assert len(_counting(mining + b"\n" + after, egress)[1]) == 28
    assert egress == {OURS: [b"eni-1", 9000]}
    odd = record("10.0.1.5", "34.1.2.3", 51000, 443, "1_000")  # int() reads it: Python decides
    assert len(_counting(odd, egress)[1]) == 14


def test_a_block_found_irregular_later_leaves_the_counts_as_they_were() -> None:
    egress: dict[bytes, list[Any]] = {OURS: [b"eni-1", 100]}
    block = record("10.0.1.5", "34.1.2.3", 51000, 443, 2000) + b"\n" + b"2 short line"
    assert _counting(block, egress) is None
    assert egress == {OURS: [b"eni-1", 100]}  # the scanner's own path reads the whole block again


# -- the probe counts it adds to, and the classifier it asks ----------------------------------------


def _probing(block: bytes, ports: dict[bytes, set[bytes]], sweeps: dict[bytes, set[bytes]] | None = None,
             memo: dict[bytes, int] = MEMO, classify: Any = None, cap: int = 256) -> Any:  # fmt: skip
    assert detect._keep is not None
    judge: tuple[Any, ...] = (*JUDGE[:8], classify, ports, sweeps, cap, 300, 3, None, [], None)
    return detect._keep(block, 14, V2, ALL, memo, *judge)


def probe(src: str, dst: str, dport: int | str, nbytes: int | str = 60, packets: int | str = 1) -> bytes:
    return record(src, dst, 51000, dport, nbytes).replace(b" 6 1 ", f" 6 {packets} ".encode())


def test_a_probe_of_a_source_already_counted_is_counted_in_place() -> None:
    ports = {OURS: {b"80"}}
    block = b"\n".join([probe("10.0.1.5", "10.0.2.9", 443), probe("34.1.2.3", "10.0.1.5", 8443)])
    assert _probing(block, ports) == (2, block.split()[14:])  # the internet's first probe: Python's
    assert ports == {OURS: {b"80", b"443"}}


def test_a_sweep_is_counted_in_order_up_to_its_cap() -> None:
    ports, sweeps = {OURS: set[bytes]()}, {OURS: {b"10.0.3.1"}}
    targets = [f"10.0.3.{i}" for i in range(1, 6)]
    memo = {**MEMO, **{t.encode(): 0 for t in targets}}
    block = b"\n".join(probe("10.0.1.5", t, 443) for t in targets)
    assert _probing(block, ports, sweeps, memo, cap=3) == (5, [])
    assert sweeps == {OURS: {b"10.0.3.1", b"10.0.3.2", b"10.0.3.3"}}  # the first ones, as the loop adds them
    assert ports == {OURS: {b"443"}}
    request = probe("10.0.1.5", "10.0.3.9", 443, packets=4)  # a request's packets: a probe, not a sweep
    memo[b"10.0.3.9"] = 0
    assert _probing(request, ports, {OURS: set()}, memo) == (1, [])
    assert ports == {OURS: {b"443"}}


@pytest.mark.parametrize(
    ("line", "sweeps"),
    [
        (probe("10.0.1.5", "10.0.2.9", 443, nbytes="6_0"), None),  # int() reads it: Python decides
        (probe("10.0.1.5", "10.0.2.9", 443, nbytes="-"), None),
    ],
)
def test_a_probe_it_cannot_count_exactly_is_left_to_python(line: bytes, sweeps: dict[bytes, set[bytes]] | None) -> None:
    ports = {OURS: {b"80"}}
    assert _probing(line, ports, sweeps) == (1, line.split())
    assert ports == {OURS: {b"80"}}


def _first_probes(block: bytes, ports: dict[bytes, set[bytes]], sweeps: dict[bytes, set[bytes]],
                  firsts: list[bytes], most: int, memo: dict[bytes, int] = MEMO) -> Any:  # fmt: skip
    assert detect._keep is not None
    judge: tuple[Any, ...] = (*JUDGE[:8], None, ports, sweeps, 256, 300, 3, None, [], None, None, 0, firsts, most)
    return detect._keep(block, 14, V2, ALL, memo, *judge)


def test_a_sources_first_probe_and_first_sweep_make_their_sets_here_as_the_loop_makes_them() -> None:
    memo = {**MEMO, b"10.0.2.10": 0, b"10.0.1.6": 0}
    block = b"\n".join([probe("10.0.1.5", "10.0.2.9", 443), probe("10.0.1.5", "10.0.2.10", 22, packets=5)])
    ports: dict[bytes, set[bytes]] = {}
    sweeps: dict[bytes, set[bytes]] = {}
    firsts: list[bytes] = []
    assert _first_probes(block, ports, sweeps, firsts, 100, memo) == (2, [])
    assert ports == {OURS: {b"443", b"22"}}
    assert sweeps == {OURS: {b"10.0.2.9"}}  # the second is a request's packets: a probe, not a sweep
    assert firsts == [b"eni-1"]  # in the order of the sources in `ports`
    # A source counted already, whose probes were no sweeps so far: its first sweep's set is made here too.
    ports, sweeps = {b"10.0.1.6": {b"80"}}, {}
    assert _first_probes(probe("10.0.1.6", "10.0.2.9", 443), ports, sweeps, firsts, 100, memo) == (1, [])
    assert sweeps == {b"10.0.1.6": {b"10.0.2.9"}}
    assert firsts == [b"eni-1"]  # an interface only where a source's first probe made its set


def test_a_first_probes_interface_is_one_object_per_interface_but_never_a_long_field_held_for_good() -> None:
    """Interfaces are kept as one bytes object each for the process's life (a few hundred of them);
    a hostile record's long "interface" gets an object of its own, freed with the scanner."""
    memo = {**MEMO, **{b"10.0.7.%d" % i: 0 for i in range(4)}}
    long = "eni-" + "f" * 200
    lines = [probe(f"10.0.7.{i}", "10.0.2.9", 443).replace(b"eni-1", iface.encode())
             for i, iface in enumerate(["eni-0abc", "eni-0abc", long, long])]  # fmt: skip
    firsts: list[bytes] = []
    assert _first_probes(b"\n".join(lines), {}, {}, firsts, 100, memo) == (4, [])
    assert firsts == [b"eni-0abc", b"eni-0abc", long.encode(), long.encode()]
    assert firsts[0] is firsts[1]
    assert firsts[2] is not firsts[3]


def test_a_block_that_could_reach_the_most_sources_counted_leaves_first_probes_to_python() -> None:
    """Python counts MAX_PROBING_SOURCES sources and no more, in the records' order: a set is made
    here only while the sources counted and the block's records so far could not reach it."""
    memo = {**MEMO, **{b"10.0.7.%d" % i: 0 for i in range(4)}}
    block = b"\n".join(probe(f"10.0.7.{i}", "10.0.2.9", 443) for i in range(4))
    ports: dict[bytes, set[bytes]] = {b"10.0.9.9": set()}
    records, kept = _first_probes(block, ports, {}, [], 4, memo)
    assert records == 4
    assert kept == block.split()[2 * 14 :]  # 1 + 1 and 1 + 2 are below 4; the last two are Python's
    assert set(ports) == {b"10.0.9.9", b"10.0.7.0", b"10.0.7.1"}
    assert _first_probes(block, {}, {}, None, 100, memo)[1] == block.split()  # type: ignore[arg-type]  # no firsts


def test_probes_after_a_kept_record_of_their_source_are_left_to_python() -> None:
    ports = {OURS: {b"80"}}
    mining = record("10.0.1.5", "34.1.2.3", 51000, 3333, 5000)
    block = b"\n".join([mining, probe("10.0.1.5", "10.0.2.9", 443)])
    assert _probing(block, ports) == (2, block.split())
    assert ports == {OURS: {b"80"}}  # the loop adds 443 after it has seen the mining record


def test_a_block_found_irregular_later_leaves_the_probe_counts_as_they_were() -> None:
    ports, sweeps = {OURS: {b"80"}}, {OURS: set[bytes]()}
    assert _probing(probe("10.0.1.5", "10.0.2.9", 443) + b"\n2 short", ports, sweeps) is None
    assert (ports, sweeps) == ({OURS: {b"80"}}, {OURS: set()})


def test_an_address_seen_first_is_classified_here_as_the_loop_would() -> None:
    classifier = Classifier(THREATS)
    memo = classifier.memo
    quiet = record("10.0.1.5", "10.0.2.9", 443, 51000, 5000)
    threat = record("10.0.1.5", "45.10.3.3", 51000, 443, 5000)
    assert _probing(quiet + b"\n" + threat, {}, memo=memo, classify=classifier.classify) == (2, threat.split())
    assert memo == {b"-": 4, OURS: 0, PEER: 0, b"45.10.3.3": PUBLIC | 2}
    odd = record("10.0.1.5", "10.0.\x002.9", 443, 51000, 5000)  # the classifier raises ValueError: the loop's to count
    assert _probing(odd, {}, memo=memo, classify=classifier.classify) == (1, odd.split())
    with pytest.raises(ZeroDivisionError):
        _probing(record("10.0.1.5", "10.0.8.8", 443, 51000, 5000), {}, memo={}, classify=lambda _: 1 // 0)


def test_what_it_knows_from_earlier_blocks_is_forgotten_when_the_memo_changes() -> None:
    classifier = Classifier(THREATS)
    quiet = record("10.0.1.5", "10.0.2.9", 443, 51000, 5000)

    def judged() -> Any:
        assert detect._keep is not None
        judge = (*JUDGE[:8], classifier.classify, None, None, 256, 300, 3, classifier.known, classifier.known_keys,
                 classifier.tables())  # fmt: skip
        return detect._keep(quiet, 14, V2, ALL, classifier.memo, *judge)

    assert judged() == (1, [])
    classifier.memo[OURS] = 16  # written behind its back: the table still says what the memo said
    assert judged() == (1, [])
    classifier.mark(OURS, 8)  # a port scanner now: its records are the scanner's to read
    assert judged() == (1, quiet.split())
    assert classifier.known.count(0) < len(classifier.known)  # the new table learnt it again


def test_the_sources_past_the_threshold_are_the_ones_python_finds() -> None:
    ports = {b"10.0.0.%d" % i: {b"%d" % p for p in range(i)} for i in range(12)}
    assert detect._at_least is not detect._sources_at_least  # the compiled one is in use
    assert detect._at_least(ports, 7) == detect._sources_at_least(ports, 7) == [b"10.0.0.%d" % i for i in range(7, 12)]
    assert detect._at_least({}, 1) == []


def test_a_dotted_quad_is_classified_here_exactly_as_the_classifier_would() -> None:
    def made() -> Classifier:
        return Classifier(Ranges(["45.10.0.0/16", "91.200.1.7", "2001:db8::/32"]), internal=Ranges(["203.0.113.0/24"]),
                          forbidden=Ranges(["198.51.100.0/24", "45.10.9.0/24"]))  # fmt: skip

    edges = ["45.10.0.0", "45.9.255.255", "45.10.255.255", "45.11.0.0", "91.200.1.7", "91.200.1.6", "91.200.1.8",
             "203.0.113.0", "203.0.112.255", "203.0.114.0", "198.51.100.255", "198.51.101.0", "45.10.9.9", "10.0.0.1",
             "9.255.255.255", "11.0.0.0", "172.31.255.255", "172.32.0.0", "0.0.0.0", "255.255.255.255", "8.8.8.8",
             "2001:db8::1", "01.2.3.4", "1.2.3.256"]  # fmt: skip
    classifier, asked = made(), []

    def classify(address: bytes) -> int:
        asked.append(address)
        return classifier.classify(address)

    block = b"\n".join(record(a, b, 443, 51000, 5000) for a, b in zip(edges, edges[1:] + edges[:1], strict=True))
    assert detect._keep is not None
    judge = (*JUDGE[:8], classify, None, None, 256, 300, 3, None, [], classifier.tables())
    assert detect._keep(block, 14, V2, ALL, classifier.memo, *judge)[0] == len(edges)
    pure = made()
    assert classifier.memo == {b"-": 4, **{a.encode(): pure.classify(a.encode()) for a in edges}}
    assert sorted(asked) == [b"01.2.3.4", b"1.2.3.256", b"2001:db8::1"]  # only what is not a dotted quad


def test_the_memo_stops_growing_at_its_limit_here_too() -> None:
    classifier = Classifier(THREATS)
    tables = (*classifier.tables()[:8], 3)  # `-` and two addresses
    block = b"\n".join(record(f"10.0.0.{i}", "10.0.2.9", 443, 51000, 5000) for i in range(5))
    assert detect._keep is not None
    judge = (*JUDGE[:8], classifier.classify, None, None, 256, 300, 3, None, [], tables)
    assert detect._keep(block, 14, V2, ALL, classifier.memo, *judge) == (5, [])
    assert list(classifier.memo) == [b"-", b"10.0.0.0", b"10.0.2.9"]


def test_where_an_address_lands_in_the_table_depends_on_the_tables_secret() -> None:
    """Addresses come from packets anyone can send: with a hash an attacker could compute, chosen
    addresses would all collide and every lookup would walk the table. Each table has its own
    random secret, and the pass hashes with it."""
    block = b"\n".join(record(f"10.0.{i}.5", "10.0.2.9", 443, 51000, 5000) for i in range(40))
    tables = []
    for _ in range(2):
        classifier = Classifier(THREATS)
        assert detect._keep is not None
        judge = (*JUDGE[:8], classifier.classify, None, None, 256, 300, 3, classifier.known, classifier.known_keys,
                 classifier.tables())  # fmt: skip
        assert detect._keep(block, 14, V2, ALL, classifier.memo, *judge) == (40, [])
        tables.append(classifier.known)
    seeds = [bytes(table[8:16]) for table in tables]
    assert seeds[0] != seeds[1]
    assert all(any(seed) for seed in seeds)
    places = [{i for i in range(1, len(t) // 64) if any(t[64 * i : 64 * i + 8])} for t in tables]
    assert len(places[0]) == len(places[1]) == 41  # the 41 addresses, each in one entry ...
    assert places[0] != places[1]  # ... at places the secret chose
