"""The demo's second part: a step that waits for a human, approved through the local HTTP route
with a request signed as Slack signs it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from devstack import narrate, stack

ROOT = Path(__file__).resolve().parents[1]
TABLE = "eks-responder-demo-incidents"
SECRET_NAME = "eks-responder/slack-signing"
SIGNING_SECRET = "demo-signing-secret-0123456789abcdef"
APPROVER = "U0DEMOAPPROVER"
POD = "checkout-6b7f9c4d8-q2w3e"
EVENT = ROOT / "events" / "guardduty" / "execution-runtime-reverse-shell.json"


_say = narrate.say


def _prepare(env: dict[str, str], client: Any) -> tuple[Path, dict[str, str]]:
    """The table, the signing secret, a rules file whose isolation waits, and a pod to isolate."""
    import boto3
    from lightkube.codecs import from_dict

    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )  # fmt: skip
    endpoint = env["AWS_ENDPOINT_URL"]
    session.client("dynamodb", endpoint_url=endpoint).create_table(
        TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    session.client("secretsmanager", endpoint_url=endpoint).create_secret(Name=SECRET_NAME, SecretString=SIGNING_SECRET)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": POD, "namespace": "payments", "labels": {"app": "checkout"}},
           "spec": {"containers": [{"name": "main", "image": "public.ecr.aws/docker/library/python:3"}]}}  # fmt: skip
    client.create(from_dict(pod))
    folder = stack.scratch("approval")
    rules = folder / "rules.yaml"
    steps = [{"action": "k8s:label-pod"}, {"action": "k8s:capture-pod"},
             {"action": "k8s:isolate-pod", "approval": "required"}]  # fmt: skip
    rules.write_text(yaml.safe_dump({"version": 1, "rules": [
        {"name": "runtime-with-approval", "match": {"sources": ["guardduty"]}, "actions": steps}]}))  # fmt: skip
    event = json.loads(EVENT.read_text())
    event["id"] = "demo-approval-0001"
    event["detail"]["id"] = "aa58ba0fda05c4a3253c92dd408cff48"
    event["detail"]["title"] = f"A process in pod payments/{POD} opened a reverse shell."
    workload = event["detail"]["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]
    workload["name"], workload["uid"] = POD, "8e2f7c10-2222-4333-8444-aa5ef534a5e7"
    (folder / "event.json").write_text(json.dumps(event))
    staged = {**env, "INCIDENTS_TABLE": TABLE, "SLACK_SIGNING_SECRET": SECRET_NAME, "APPROVERS": APPROVER,
              "RULES_FILE": str(rules)}  # fmt: skip
    return folder, staged


def _state(client: Any) -> str:
    from lightkube.resources.core_v1 import Pod
    from lightkube.resources.networking_v1 import NetworkPolicy

    labels = client.get(Pod, POD, namespace="payments").metadata.labels or {}
    marks = sorted(k for k in labels if k.startswith("eks-responder.io/"))
    policies = [p.metadata.name for p in client.list(NetworkPolicy, namespace="payments")]
    quarantined = labels.get("eks-responder.io/quarantine") == "true" and "eks-responder-quarantine" in policies
    isolated = "isolated (the deny-all NetworkPolicy selects it)" if quarantined else "not isolated"
    return f"pod payments/{POD}: {', '.join(marks) or 'no marks'}; {isolated}"


def _button_value(staged: dict[str, str], incident_id: str) -> str:
    """The Approve button's value, as the message carried it: bound to the revision of the stored plan."""
    import boto3

    from chalicelib.executors.plans import PlanStore
    from chalicelib.notifiers.slack_message import action_value
    from chalicelib.response.plan import Plan

    dynamodb = boto3.client("dynamodb", endpoint_url=staged["AWS_ENDPOINT_URL"],
                            region_name=staged.get("AWS_DEFAULT_REGION", "us-east-1"),
                            aws_access_key_id=staged["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=staged["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    stored = PlanStore(TABLE, dynamodb, Plan.from_dict).get(incident_id)
    return action_value(incident_id, None, stored[0].revision if stored else "")


def _signed_click(value: str) -> tuple[dict[str, str], bytes]:
    payload = {"type": "block_actions", "user": {"id": APPROVER},
               "actions": [{"action_id": "approve", "value": value}]}  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}",
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    return headers, body


def run(env: dict[str, str], client: Any) -> int:
    _say("Approval: the same kind of finding, with a rule whose isolation waits for a human")
    folder, staged = _prepare(env, client)
    print(f"  before: {_state(client)}")
    shown = ["--show-messages"] if narrate.VERBOSE else []
    cmd = [sys.executable, "-m", "chalicelib.commands.cli", "replay", "--live", "--apply", *shown, "-v", str(folder)]
    audit = folder / "audit.jsonl"  # the trail of this incident: replay, then release (the approval is in the table)
    with audit.open("w") as trail:
        code = subprocess.run(cmd, env=staged, check=False, stderr=trail).returncode
    print(f"  waiting: {_state(client)}")
    _say("Approving through the local HTTP route (Chalice's server on loopback), signed as Slack signs it")
    os.environ.update({**staged, "POWERTOOLS_LOG_LEVEL": "WARNING"})  # the route's JSON logs would drown the story
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, LocalDevServer

    from chalicelib.entry import wiring

    wiring.reset()
    import app

    local = LocalDevServer(app.app, Config.create(chalice_app=app.app, app_name="eks-responder"), "127.0.0.1", 0)
    if not narrate.VERBOSE:  # its access log, one line per request, is no part of the story
        ChaliceRequestHandler.log_message = lambda *_: None
    threading.Thread(target=local.server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{local.server.server_address[1]}/slack/actions"
    incident_id = "aa58ba0fda05c4a3253c92dd408cff48"  # the finding id
    headers, body = _signed_click(_button_value(staged, incident_id))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        said = json.loads(answer.read())
    print(f"  POST {url} -> {answer.status}")
    for line in said["text"].splitlines():
        print(f"  slack (to the clicker): {line}")
    print(f"  after: {_state(client)}")
    local.server.shutdown()
    local.server.server_close()
    _say("Release: undo every step of that incident from the prior state each recorded")
    release = [sys.executable, "-m", "chalicelib.commands.cli", "release", incident_id, "--as", "demo", "-v"]
    with audit.open("a") as trail:
        code = subprocess.run(release, env=staged, check=False, stderr=trail).returncode or code
    print(f"  released: {_state(client)}")
    return _timeline(staged, incident_id, audit) or code


def _timeline(staged: dict[str, str], incident_id: str, audit: Path) -> int:
    """The incident's timeline from its trail and the table: the approval, the run and the release."""
    page = ROOT / ".demo" / f"timeline-{incident_id}.html"
    page.parent.mkdir(exist_ok=True)
    base = [sys.executable, "-m", "chalicelib.commands.cli", "report", incident_id, "--from", str(audit)]
    written = subprocess.run([*base, "--output", str(page)], env=staged, check=False, capture_output=True, text=True)
    rows = subprocess.run([*base, "--format", "markdown"], env=staged, check=False, capture_output=True, text=True)
    _say(f"Timeline of the approved incident: {page.relative_to(ROOT)}")
    for line in rows.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # cells hold escaped pipes
        if len(cells) > 4 and cells[1] in ("decision", "execution", "release"):
            print(f"  {cells[0]}  {cells[1]:<9}  {cells[4]:<17} {cells[2]} by {cells[-1] or 'the responder'}")
    return written.returncode or rows.returncode
