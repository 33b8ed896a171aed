"""Delivery drills on the local stack: what happens to findings when the function crashes, the API
server goes down or throttles, and the tables are lost. Each delivery goes through the function's
handler as Lambda invokes it; Lambda's retries (1 and 3 minutes later) move the clock instead of
waiting, and an event out of retries goes where the deployed on-failure destination sends it: the
failure queue.

- kills: one finding per step boundary, the process SIGKILLed there, then delivered again;
- API server down: a burst of findings from concurrent containers, the API server killed for 15 s
  once a third of them are handled;
- throttled: the same burst against an API server started with `--max-requests-inflight=1`;
- tables lost: node findings under a cap of 3 cordons an hour, the table restored empty halfway,
  then the rest and a copy of each handled finding.

    make bench          # or: .venv/bin/python bench/drills.py [--findings 48] [--workers 8] [--only tables]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import goals

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack import drills, seed, stack  # noqa: E402 - the project's own packages, from its root

NODE_EVENT = ROOT / "events" / "guardduty" / "privilege-escalation-runtime-runc-container-escape-node.json"
TABLE = "eks-responder-drills"
QUARANTINE = "eks-responder.io/quarantine"
RETRIES = (timedelta(minutes=1), timedelta(minutes=3))  # Lambda's two retries of an asynchronous event
NODE_RULES = """
version: 1
rules:
  - name: compromised-node
    match: {resource_kinds: [node], min_severity: medium, clusters: ["*"], finding_types: ["*:Runtime/*"]}
    actions:
      - action: k8s:label-node
      - action: k8s:cordon-node
"""


class Lines(logging.Handler):
    """This process's audit lines, as dicts."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append({**record.__dict__, "message": record.getMessage()})


@dataclass
class Burst:
    findings: int = 0
    first_failed: int = 0  # deliveries Lambda saw fail the first time (to be delivered again)
    retried: int = 0
    parked: list[str] = field(default_factory=list)  # event ids in the failure queue after the retries
    returned_errors: list[str] = field(default_factory=list)  # an error returned as a success: never retried
    why: dict[str, str] = field(default_factory=dict)  # event id -> why its last delivery failed
    duplicates: int = 0  # deliveries answered as repeats of a handled finding


# --- containers: processes that each import the app once and handle what they are given ---


def _container(env: dict[str, str]) -> None:
    os.environ.update(env)
    import app  # noqa: F401 - the cold start, once per container

    logging.getLogger("eks_responder").setLevel(logging.CRITICAL)  # the drill reads the cluster and the tables


def _invoke(event: dict[str, Any], shift_seconds: float) -> dict[str, Any]:
    """One invocation in a container, the clock moved by `shift_seconds` (a retry's delay)."""
    import time_machine

    from chalicelib.entry import wiring

    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=shift_seconds), tick=True):
        wiring.reset()
        try:
            result = drills.deliver(event)
        except Exception as exc:  # noqa: BLE001 - a failed invocation, as Lambda sees it
            return {"event_id": event["id"], "failed": f"{type(exc).__name__}: {exc}"[:300]}
    return {"event_id": event["id"], "error": result.get("error"), "duplicate": bool(result.get("duplicate"))}


def _lambda(pool: ProcessPoolExecutor, events: list[dict[str, Any]], during: Any = None) -> Burst:
    """Deliver `events` as Lambda does: all at once, then each failed one again 1 and 3 minutes
    later; out of retries, into the failure queue. `during(done)` is called as deliveries finish."""
    burst = Burst(findings=len(events))
    pending = {e["id"]: e for e in events}
    for attempt, shift in enumerate((timedelta(0), *RETRIES)):
        futures = [pool.submit(_invoke, pending[i], shift.total_seconds()) for i in sorted(pending)]
        failed: dict[str, dict[str, Any]] = {}
        for count, future in enumerate(as_completed(futures), start=1):
            outcome = future.result()
            if outcome.get("failed"):
                failed[outcome["event_id"]] = pending[outcome["event_id"]]
                burst.why[outcome["event_id"]] = outcome["failed"]
            elif outcome.get("error"):
                burst.returned_errors.append(f"{outcome['event_id']}: {outcome['error']}")
            burst.duplicates += int(outcome.get("duplicate", False))
            if during is not None and attempt == 0:
                during(count)
        if during is not None and attempt == 0:
            during(None)  # the first round is over: whatever it started has ended
        if attempt == 0:
            burst.first_failed = len(failed)
        else:
            burst.retried += len(pending)
        pending = failed
        if not pending:
            break
    burst.parked = sorted(pending)
    return burst


