"""The demo's Security Hub step: a finding and Security Hub's copy of it are one incident."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from devstack import approval_demo, narrate, stack

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "events" / "guardduty" / "execution-runtime-reverse-shell.json"
COPY = ROOT / "events" / "securityhub" / "asff-copy-of-execution-runtime-reverse-shell.json"


def run(env: dict[str, str]) -> int:
    narrate.say("Security Hub: the native finding, then Security Hub's copy of it (ASFF), with the incident table")
    folder = stack.scratch("securityhub")
    shutil.copy(NATIVE, folder / "1-native.json")
    shutil.copy(COPY, folder / "2-security-hub-copy.json")
    staged = {**env, "INCIDENTS_TABLE": approval_demo.TABLE}
    cmd = [sys.executable, "-m", "chalicelib.commands.cli", "replay", "--live", "--apply", "--json", str(folder)]
    done = subprocess.run(cmd, env=staged, check=False, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        result = json.loads(line) if line.startswith("{") else None
        if result is None:
            continue
        name = Path(str(result.get("event"))).name
        if "error" in result:
            print(f"  {name}: {result['error']}")
        elif result.get("duplicate"):
            print(f"  {name}: duplicate of incident {result['incident_id']}: {result['reason']}")
        elif "incident" in result:
            acted = ", ".join(f"{a['action']} {a['status']}" for a in result.get("actions", []))
            print(f"  {name}: incident {result['incident']['id']} ({result['incident']['source']}), {acted}")
    if done.returncode:
        sys.stderr.write(done.stderr[-2000:])
    return done.returncode
