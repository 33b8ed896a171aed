"""Messages: what Slack and SNS receive for an incident."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.notifiers import slack_message, sns
from chalicelib.notifiers.base import notify
from chalicelib.policy.loader import load_rules
from chalicelib.response.execute import Responder
from chalicelib.response.report import Mode
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from chalicelib.sources import guardduty
from tests.conftest import load_event

RULES = load_rules(DEFAULT_RULES_FILE)


def _report(name: str = "execution-runtime-reverse-shell", mode: Mode = Mode.PLAN, **detail: Any) -> dict[str, Any]:
    event = load_event(name)
    event["detail"].update(detail)
    incident = guardduty.to_incident(event)
    return Responder(RULES, Settings()).handle(incident, mode).to_dict()


def _all_text(message: dict[str, Any]) -> str:
    return json.dumps(message)


def test_message_says_what_was_found_and_done() -> None:
    message = slack_message.build(_report())
    blocks = message["attachments"][0]["blocks"]
    assert blocks[0]["text"]["text"] == "HIGH Execution:Runtime/ReverseShell"
    assert message["attachments"][0]["color"] == slack_message.SEVERITY_STYLE["high"][0]
    text = _all_text(message)
    for expected in (
        "*Cluster*\\n`demo`",
        "payments/web-5d9c7b8f6-x7k2p",
        "k8s:isolate-pod",
        "i-cd9226b0ed9ce5ec6",
        "fId=",
    ):
        assert expected in text, expected
    assert message["text"].startswith("DRY-RUN: nothing was changed.")


def test_control_sequences_from_the_event_are_shown_as_text() -> None:
    hostile = "<!channel> <@U024BE7LH> <https://evil.example|click me> & <!here>"
    message = slack_message.build(_report(title=hostile))
    text = _all_text(message)
    assert "<!channel>" not in text
    assert "<@U024BE7LH>" not in text
    assert "<https://evil.example" not in text
    assert "&lt;!channel&gt; &lt;@U024BE7LH&gt; &lt;https://evil.example|click me&gt; &amp; &lt;!here&gt;" in text


def test_long_values_are_cut_to_slacks_limits() -> None:
    message = slack_message.build(_report(title="x" * 10_000, type="Execution:Runtime/" + "Y" * 500))
    blocks = message["attachments"][0]["blocks"]
    assert len(blocks[0]["text"]["text"]) <= slack_message.HEADER_LIMIT
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= slack_message.TEXT_LIMIT
        for field in block.get("fields", []):
            assert len(field["text"]) <= slack_message.FIELD_LIMIT
    assert len(blocks) <= 50


def test_the_account_is_named_with_its_alias_when_known() -> None:
    report = _report()
    assert "*Account*\\n`123456789012`" in _all_text(slack_message.build(report))
    report["account_alias"] = "payments-prod"
    assert "*Account*\\n`123456789012 (payments-prod)`" in _all_text(slack_message.build(report))


def test_a_live_change_has_no_dry_run_marker() -> None:
    report = _report()
    report["mode"] = "live"
    report["actions"][0]["status"] = "succeeded"
    assert "DRY-RUN" not in _all_text(slack_message.build(report))


def test_sns_subject_and_filterable_attributes() -> None:
    report = _report(title="multi\nline")
    assert sns.subject(report) == "[DRY-RUN] [HIGH] Execution:Runtime/ReverseShell demo"
    assert sns.attributes(report) == {
        "severity": {"DataType": "String", "StringValue": "high"},
        "source": {"DataType": "String", "StringValue": "guardduty"},
        "cluster": {"DataType": "String", "StringValue": "demo"},
        "account": {"DataType": "String", "StringValue": "123456789012"},
        "dry_run": {"DataType": "String", "StringValue": "true"},
    }
    long = _report(type="Execution:Runtime/" + "Z" * 200)
    assert len(sns.subject(long)) <= sns.SUBJECT_LIMIT


def test_rejected_events_are_told_with_their_id() -> None:
    message = slack_message.build({"event_id": "e-1", "error": "not JSON <here>"})
    assert "Rejected event `e-1`" in message["text"]
    assert "&lt;here&gt;" in message["text"]
    assert sns.subject({"event_id": "e-1", "error": "x"}) == "[REJECTED EVENT] e-1"


class _Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def send(self, report: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("down")


@pytest.mark.parametrize(("failures", "delivered", "calls"), [(0, True, 1), (1, True, 2), (5, False, 2)])
def test_a_failed_notifier_is_retried_once_then_reported(failures: int, delivered: bool, calls: int) -> None:
    flaky = _Flaky(failures)
    (delivery,) = notify(_report(), [flaky])
    assert delivery.delivered is delivered
    assert flaky.calls == calls
    if not delivered:
        assert delivery.error == "ConnectionError: down"


def _image_report(**detail: Any) -> dict[str, Any]:
    from chalicelib.sources import ecr
    from tests.conftest import SAMPLES, load_json

    event = load_json(SAMPLES / "ecr" / "Inspector2_Finding_ECR_PACKAGE_VULNERABILITY.2024-doc.json")
    event["detail"].update(detail)
    report = Responder(RULES, Settings()).handle(ecr.to_incident(event), Mode.PLAN).to_dict()
    report["notes"] = ["prod: 2 pod(s) run sha256:abc: payments/api-1 (ReplicaSet/api), web/api-2 (ReplicaSet/api)"]
    return report


def test_an_image_message_names_the_cve_its_fix_and_the_running_pods() -> None:
    text = _all_text(slack_message.build(_image_report()))
    for expected in (
        "*Vulnerability*\\n`CVE-2024-6119`, fix `yes`, exploit `no`",
        "<https://nvd.nist.gov/vuln/detail/CVE-2024-6119|CVE-2024-6119 at NVD>",
        "prod: 2 pod(s) run sha256:abc: payments/api-1 (ReplicaSet/api), web/api-2 (ReplicaSet/api)",
        "inspector/v2/home",
    ):
        assert expected in text, expected


def test_a_malformed_cve_id_is_shown_but_never_linked() -> None:
    details = {"vulnerabilityId": "CVE-1|<https://evil.example>", "vulnerablePackages": []}
    text = _all_text(slack_message.build(_image_report(packageVulnerabilityDetails=details)))
    assert "nvd.nist.gov" not in text
    assert "<https://evil.example>" not in text


def test_the_webhook_url_never_reaches_a_log_line_even_at_debug(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging
    import socket

    from chalicelib.notifiers.base import notify
    from chalicelib.notifiers.slack import SlackNotifier

    with socket.socket() as closed:  # a port nobody listens on: the connection fails, slack_sdk retries
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    secret = "T0SECRET/B0SECRET/XXXXXXXXXXXXXXXXXXXXXXXX"
    url = f"http://127.0.0.1:{port}/services/{secret}"
    with caplog.at_level(logging.DEBUG):
        (delivery,) = notify(_report(), [SlackNotifier(lambda: url)])
    assert delivery.delivered is False
    assert secret not in (delivery.error or "")
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    out, err = capsys.readouterr()
    assert secret not in logged
    assert secret not in out + err
    assert "notifier failed" in logged


def test_a_sensitive_file_finding_says_which_file_and_how() -> None:
    text = _all_text(slack_message.build(_report("persistence-runtime-sensitive-file-modified")))
    assert "*File*\\n`Write /etc/cron.d/refresh`" in text
    assert "*Process*\\n`/bin/sh`" in text


def test_a_webhook_error_that_echoes_the_request_path_is_stored_without_the_secret() -> None:
    """Slack's (or a proxy's) error page may echo /services/T…/B…/<token>: the failure that is
    kept and logged says what happened, never the token."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from chalicelib.notifiers.base import notify
    from chalicelib.notifiers.slack import SlackNotifier

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = f"no_service: no such hook {self.path} (services{self.path.removeprefix('/services')})".encode()
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = "T0AAAAAAA/B0BBBBBBB/XyZsecretTokenValue123"
    url = f"http://127.0.0.1:{server.server_address[1]}/services/{token}"
    try:
        (delivery,) = notify({"event_id": "e-1", "error": "x"}, [SlackNotifier(lambda: url)])
    finally:
        server.shutdown()
        server.server_close()
    assert not delivery.delivered
    assert delivery.error is not None
    assert "404" in delivery.error
    for secret in ("XyZsecretTokenValue123", "T0AAAAAAA", "B0BBBBBBB", token):
        assert secret not in delivery.error, delivery.error