# --- the stack and what each phase reads back ---


@contextmanager
def _stage(extra_apiserver_args: tuple[str, ...] = ()) -> Iterator[tuple[stack.LocalStack, dict[str, str], Any]]:
    with stack.start(extra_apiserver_args=extra_apiserver_args) as running:
        seeded = seed.seed(running)
        import boto3

        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="testing",
                                        aws_secret_access_key="testing")  # fmt: skip
        _table(session, running)
        env = {**running.env(), "EVIDENCE_BUCKET": seeded.evidence_bucket, "DRY_RUN": "false", "CLUSTERS": "demo",
               "INCIDENTS_TABLE": TABLE, "SNS_TOPIC_ARN": seeded.topic_arn, "STAGE": "drills"}  # fmt: skip
        yield running, env, (session, seeded)


def _table(session: Any, running: stack.LocalStack) -> None:
    dynamodb = session.client("dynamodb", endpoint_url=running.moto_url)
    dynamodb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")  # fmt: skip


def _records(session: Any, running: stack.LocalStack) -> dict[str, dict[str, Any]]:
    """The incident records (incident id -> item) of the table."""
    dynamodb = session.client("dynamodb", endpoint_url=running.moto_url)
    found: dict[str, dict[str, Any]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            if item["id"]["S"].startswith("incident#"):
                found[item["id"]["S"].removeprefix("incident#")] = item
    return found


def _pods(running: stack.LocalStack, namespace: str, count: int) -> list[str]:
    client = seed.admin_client(running)
    from lightkube.codecs import from_dict

    client.create(from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
    node = client.list(_node_kind()).__iter__().__next__().metadata.name
    names = [f"web-{i:03d}" for i in range(count)]
    for name in names:
        client.create(from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                      "labels": {"app": name}}, "spec": {"nodeName": node, "containers": [{"name": "main",
                      "image": "public.ecr.aws/nginx/nginx:1.27"}]}}))  # fmt: skip
    return names


def _node_kind() -> Any:
    from lightkube.resources.core_v1 import Node

    return Node


def _contained(running: stack.LocalStack, namespace: str) -> set[str]:
    """Pods labelled for quarantine, in a namespace whose deny-all policy selects that label."""
    from lightkube.resources.core_v1 import Pod
    from lightkube.resources.networking_v1 import NetworkPolicy

    client = seed.admin_client(running)
    denied = any((p.spec.podSelector.matchLabels or {}).get(QUARANTINE) == "true"
                 for p in client.list(NetworkPolicy, namespace=namespace) if p.spec and p.spec.podSelector)  # fmt: skip
    return {str(p.metadata.name) for p in client.list(Pod, namespace=namespace)
            if denied and p.metadata and (p.metadata.labels or {}).get(QUARANTINE) == "true"}  # fmt: skip


def _alerts(session: Any, running: stack.LocalStack, queue_url: str) -> list[dict[str, Any]]:
    sqs = session.client("sqs", endpoint_url=running.moto_url)
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            body = json.loads(message["Body"])
            found.append(json.loads(body["Message"]) if "Message" in body and body.get("Type") else body)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


# --- the phases ---


