"""`make demo` reads like a story: a short block per event, each note once, a closing summary, no
terminal codes when its output is not a terminal; `DEMO_VERBOSE=1` is where the details are."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
MAX_LINES = 200


def test_the_demo_is_short_by_default_and_ends_with_its_summary() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEMO_VERBOSE"}
    done = subprocess.run([sys.executable, "-m", "devstack.demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines"
    assert "\033[" not in done.stdout  # not a terminal: no bold
    assert any(line.startswith("  events replayed ") for line in lines[-4:]), lines[-4:]
    assert "slack message:" not in done.stdout  # the rendered messages are for -v
    notes = [line for line in lines if "not enforced in cluster demo" in line]
    assert len(notes) == 1, notes  # said once, however many events said it
    assert "POST /slack/actions HTTP/1.1" not in done.stdout + done.stderr  # no access log
    # One incident to every output, each stand-in checking its format (docs/integrations/).
    outputs = done.stdout.split("==> Outputs:", 1)[1].split("==>", 1)[0]
    for said in ("contained: told 8 outputs; released: told 8 outputs", "PagerDuty: trigger then resolve",
                 "ServiceNow: ticket INC1000001, 2 work notes", "webhook: 2 signed events verified",
                 "Security Hub: workflow NOTIFIED then RESOLVED; GuardDuty: 1 finding archived",
                 "0 request(s) refused"):  # fmt: skip
        assert said in outputs, outputs
