"""Cold start of the deployed package, as Lambda runs it: a read-only copy of `deployment.zip`,
with the compiled bytecode `make package` adds and without it, side by side.

Each run is a fresh interpreter that imports the app and handles one GuardDuty pod finding
(planned: the parsing, the rules and the lazily imported modules of a first event, no network),
alternating between the two copies; the medians are compared. boto3 comes from the environment,
as it comes from the Lambda runtime.

    make bench            # or: .venv/bin/python bench/cold_package.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / ".chalice" / "package-dev" / "deployment.zip"
EVENT = ROOT / "events" / "guardduty" / "execution-runtime-reverse-shell.json"
FIRST_EVENT = (
    "import json, sys, app\n"
    "from chalicelib import intake, wiring\n"
    "from chalicelib.responder import Mode\n"
    "result = intake.handle(json.load(open(sys.argv[1])), wiring.responder(), Mode.PLAN)\n"
    "assert result['rule'] == 'compromised-pod', result\n"
)


def _copy(package: Path, target: Path, *, bytecode: bool) -> Path:
    with zipfile.ZipFile(package) as zipped:
        members = [n for n in zipped.namelist() if bytecode or ("__pycache__/" not in n and not n.endswith(".pyc"))]
        zipped.extractall(target, members)
    for path in target.rglob("*"):  # /var/task is read-only: nothing compiled there is kept
        path.chmod(0o555 if path.is_dir() else 0o444)
    return target


def _once(task: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(task), "PYTHONDONTWRITEBYTECODE": "1", "POWERTOOLS_TRACE_DISABLED": "true",
           "STAGE": "dev", "DRY_RUN": "true"}  # fmt: skip
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FIRST_EVENT, str(EVENT)], cwd=task, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    if not PACKAGE.exists():
        print("building the package once: make package STAGE=dev", flush=True)
        subprocess.run(["make", "package", "STAGE=dev"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="eks-responder-cold-"))
    try:
        copies = {"with bytecode": _copy(PACKAGE, work / "with", bytecode=True),
                  "sources only": _copy(PACKAGE, work / "without", bytecode=False)}  # fmt: skip
        for task in copies.values():
            _once(task)  # the OS file cache, not the interpreter's, is warm for both
        times: dict[str, list[float]] = {name: [] for name in copies}
        for _ in range(args.runs):
            for name, task in copies.items():
                times[name].append(_once(task))
    finally:
        for path in work.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(work)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"cold first event, {name:<13} median {median:7.1f} ms over {args.runs} runs (read-only package)")
    saved = medians["sources only"] - medians["with bytecode"]
    print(f"bytecode saves {saved:.0f} ms ({saved / medians['sources only']:.0%}) of every cold start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
