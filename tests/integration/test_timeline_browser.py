"""An incident's timeline (`eks-responder report`), opened in a real headless browser: Debian's
Chromium driven by Playwright. The page renders every step, with no console error, and a
hostile title stays text."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.commands.cli import main
from tests.conftest import EVENTS, ROOT, load_json

pytestmark = pytest.mark.integration
# Chromium's background services try the network at start; this machine has none to give them.
QUIET = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
HOSTILE_TITLE = '<script>console.error("PWNED")</script><img src=x onerror="console.error(1)">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: `make browser` (part of `make test`) installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=QUIET)
        yield launched
        launched.close()


def _timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, dict[str, Any]]:
    """Replay a finding with the audit trail on (as `replay -v` writes it), then report it."""
    event = load_json(EVENTS / "guardduty" / "execution-runtime-reverse-shell.json")
    event["detail"]["title"] = HOSTILE_TITLE
    (tmp_path / "event.json").write_text(json.dumps(event))
    capsys.readouterr()
    main(["replay", "-v", "--json", str(tmp_path / "event.json")])
    captured = capsys.readouterr()
    result = json.loads(captured.out.splitlines()[0])
    (tmp_path / "audit.jsonl").write_text(captured.err)
    page = tmp_path / "timeline.html"
    code = main(["report", result["incident"]["id"], "--from", str(tmp_path / "audit.jsonl"), "--output", str(page)])
    assert code == 0
    return page, result


def test_the_timeline_renders_every_step_without_errors(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page_file, result = _timeline(tmp_path, capsys)
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_file.as_uri())
    assert page.title() == f"Incident {result['incident']['id']}"
    rows = page.locator("tr.step")
    assert rows.count() == len(result["actions"]) + 1  # every step, and the finding's own time
    shown = rows.all_inner_texts()
    for action in result["actions"]:
        assert any(action["action"] in row and action["status"] in row for row in shown), action["action"]
    assert page.locator("svg.chart circle").count() == len(result["actions"])
    # Read first: the summary (a plan contains nothing), the legend of the colours, full action names.
    assert page.locator("section.summary").inner_text().startswith("Not contained")
    assert "planned" in page.locator("p.legend").inner_text()
    labels = page.locator("svg.chart text").all_text_contents()
    assert "eks:delete-pod-identity-association" in labels  # never cut
    assert any("payments/web-5d9c7b8f6-x7k2p" in label for label in labels)  # the targets are on the chart
    assert page.locator("script").count() == 0  # the hostile title is text
    assert HOSTILE_TITLE in page.locator("dl").inner_text()
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    shots = ROOT / ".site-shots"  # beside the docs pages' (tests/integration/test_docs_browser.py)
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "timeline.png"), full_page=True)
    page.close()


def test_the_markdown_form_is_one_table_row_per_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, result = _timeline(tmp_path, capsys)
    capsys.readouterr()
    main(["report", result["incident"]["id"], "--from", str(tmp_path / "audit.jsonl"), "--format", "markdown"])
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(result["actions"]) + 1
    assert "&lt;script&gt;" in text  # text in a ticket: ticket systems render some HTML
    assert "<script>" not in text


def test_by_default_the_audit_trail_is_read_from_the_functions_log_groups(
    aws_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    _, result = _timeline(tmp_path, capsys)
    logs = aws_session.client("logs")
    group = "/aws/lambda/eks-responder-test-on_guardduty_finding"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/12/01/[$LATEST]abc")
    now = int(time.time() * 1000)
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    other = json.dumps({"message": "incident", "incident_id": "someone-else"})
    logs.put_log_events(logGroupName=group, logStreamName="2026/12/01/[$LATEST]abc",
                        logEvents=[{"timestamp": now, "message": line} for line in [*lines, other]])  # fmt: skip
    monkeypatch.setenv("STAGE", "test")
    page = tmp_path / "from-logs.md"
    capsys.readouterr()
    code = main(["report", result["incident"]["id"], "--format", "markdown", "--output", str(page)])
    assert code == 0, capsys.readouterr()
    rows = [line for line in page.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(result["actions"]) + 1
    assert main(["report", "no-such-incident", "--format", "markdown"]) == 2  # not found: said, not a blank page
    assert "no record of incident no-such-incident" in capsys.readouterr().err
