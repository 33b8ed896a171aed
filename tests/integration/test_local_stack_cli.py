"""`make stack` as its output tells a user to use it: start and seed, replay one event with
`--apply`, read its timeline, release it, stop, with nothing left behind."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Pod

from chalicelib.interfaces import QUARANTINE_LABEL
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
EXAMPLE = "events/guardduty/execution-runtime-reverse-shell.json"
POD = ("payments", "web-5d9c7b8f6-x7k2p")  # what the example names, as the seed makes it


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip


def _exported(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        found[key] = shlex.split(value)[0] if value else ""
    return found


def _quarantined(workdir: Path) -> bool:
    with Client(KubeConfig.from_file(workdir / "admin.kubeconfig"), field_manager="tests") as admin:
        labels = admin.get(Pod, POD[1], namespace=POD[0]).metadata.labels or {}
    return labels.get(QUARANTINE_LABEL) == "true"


def test_the_stack_stays_up_for_replay_report_and_release_then_stops_clean(tmp_path: Path) -> None:
    workdir = tmp_path / "stack"
    started = _run("-m", "devstack.running", "up", "--workdir", str(workdir))
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        assert f"source {workdir}/env.sh" in started.stdout
        state = json.loads((workdir / "state.json").read_text())
        env = _exported(workdir / "env.sh")
        assert env["KUBECONFIG"] == str(workdir / "responder.kubeconfig")

        replayed = _run("-m", "chalicelib.commands.cli", "replay", "--apply", "--json", "-v", EXAMPLE, env=env)
        assert replayed.returncode == 0, replayed.stderr[-2000:]
        (workdir / "audit.jsonl").write_text(replayed.stderr)
        report = json.loads(replayed.stdout.splitlines()[0])
        assert report["rule"] == "compromised-pod"
        assert _quarantined(workdir)

        incident = report["incident"]["id"]
        timeline = _run("-m", "chalicelib.commands.cli", "report", incident, "--from", str(workdir / "audit.jsonl"),
                        "--format", "markdown", env=env)  # fmt: skip
        assert timeline.returncode == 0, timeline.stderr[-2000:]
        assert "k8s:isolate-pod" in timeline.stdout

        waiting = [a["step"] for a in report["actions"] if a["status"] == "awaiting-approval"]
        assert waiting, report["actions"]  # the playbook keeps the pod's role for a human
        approved = _run("-m", "chalicelib.commands.cli", "approve", incident, "--step", str(waiting[0]),
                        "--as", "tests", "--json", env=env)  # fmt: skip
        assert approved.returncode == 0, approved.stdout[-2000:] + approved.stderr[-2000:]
        assert "approved" in approved.stdout

        checked = _run("-m", "chalicelib.commands.cli", "doctor", env=env).stdout
        for line in ("ok   incident table: eks-responder-local-incidents (ACTIVE)", "ok   mode: stage local acts",
                     "ok   cluster demo: every permission of the generated ClusterRole"):  # fmt: skip
            assert line in checked, checked
        # What a laptop lacks, said as such: the bucket's Object Lock, the deployed functions' delivery.
        assert [line.split(":")[0] for line in checked.splitlines() if line.startswith("FAIL")] == [
            "FAIL evidence bucket",
            "FAIL delivery",
        ]

        released = _run("-m", "chalicelib.commands.cli", "release", incident, "--json", "--as", "tests", env=env)
        assert released.returncode == 0, released.stderr[-2000:]
        assert not _quarantined(workdir)
    finally:
        stopped = _run("-m", "devstack.running", "down", "--workdir", str(workdir))
    assert stopped.returncode == 0, stopped.stderr
    assert not workdir.exists()
    for pid in state["pids"].values():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
