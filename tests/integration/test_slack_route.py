"""Slack's clicks through a real HTTP server (Chalice's local server on loopback) to the cluster:
the stored plan is approved by a signed request and carried out; anything else changes nothing."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.resources.core_v1 import Pod
from lightkube.resources.networking_v1 import NetworkPolicy

from chalicelib.entry import wiring
from chalicelib.incident import Severity
from chalicelib.notifiers import slack_message
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, create_incidents_table, incident
from tests.unit.test_slack_interactivity import SECRET, click, signed

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"
APPROVER = "U024BE7LH"


@pytest.fixture
def stage(local_stack: Any, aws_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stage as `chalice deploy` would run it: the table, the signing secret, approvers, live."""
    create_incidents_table(aws_session, TABLE)
    aws_session.client("secretsmanager").create_secret(Name="eks-responder/slack-signing", SecretString=SECRET)
    rules = tmp_path / "rules.yaml"
    steps = [{"action": "k8s:label-pod"}, {"action": "k8s:isolate-pod", "approval": "required"}]
    rules.write_text(yaml.safe_dump({"version": 1, "rules": [{"name": "isolate-with-approval", "actions": steps}]}))
    for key, value in {
        "INCIDENTS_TABLE": TABLE, "SLACK_SIGNING_SECRET": "eks-responder/slack-signing", "APPROVERS": APPROVER,
        "KUBECONFIG": str(local_stack.responder_kubeconfig), "DRY_RUN": "false", "RULES_FILE": str(rules),
        "EVIDENCE_DIR": str(tmp_path / "evidence"),
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    wiring.reset()
    yield
    wiring.reset()


@pytest.fixture
def server(stage: None) -> Iterator[str]:
    from chalice.config import Config
    from chalice.local import LocalDevServer

    import app

    config = Config.create(chalice_app=app.app, app_name="eks-responder", chalice_stage="dev")
    local = LocalDevServer(app.app, config, "127.0.0.1", 0)
    thread = threading.Thread(target=local.server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{local.server.server_address[1]}/slack/actions"
    local.server.shutdown()
    local.server.server_close()


def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(url, data=body, method="POST", headers=form)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _isolated(admin: Client, namespace: str) -> bool:
    labels = admin.get(Pod, "web", namespace=namespace).metadata.labels or {}
    return any(k.startswith("eks-responder.io/quarantine") for k in labels) and bool(
        list(admin.list(NetworkPolicy, namespace=namespace))
    )


def test_a_signed_click_by_an_approver_isolates_the_pod_and_nothing_else_does(
    server: str, cluster: Cluster, admin: Client
) -> None:
    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    report = wiring.responder().handle(incident(namespace=cluster.namespace, pods=("web",)), Mode.LIVE)
    assert [a.status.value for a in report.actions] == ["succeeded", "awaiting-approval"]
    # The value the message's "Approve" button carries: the incident, every step, the plan's revision.
    (buttons,) = [
        b for b in slack_message.build(report.to_dict())["attachments"][0]["blocks"] if b["type"] == "actions"
    ]
    value = next(e["value"] for e in buttons["elements"] if e["action_id"] == "approve")
    assert value.startswith(f"{report.incident.id}|*|")

    # refused: another secret, a replay older than five minutes, someone not on the approvers list
    assert post(server, *signed(click("approve", value), secret="wrong"))[0] == 401
    import time

    assert post(server, *signed(click("approve", value), at=time.time() - 600))[0] == 401
    status, answer = post(server, *signed(click("approve", value, user="U999OTHER")))
    assert status == 200
    assert "not on the approvers list" in answer["text"]
    assert not _isolated(admin, cluster.namespace)

    # the approver's click: carried out, and said to the clicker
    status, answer = post(server, *signed(click("approve", value)))
    assert status == 200
    assert f"approved by slack:{APPROVER}" in answer["text"]
    assert "succeeded: `k8s:isolate-pod`" in answer["text"]
    assert _isolated(admin, cluster.namespace)

    # a double click changes nothing
    status, answer = post(server, *signed(click("approve", value)))
    assert (
        f"nothing changed: step 2 (k8s:isolate-pod on {cluster.namespace}/web) done by slack:{APPROVER}"
        in answer["text"]
    )

    # an approver's Release click: recorded, then undone by the owning function (here, in process)
    status, answer = post(server, *signed(click("release", value)))
    assert status == 200
    assert f"release requested by slack:{APPROVER}" in answer["text"]
    assert not _isolated(admin, cluster.namespace)
    assert "eks-responder.io/under-investigation" not in (
        admin.get(Pod, "web", namespace=cluster.namespace).metadata.labels or {}
    )


def test_a_button_of_a_replaced_plan_is_refused_with_the_current_plan(
    server: str, cluster: Cluster, admin: Client
) -> None:
    """A more severe occurrence replaces the plan: "Approve step 2" of the old message must not
    approve whatever step 2 is now. The click is refused, and the current plan is shown."""
    from dataclasses import replace

    cluster.node("node-a", "i-0aaa")
    cluster.pod("web", "node-a")
    found = incident(namespace=cluster.namespace, pods=("web",))
    first = wiring.responder().handle(found, Mode.LIVE)
    (buttons,) = [b for b in slack_message.build(first.to_dict())["attachments"][0]["blocks"] if b["type"] == "actions"]
    old = next(e["value"] for e in buttons["elements"] if e["action_id"] == "approve-step-2")
    # The same finding, more severe: re-evaluated, its plan replaced (made again, a new revision).
    again = wiring.responder().handle(replace(found, severity=Severity.CRITICAL, score=9.5), Mode.LIVE)
    assert again.plan is not None
    assert again.plan.revision != old.rsplit("|", 1)[1]
    status, answer = post(server, *signed(click("approve-step-2", old)))
    assert status == 200
    assert "Nothing was approved: this message shows an older plan" in answer["text"]
    assert "The current plan: step 1" in answer["text"]
    assert not _isolated(admin, cluster.namespace)
