"""Flow-log scan speed: the detector against `gzip -dc` on the same file, whole processes side by side.

Generates seeded, realistic files (default v2 format and the 29-field v5 custom format, gzip level
6 as S3 delivery writes them, with the list of what was planted in them) once, then runs,
interleaved, `gzip -dc FILE > /dev/null` and the responder's scan of the same file, each a whole
process: interpreter start, imports, the threat list, read, decompress, split, detect, findings.
Both are measured in CPU seconds (user + system, from the kernel's accounting of the finished
process), which a shared, noisy machine disturbs far less than wall time. Each round runs each
side twice, alternating, and keeps the faster of each; the ratio is taken per round and the
median of the rounds printed, with where the scan's time goes. Every planted threat, mining,
admin-port, scan, sweep and egress case must be found, and nothing else of those kinds.

Then the path a user runs: `eks-responder replay --json FILE` (detect, attribute, plan every
incident, print), a whole process too, against `gzip -dc` the same way.

Goals (1 M records): the scan at most 0.6x `gzip -dc`, v2 and v5; the replay at most 1.0x; peak
memory flat from 100 k to 1 M to 5 M records (at 5 M at most 10 MB above the 100 k figure: what
grows is per distinct address).

    make bench        # or: .venv/bin/python bench/flowlogs.py --rounds 7
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import goals

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOALS = {"v2": 0.6, "v5": 0.6}
REPLAY_GOAL = 1.0
MEMORY_SIZES = (100_000, 1_000_000, 5_000_000)
# Peak RSS at 5 M records at most this many MB above the peak at 100 k (50 times the records, 3.4
# times the distinct addresses): what is kept grows with the distinct addresses (capped: MEMO_LIMIT,
# MAX_PROBING_SOURCES), never with the records. The allowance the goal first had as a ratio (1.5x of
# 20 MB), in megabytes: a ratio counted a lighter interpreter (fewer imports) against the scan.
MEMORY_GOAL = 10
CACHE = Path.home() / ".cache" / "eks-responder" / "bench"
SEED = 9  # a new seed whenever the generator changes: the cached files are named by it


def _files(records: int, kinds: tuple[str, ...] = ("v2", "v5")) -> dict[str, Path]:
    from devstack import flowgen

    CACHE.mkdir(parents=True, exist_ok=True)
    found = {}
    for kind in kinds:
        path = CACHE / f"flows-{kind}-{records}-seed{SEED}.log.gz"
        if not path.exists():
            print(f"  generating {records:,} {kind} records ...", flush=True)
            lines, truth, threats, _ = flowgen.generate(records, SEED, v5=kind == "v5")
            planted = {
                "threat-list": truth.threat, "mining-pool": truth.mining, "admin-from-internet": truth.admin,
                "port-scan": truth.scanners, "address-sweep": truth.sweepers, "egress-volume": truth.egress,
            }  # fmt: skip
            _truth(path).write_text(json.dumps({k: sorted(v) for k, v in planted.items()}))
            (CACHE / f"threats-seed{SEED}.txt").write_text("\n".join(threats[0] + threats[1]) + "\n")
            flowgen.write_gzip(path.with_suffix(".tmp"), lines).rename(path)
        found[kind] = path
    return found


def _truth(path: Path) -> Path:
    return path.with_name(path.name.replace(".log.gz", ".truth.json"))


def _child(path: Path) -> dict[str, Any]:
    """One scan in its own process; `cpu_s` is the whole process's, interpreter start included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The scan alone, in a process of its own that imports nothing of this harness (bench/scan_once.py).
    command = [sys.executable, str(Path(__file__).with_name("scan_once.py")), str(path),
               str(CACHE / f"threats-seed{SEED}.txt")]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = ast.literal_eval(out.stdout)
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def _replay(path: Path) -> float:
    """CPU seconds of `eks-responder replay --json FILE`, as a user runs it (plan mode, offline)."""
    threats = CACHE / f"threats-seed{SEED}.txt"
    env = {**os.environ, "THREAT_LIST": str(threats)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Path(os.devnull).open("wb") as sink:
        subprocess.run([sys.executable, "-m", "chalicelib.commands.cli", "replay", "--json", str(path)], stdout=sink,
                       env=env, cwd=ROOT, check=False)  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _missed(path: Path, found: list[str]) -> list[str]:
    """Planted cases not found, and findings of those kinds that were not planted."""
    planted = json.loads(_truth(path).read_text())
    wanted = {f"{kind} {address}" for kind, addresses in planted.items() for address in addresses}
    got = {f for f in found if f.split(" ", 1)[0] in planted}
    return [f"missed {f}" for f in sorted(wanted - got)] + [f"not planted {f}" for f in sorted(got - wanted)]


def _gzip(path: Path) -> float:
    """CPU seconds (user + system) of `gzip -dc FILE > /dev/null`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Path(os.devnull).open("wb") as sink:
        subprocess.run(["gzip", "-dc", str(path)], stdout=sink, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    # Measured as shipped, with bytecode (a shell with PYTHONDONTWRITEBYTECODE would compile every
    # module again in every run and count it).
    import compileall

    compileall.compile_dir(str(ROOT / "chalicelib"), quiet=1)
    print(f"generating once (cached in {CACHE}) ...", flush=True)
    files = _files(args.records)
    met = True
    for kind, path in files.items():
        ratios, runs = [], []
        for _ in range(args.rounds):
            # Each side twice per round, alternating, the faster kept: a noisy neighbour slows one run, not the machine.
            floor, first, again = _gzip(path), _child(path), _gzip(path)
            second = _child(path)
            best = min(first, second, key=lambda run: run["cpu_s"])
            ratios.append(best["cpu_s"] / min(floor, again))
            runs.append(best)
        ratio = statistics.median(ratios)
        last = sorted(runs, key=lambda run: run["cpu_s"])[len(runs) // 2]
        missed = _missed(path, last["found"])
        goal = GOALS[kind]
        met = met and ratio <= goal and not missed
        rounds = ", ".join(f"{r:.2f}" for r in ratios)
        verdict = "met" if ratio <= goal else "NOT MET"
        print(f"{kind}: whole scan / gzip -dc median {ratio:.2f}x (goal <= {goal}x: {verdict}; rounds {rounds})")
        other = last["cpu_s"] - last["import_s"] - last["threat_list_s"] - last["work_s"]
        print(f"    {last['cpu_s']:.2f} s CPU = {other:.2f} interpreter start + {last['import_s']:.2f} imports + "
              f"{last['threat_list_s']:.2f} threat list + {last['work_s']:.2f} read, split and detect "
              f"({last['records'] / last['work_s'] / 1000:.0f} k records/s)")  # fmt: skip
        goals.record(f"flow logs {kind}: whole scan / gzip -dc", f"{ratio:.2f}x ({last['cpu_s']:.2f} s CPU)",
                     f"<= {goal}x", ratio <= goal)  # fmt: skip
        wrong = "all" if not missed else f"{len(missed)} wrong"
        goals.record(f"flow logs {kind}: planted cases found, no others", wrong, "all", not missed)
        print(f"    {last['findings']} findings; every planted case found, nothing else of those kinds: "
              + ("yes" if not missed else "NO: " + "; ".join(missed[:10])))  # fmt: skip
    for kind, path in files.items():
        ratios = []
        for _ in range(args.rounds):
            floor, replayed, again, replayed_again = _gzip(path), _replay(path), _gzip(path), _replay(path)
            ratios.append(min(replayed, replayed_again) / min(floor, again))
        ratio = statistics.median(ratios)
        met = met and ratio <= REPLAY_GOAL
        rounds = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"{kind}: replay --json / gzip -dc median {ratio:.2f}x (goal <= {REPLAY_GOAL}x: "
              f"{'met' if ratio <= REPLAY_GOAL else 'NOT MET'}; rounds {rounds})")  # fmt: skip
        goals.record(f"flow logs {kind}: replay --json / gzip -dc", f"{ratio:.2f}x", f"<= {REPLAY_GOAL}x",
                     ratio <= REPLAY_GOAL)  # fmt: skip
    peaks, addresses = {}, {}
    for records in MEMORY_SIZES:
        run = _child(_files(records, ("v2",))["v2"])
        peaks[records], addresses[records] = run["max_rss_mb"], run["addresses"]
    growth = peaks[MEMORY_SIZES[-1]] - peaks[MEMORY_SIZES[0]]
    flat = growth <= MEMORY_GOAL
    met = met and flat
    sizes = ", ".join(f"{mb:.0f} MB at {records / 1e6:g} M ({addresses[records]:,} addresses)"
                      for records, mb in peaks.items())  # fmt: skip
    print(f"peak RSS of the scan process (v2): {sizes} records (+{growth:.1f} MB; goal flat, <= +{MEMORY_GOAL} MB: "
          f"{'met' if flat else 'NOT MET'})")  # fmt: skip
    goals.record("flow logs: peak RSS 100 k -> 5 M records", f"{peaks[MEMORY_SIZES[0]]:.0f} -> "
                 f"{peaks[MEMORY_SIZES[-1]]:.0f} MB (+{growth:.1f} MB)", f"<= +{MEMORY_GOAL} MB", flat)  # fmt: skip
    print("goals met" if met else "GOALS NOT MET")
    return 0  # a goal missed is reported by bench/goals.py; only an error stops `make bench`


if __name__ == "__main__":
    sys.exit(main())
