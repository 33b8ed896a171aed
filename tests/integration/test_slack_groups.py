"""Approver groups: their members are asked of Slack's Web API (a local server speaking it) with
the bot token from Secrets Manager (moto), and cached."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from chalicelib.notifiers import slack_interactivity

pytestmark = pytest.mark.integration
TOKEN = "xoxb-test-token"


@pytest.fixture
def slack_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    asked: list[dict[str, Any]] = []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            asked.append({"path": self.path, "auth": self.headers.get("Authorization"), **form})
            users = ["U777MEMBER", "U778MEMBER"] if form.get("usergroup") == "S0ONCALL" else []
            body = json.dumps({"ok": True, "users": users}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/", asked
    server.shutdown()
    server.server_close()


def test_group_members_come_from_slack_with_the_bot_token_and_are_cached(
    aws_session: Any, slack_api: tuple[str, list[dict[str, Any]]]
) -> None:
    url, asked = slack_api
    aws_session.client("secretsmanager").create_secret(Name="eks-responder/slack-bot", SecretString=TOKEN)
    members = slack_interactivity.group_members("eks-responder/slack-bot", url)
    assert members is not None
    assert members("S0ONCALL") == {"U777MEMBER", "U778MEMBER"}
    assert members("S0ONCALL") == {"U777MEMBER", "U778MEMBER"}
    assert len(asked) == 1  # cached
    assert asked[0]["path"] == "/api/usergroups.users.list"
    assert asked[0]["auth"] == f"Bearer {TOKEN}"
    assert asked[0]["usergroup"] == "S0ONCALL"
