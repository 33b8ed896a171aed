"""The flow-log scanner's compiled first pass: it drops only records the scanner would do nothing
with, so findings and counts are those of the pure-Python scanner, on real traffic and on hostile
blocks alike."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib.flowlogs import detect
from chalicelib.flowlogs.addresses import PUBLIC, Classifier, Ranges
from chalicelib.flowlogs.detect import DetectorSettings, Scanner
from chalicelib.flowlogs.fields import DEFAULT, Layout, parse_format
from devstack import flowgen

THREATS = Ranges(["45.10.0.0/16", "91.200.1.7"])
V2 = (3, 4, 5, 6, 9, 13)  # srcaddr, dstaddr, srcport, dstport, bytes, log-status in the default format
ALL = tuple(range(14))
JUDGE = (PUBLIC, (b"3333", b"4444"), (b"22", b"3389"), 4, 1000, b"32767")


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
    assert keep(line, MEMO, judge=(PUBLIC, tuple(b"%d" % p for p in range(65)), (), 4, 1000, b"32767")) is None
    assert keep(line, MEMO, judge=(PUBLIC, (), (), 19, 10**18, b"32767")) is None
    assert keep(line, MEMO, wanted=(14,)) is None
    with pytest.raises(TypeError):
        keep(bytearray(line), MEMO)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        keep(line, MEMO, judge=(PUBLIC, ("22",), (), 4, 1000, b"32767"))


# -- the same findings as the pure-Python scanner --------------------------------------------------


def _run(blocks: list[tuple[Layout, bytes]], make: Callable[[bool], Scanner]) -> tuple[Any, ...]:
    outcomes = []
    for compiled in (True, False):
        scanner = make(compiled)
        for layout, block in blocks:
            scanner.scan(block, layout)
        found = scanner.findings()
        counts = (scanner.records, scanner.skipped, scanner.malformed, scanner.untracked)
        outcomes.append((found, counts, scanner._ports, scanner._sweeps, scanner._egress))
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


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
    found, counts, *_ = _run(blocks, lambda compiled: Scanner(Classifier(ranges), compiled=compiled))
    assert counts[0] == len(lines) - 1  # the header is not a record
    assert dropped > counts[0] // 2
    assert {f.address for f in found if f.detector == "egress-volume"} == truth.egress
    assert {f.address for f in found if f.detector == "port-scan"} == truth.scanners


HOSTILE = [
    b"-", b"0", b"999", b"1000", b"1001", b"0999", b"1_0", b"+5", b" 5", b"\xff\xfe", b"22", b"3389", b"3333",
    b"4444", b"32767", b"32768", b"99999", b"1" * 19, b"10.0.1.5", b"10.0.2.9", b"45.10.0.1", b"34.1.2.3",
    b"OK", b"NODATA", b"SKIPDATA", b"x\x00y", b"\xa0", b"a" * 300, b"6", b"1", b"3", b"REJECT",
]  # fmt: skip
SEPARATORS = [b"\t", b"\x0b", b"\x0c", b"\r", b"  ", b"\x00", b"\x1c"]


def _mutated(rng: random.Random, lines: list[bytes], anything: bool) -> bytes:
    """Hostile values in some fields; with `anything`, also fields lost or added, odd separators,
    blank lines (blocks the compiled pass leaves to Python)."""
    out = []
    rate = rng.choice((0.02, 0.1, 0.3))
    for original in lines:
        line = original
        if rng.random() < rate:
            fields = line.split(b" ")
            roll = rng.random() if anything else 0.0
            if roll < 0.6:  # the status stays one (else the block is not regular)
                value = rng.choice([v for v in HOSTILE if len(v.split()) == 1] if not anything else HOSTILE)
                fields[rng.randrange(len(fields) - 1)] = value
            elif roll < 0.7:
                del fields[rng.randrange(len(fields))]
            elif roll < 0.8:
                fields.insert(rng.randrange(len(fields)), rng.choice(HOSTILE))
            else:
                at = rng.randrange(1, len(fields))
                fields[at] = rng.choice(SEPARATORS) + fields[at]
            line = b" ".join(fields)
        out.append(line)
    if anything and rng.random() < 0.1:
        out.insert(rng.randrange(len(out)), b"")
    return b"\n".join(out) + (b"\n" if anything and rng.random() < 0.1 else b"")


SETTINGS = [
    DetectorSettings(),
    DetectorSettings(mining_ports=(3333, 4444), scan_min_ports=5, sweep_min_addresses=3, egress_bytes=20_000),
    DetectorSettings(scan_max_bytes=5, scan_max_port=1023),
    DetectorSettings(enabled=frozenset({"threat-list", "egress-volume"})),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["defaults", "sensitive", "narrow-probes", "no-scans"])
def test_hostile_blocks_give_the_same_findings(settings: DetectorSettings) -> None:
    rng = random.Random(41)
    lines, _, _, _ = flowgen.generate(6_000, seed=13, threats=(["91.200.1.7"], ["45.10.0.0/16"]))
    base = [line.encode() for line in lines[1:]]
    # Addresses of the hostile values, and a few more of ours, public ones and "-".
    base += [record("10.0.1.5", "10.0.2.9", 51000, 443, 400), record("34.1.2.3", "10.0.1.5", 3333, 51000, 80)]
    blocks = []
    regular = 0
    for turn in range(120):
        block = _mutated(rng, rng.sample(base, 100), anything=turn % 3 == 0)
        regular += keep(block, {}) is not None
        blocks.append((DEFAULT, block))
    # A second pass over the same blocks, with every address in the memo: most records now judged in C.
    blocks += blocks
    counts = _run(blocks, lambda compiled: Scanner(Classifier(THREATS), settings, compiled=compiled))[1]
    assert regular >= 60  # the compiled pass judged most blocks, not only the fall-back
    assert counts[2] > 0  # malformed records were met, and counted alike
