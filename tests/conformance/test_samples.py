"""A sample corpus, replayed offline: `make conformance` (the licensed corpus in tests/samples) or
`make conformance SAMPLES=DIR` (a folder of public samples, some under licences that do not allow
copying them here). Every file must give one JSON object per event, never a crash; every
GuardDuty, KMS and image sample must be understood and decided by a rule; every flow-log file must
be read record by record in its own layout (its header line, or the format beside it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from chalicelib.commands.cli import main

pytestmark = pytest.mark.conformance


def _corpus() -> Path:
    given = os.environ.get("SAMPLES_DIR")
    if not given or not Path(given).is_dir():
        pytest.fail("set SAMPLES_DIR (make conformance SAMPLES=DIR) to a folder of sample events")
    return Path(given)


def _replay(capsys: pytest.CaptureFixture[str], folder: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["replay", "--json", *extra, str(folder)])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("source", ["guardduty", "kms", "ecr"])
def test_every_sample_is_understood_and_decided(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _corpus() / source
    files = sorted(folder.rglob("*.json"))
    assert files, f"no samples in {folder}"
    code, results = _replay(capsys, folder)
    assert {r["event"].split("#")[0] for r in results} == {str(f) for f in files}
    errors = [r for r in results if "error" in r]
    assert not errors, errors
    assert all(r.get("rule") or r.get("reason") for r in results)
    assert code == 0


def test_every_flow_log_sample_gives_one_object_per_input(capsys: pytest.CaptureFixture[str]) -> None:
    folder = _corpus() / "flowlogs"
    code, results = _replay(capsys, folder)
    assert results
    assert code in {0, 2}  # generic payloads that are not flow logs are told as errors, never crash
    assert all("event" in r for r in results)


def _records(path: Path) -> int:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return len(lines) - (1 if "with-header" in path.name else 0)


def test_every_flow_log_file_is_read_in_its_own_layout(capsys: pytest.CaptureFixture[str]) -> None:
    logs = sorted(p for p in (_corpus() / "flowlogs").rglob("*.log"))
    assert logs, "no flow-log files"
    for log in logs:
        layout = log.parent / log.name.replace(".with-header-line", "").replace(".log", ".format.txt")
        extra = ("--flow-format", str(layout)) if layout.is_file() and "with-header" not in log.name else ()
        code, results = _replay(capsys, log, *extra)
        delivery = results[0]["delivery"]
        assert delivery["error"] is None, (log, delivery)
        assert delivery["malformed"] == 0, (log, delivery)
        assert delivery["records"] == _records(log), (log, delivery)
        assert code == 0
