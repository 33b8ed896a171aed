"""Hostile flow-log blocks through both scanners: the compiled first pass must change nothing.

Used by `tests/unit/test_flow_prefilter.py` (a fixed budget and seed) and by `make fuzz` (longer):
generated traffic with hostile values in its fields (bad numbers, odd whitespace, NUL bytes,
missing and extra fields, blank lines), every block scanned by a scanner with the compiled pass
and one without, under several detector settings; findings, counts and what each counted must be
equal.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from chalicelib.flowlogs.addresses import Classifier, Ranges
from chalicelib.flowlogs.detect import DetectorSettings, Scanner
from chalicelib.flowlogs.fields import DEFAULT, Layout
from devstack import flowgen

THREATS = Ranges(["45.10.0.0/16", "91.200.1.7"])
HOSTILE = [
    b"-", b"0", b"999", b"1000", b"1001", b"0999", b"1_0", b"+5", b" 5", b"\xff\xfe", b"22", b"3389", b"3333",
    b"4444", b"32767", b"32768", b"99999", b"1" * 19, b"10.0.1.5", b"10.0.2.9", b"45.10.0.1", b"34.1.2.3",
    b"OK", b"NODATA", b"SKIPDATA", b"x\x00y", b"\xa0", b"a" * 300, b"6", b"1", b"3", b"REJECT",
]  # fmt: skip
SEPARATORS = [b"\t", b"\x0b", b"\x0c", b"\r", b"  ", b"\x00", b"\x1c"]
SETTINGS = {
    "defaults": DetectorSettings(),
    "sensitive": DetectorSettings(
        mining_ports=(3333, 4444), scan_min_ports=5, sweep_min_addresses=3, egress_bytes=20_000
    ),
    "narrow-probes": DetectorSettings(scan_max_bytes=5, scan_max_port=1023),
    "no-scans": DetectorSettings(enabled=frozenset({"threat-list", "egress-volume"})),
}


def record(src: str, dst: str, sport: int | str, dport: int | str, nbytes: int | str, status: str = "OK") -> bytes:
    """A default-format record."""
    return f"2 123456789012 eni-1 {src} {dst} {sport} {dport} 6 1 {nbytes} 1 2 ACCEPT {status}".encode()


def base_records(seed: int = 13) -> list[bytes]:
    lines, _, _, _ = flowgen.generate(6_000, seed=seed, threats=(["91.200.1.7"], ["45.10.0.0/16"]))
    base = [line.encode() for line in lines[1:]]
    return [*base, record("10.0.1.5", "10.0.2.9", 51000, 443, 400), record("34.1.2.3", "10.0.1.5", 3333, 51000, 80)]


def mutated(rng: random.Random, lines: list[bytes], anything: bool) -> bytes:
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


def blocks(rng: random.Random, base: list[bytes], count: int) -> list[tuple[Layout, bytes]]:
    """`count` mutated blocks of 100 records, then the same again (every address now in the memo)."""
    made = [(DEFAULT, mutated(rng, rng.sample(base, 100), anything=turn % 3 == 0)) for turn in range(count)]
    return made + made


def both(blocks: list[tuple[Layout, bytes]], make: Callable[[bool], Scanner]) -> tuple[Any, ...]:
    """What the compiled and the pure-Python scanner made of the same blocks; raises if they differ."""
    outcomes = []
    for compiled in (True, False):
        scanner = make(compiled)
        for layout, block in blocks:
            scanner.scan(block, layout)
        found = scanner.findings()
        counts = (scanner.records, scanner.skipped, scanner.malformed, scanner.untracked)
        outcomes.append((found, counts, scanner._ports, scanner._sweeps, scanner._egress, scanner._first_interfaces()))
    if outcomes[0] != outcomes[1]:
        raise AssertionError(f"the compiled pass changed the outcome: {outcomes[0][1]} vs {outcomes[1][1]}")
    return outcomes[0]


def _maker(settings: DetectorSettings) -> Callable[[bool], Scanner]:
    return lambda compiled: Scanner(Classifier(THREATS), settings, compiled=compiled)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="the compiled flow-log pass against the pure-Python scanner")
    parser.add_argument("--rounds", type=int, default=50, help="rounds of 120 hostile blocks per detector setting")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    base = base_records()
    records = differing = 0
    for _ in range(args.rounds):
        chosen = blocks(rng, base, 120)
        for settings in SETTINGS.values():
            try:
                records += both(chosen, _maker(settings))[1][0]
            except AssertionError:
                differing += 1
    print(json.dumps({"rounds": args.rounds, "records": records, "differing_rounds": differing}, indent=2))
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