def kills() -> None:
    with _stage() as (running, env, (session, seeded)), tempfile.TemporaryDirectory() as work:
        os.environ.update(env)
        import app  # noqa: F401 - this process is the warm container of the redeliveries

        lines = Lines()
        audit = logging.getLogger("eks_responder")
        for printed in list(audit.handlers):  # read here, not printed
            audit.removeHandler(printed)
        audit.addHandler(lines)
        namespace = "drill-kills"
        boundaries = drills.boundaries(6)
        pods = _pods(running, namespace, len(boundaries))
        _alerts(session, running, seeded.queue_url)
        once = logged_once = told_once = 0
        for pod, boundary in zip(pods, boundaries, strict=True):
            drill = drills.kill_and_redeliver(drills.pod_event(namespace, pod, "kill"), boundary, env, Path(work),
                                              lambda: lines.lines)  # fmt: skip
            incident = next((line["incident_id"] for line in drill.lines if line.get("message") == "action"), "")
            carried, reported = drill.done_by_the_dead()
            once += int(drill.code == drills.KILLED and (boundary in {"recorded", "told"} or carried == reported))
            logged_once += int(
                drill.steps_logged(incident) == list(range(1, 7)) and drill.incident_lines(incident) == 1
            )
            told_once += int(len(_alerts(session, running, seeded.queue_url)) == 1)
        contained = len(_contained(running, namespace))
        n = len(boundaries)
        print(f"kills: {n} findings, each killed at a step boundary ({', '.join(boundaries)}), delivered again 1 and 3 "
              f"minutes later: {contained} contained, {once} with no step done twice, {logged_once} with one audit "
              f"line per step, {told_once} with one message")  # fmt: skip
        goals.record(
            "drill: killed at each step boundary, contained", f"{contained} of {n}", f"{n} of {n}", contained == n
        )
        goals.record("  no step done twice / one line per step / one message", f"{once} / {logged_once} / {told_once}",
                     f"{n} / {n} / {n}", once == logged_once == told_once == n)  # fmt: skip


