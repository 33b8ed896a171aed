"""Cold-start cost: `import app` against `import boto3`, measured side by side.

Each statement runs in a fresh interpreter, alternating, several times; the median wall time
of each is compared. Both run with their bytecode, as the package ships it (written once by a
first run into a folder outside the tree). Budget: `import app` at most 1.5x `import boto3`.

    make bench            # or: .venv/bin/python bench/import_time.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import goals

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 1.5
STATEMENTS = {"boto3": "import boto3", "app": "import app"}


# Bytecode as the package ships it, kept outside the tree (the tree stays as Chalice packages it).
PYCACHE = Path(tempfile.gettempdir()) / "eks-responder-import-bench-pycache"


def _once(statement: str) -> float:
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true", "PYTHONPYCACHEPREFIX": str(PYCACHE)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], cwd=ROOT, env=env, check=True)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    for statement in STATEMENTS.values():  # warm the OS cache and write the bytecode
        _once(statement)
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.runs):
        for name, statement in STATEMENTS.items():
            times[name].append(_once(statement))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["app"] / medians["boto3"]
    for name, median in medians.items():
        print(f"import {name:<6} median {median:7.1f} ms over {args.runs} runs")
    verdict = "within" if ratio <= BUDGET else "OVER"
    goals.record("import app / import boto3", f"{ratio:.2f}x", f"<= {BUDGET}x", ratio <= BUDGET)
    print(f"import app / import boto3 = {ratio:.2f} ({verdict} the {BUDGET}x budget)")
    return 0  # a goal missed is reported by bench/goals.py; only an error stops `make bench`


if __name__ == "__main__":
    sys.exit(main())