def _burst(name: str, findings: int, workers: int, extra: tuple[str, ...], outage: bool) -> None:
    with _stage(extra) as (running, env, (session, seeded)):
        tag = name.lower().replace(" ", "-")
        namespace = f"drill-{tag}"
        pods = _pods(running, namespace, findings)
        events = [drills.pod_event(namespace, pod, tag) for pod in pods]
        _alerts(session, running, seeded.queue_url)
        down: dict[str, float] = {}

        def during(done: int | None) -> None:
            if not outage:
                return
            if done is not None and done >= findings // 3 and "at" not in down:
                down["at"] = time.monotonic()
                running.apiserver_down()
                threading.Timer(15.0, running.apiserver_up).start()
            if done is None and "at" in down:  # the retries come a minute later: by then it is back
                while time.monotonic() - down["at"] < 16:
                    time.sleep(0.2)
                _ready(running)

        started = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=_container, initargs=(env,)) as pool:
            burst = _lambda(pool, events, during)
        elapsed = time.perf_counter() - started
        throttled = _answered_429(running)
        contained = _contained(running, namespace)
        records = _records(session, running)
        complete = {i for i, item in records.items() if item.get("complete", {}).get("BOOL", True)}
        by_pod = {e["detail"]["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]["name"]: e["id"]
                  for e in events}  # fmt: skip
        alerts = _alerts(session, running, seeded.queue_url)
        alerted = {str(a.get("event_id")) for a in alerts}
        parked = set(burst.parked)
        lost = [p for p in pods if p not in contained and by_pod[p] not in parked]
        unalerted = [e for e in parked if e not in alerted]
        # An incident recorded as complete whose pod is not contained would be a finding marked handled, and lost.
        incident_of = {i: _pod_of(records[i]) for i in complete}
        false_complete = [i for i, pod in incident_of.items() if pod not in contained]
        print(f"{name}: {findings} findings from {workers} containers, {burst.first_failed} failed the first time, "
              f"{burst.retried} delivered again; {len(contained)} contained, {len(parked)} in the failure queue "
              f"({len(parked) - len(unalerted)} alerted), {len(lost)} lost, {len(false_complete)} recorded complete "
              f"but not contained, {len(burst.returned_errors)} errors returned as success; the API server answered "
              f"{throttled} request(s) with 429; {elapsed:.1f} s")  # fmt: skip
        for error in burst.returned_errors[:3]:
            print(f"  returned: {error}")
        goals.record(f"drill: {name}, contained or in the failure queue",
                     f"{len(contained)} + {len(parked)} of {findings} ({burst.first_failed} retried)",
                     f"{findings}, nothing lost", not lost and not unalerted)  # fmt: skip
        goals.record(f"  {name}: recorded complete but not contained", str(len(false_complete)), "0",
                     not false_complete)  # fmt: skip


def _answered_429(running: stack.LocalStack) -> int:
    """How many requests the API server refused as too many (its own request counter)."""
    import ssl
    import urllib.request

    from devstack.stack import ADMIN_TOKEN

    context = ssl.create_default_context(cafile=str(running.ca_file))
    request = urllib.request.Request(
        f"{running.apiserver_url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        text = response.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("apiserver_request_total{") and 'code="429"' in line)  # fmt: skip


def _pod_of(item: dict[str, Any]) -> str:
    try:
        report = json.loads(item["report"]["S"])
    except (KeyError, ValueError):
        return ""
    pods = report.get("incident", {}).get("pods") or []
    return str(pods[0]).rsplit("/", 1)[-1] if pods else ""


def _ready(running: stack.LocalStack) -> None:
    from devstack.stack import ADMIN_TOKEN, _https_ok

    deadline = time.monotonic() + 60
    while not _https_ok(f"{running.apiserver_url}/readyz", running.ca_file, ADMIN_TOKEN):
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not come back")
        time.sleep(0.2)


def down_past_the_retries(findings: int = 8, workers: int = 4) -> None:
    """The API server down through every retry: each finding ends in the failure queue, alerted,
    and `eks-responder redrive` contains them once the server is back."""
    import subprocess

    with _stage() as (running, env, (session, seeded)):
        namespace = "drill-down-for-good"
        pods = _pods(running, namespace, findings)
        events = [drills.pod_event(namespace, pod, "for-good") for pod in pods]
        sqs = session.client("sqs", endpoint_url=running.moto_url)
        queue = sqs.create_queue(QueueName="eks-responder-drills-failures")["QueueUrl"]
        _alerts(session, running, seeded.queue_url)
        running.apiserver_down()
        try:
            with ProcessPoolExecutor(workers, initializer=_container, initargs=(env,)) as pool:
                burst = _lambda(pool, events)
        finally:
            running.apiserver_up()
        for event_id in burst.parked:  # what the on-failure destination writes, out of retries
            event = next(e for e in events if e["id"] == event_id)
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(_on_failure(event, burst.why[event_id])))
        alerted = {str(a.get("event_id")) for a in _alerts(session, running, seeded.queue_url)}
        command = [sys.executable, "-m", "chalicelib.commands.cli", "redrive", "--local", "--queue-url", queue]
        redrive = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                                 check=False)  # fmt: skip
        contained = _contained(running, namespace)
        left = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
        waiting = int(left["Attributes"]["ApproximateNumberOfMessages"])
        summary = (redrive.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"API server down past the retries: {findings} findings, {len(burst.parked)} in the failure queue after "
              f"3 attempts ({len(set(burst.parked) & alerted)} alerted); server back, redrive: {summary}; "
              f"{len(contained)} contained, {waiting} left in the queue")  # fmt: skip
        told = len(set(burst.parked) & alerted)
        goals.record("drill: down past the retries, parked and alerted", f"{told} of {findings}",
                     f"{findings} of {findings}", told == findings)  # fmt: skip
        goals.record("  then redriven: contained", f"{len(contained)} of {findings}", f"{findings} of {findings}",
                     len(contained) == findings and waiting == 0)  # fmt: skip


def _on_failure(event: dict[str, Any], why: str) -> dict[str, Any]:
    """Lambda's record of an asynchronous invocation out of retries (its on-failure destination's message)."""
    arn = "arn:aws:lambda:us-east-1:123456789012:function:eks-responder-drills-on_guardduty_finding:$LATEST"
    kind, _, message = why.partition(": ")
    return {"version": "1.0", "timestamp": datetime.now(UTC).isoformat(), "requestPayload": event,
            "requestContext": {"requestId": event["id"], "functionArn": arn, "condition": "RetriesExhausted",
                               "approximateInvokeCount": 3},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": kind, "errorMessage": message}}  # fmt: skip


def tables_lost(nodes: int = 10, cap: int = 3) -> None:
    with _stage() as (running, env, (session, _)), tempfile.TemporaryDirectory() as work:
        rules = Path(work) / "rules.yaml"
        rules.write_text(NODE_RULES)
        capped = {**env, "RULES_FILE": str(rules), "MAX_NODES_CORDONED_PER_HOUR": str(cap)}
        client = seed.admin_client(running)
        from lightkube.codecs import from_dict

        names = [f"drill-node-{i:02d}" for i in range(nodes)]
        for i, name in enumerate(names):
            client.create(from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                     "spec": {"providerID": f"aws:///us-east-1a/i-0d{i:015d}"}}))  # fmt: skip
        events = []
        for i in range(nodes):
            event: dict[str, Any] = json.loads(NODE_EVENT.read_text())
            event["id"] = f"lost-{i:02d}-0000-4000-8000-000000000000"
            event["detail"]["id"] = f"tables-lost-{i:02d}"
            event["detail"]["resource"]["instanceDetails"]["instanceId"] = f"i-0d{i:015d}"
            events.append(event)
        half = nodes // 2
        with ProcessPoolExecutor(4, initializer=_container, initargs=(capped,)) as pool:
            first = _lambda(pool, events[:half])
            dynamodb = session.client("dynamodb", endpoint_url=running.moto_url)
            dynamodb.delete_table(TableName=TABLE)  # restored empty (or replaced): no record, no lease
            _table(session, running)
            again = [copy.deepcopy(e) | {"id": e["id"].replace("lost-", "copy-")} for e in events[:half]]
            second = _lambda(pool, [*events[half:], *again])
        cordoned = [n.metadata.name for n in client.list(_node_kind()) if n.metadata.name in names
                    and n.spec and n.spec.unschedulable]  # fmt: skip
        print(f"tables lost: {nodes} node findings under a cap of {cap} cordons an hour; the table restored empty "
              f"after {half}, then the other {nodes - half} and a copy of each handled one: {len(cordoned)} nodes "
              f"cordoned ({', '.join(sorted(cordoned))}); {len(first.parked) + len(second.parked)} in the failure "
              f"queue; {half - second.duplicates} of the {half} copies handled again (exactly-once is kept in "
              "the table: each step found its work done, and the copy was told again)")  # fmt: skip
        for event_id in [*first.parked, *second.parked][:3]:
            print(f"  in the failure queue: {event_id}: {(first.why | second.why)[event_id]}")
        goals.record("drill: tables lost, nodes cordoned in the hour", f"{len(cordoned)} (cap {cap})", f"<= {cap}",
                     len(cordoned) <= cap)  # fmt: skip


PHASES = ("kills", "down", "throttled", "redrive", "tables")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--findings", type=int, default=48, help="findings in each burst")
    parser.add_argument("--workers", type=int, default=8, help="concurrent containers in each burst")
    parser.add_argument("--only", action="append", choices=PHASES, help="run only this drill (repeatable)")
    args = parser.parse_args()
    chosen = args.only or PHASES
    if "kills" in chosen:
        kills()
    if "down" in chosen:
        _burst("API server down", args.findings, args.workers, (), outage=True)
    if "throttled" in chosen:
        one_at_a_time = ("--max-requests-inflight=1", "--max-mutating-requests-inflight=1")
        _burst("throttled", args.findings, args.workers, one_at_a_time, outage=False)
    if "redrive" in chosen:
        down_past_the_retries()
    if "tables" in chosen:
        tables_lost()
    return 0  # a goal missed is reported by bench/goals.py; only an error stops `make bench`


if __name__ == "__main__":
    sys.exit(main())
