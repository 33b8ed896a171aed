"""The demo's outputs part: one incident, contained and then released, told to every output the
responder has, each a local stand-in that checks what it gets as the real service would (Slack,
Teams, PagerDuty, ServiceNow, a signed webhook, Security Hub and GuardDuty), or moto (SNS and
EventBridge, each read back from an SQS subscriber)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devstack import narrate, stack, stand_ins

ROOT = Path(__file__).resolve().parents[1]
TABLE = "eks-responder-demo-outputs"
BUS = "eks-responder-demo"
POD = "ledger-7c9d5b6f4-k8m2p"
INCIDENT = "dd58ba0fda05c4a3253c92dd408cff48"
EVENT = ROOT / "events" / "guardduty" / "execution-runtime-reverse-shell.json"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
WEBHOOK_KEY = "demo-webhook-signing-key"
SLACK, TEAMS = "slack-url", "teams-url"  # the secrets holding the webhook URLs

_say = narrate.say


def _session(env: dict[str, str]) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                 region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"))  # fmt: skip


def _aws(env: dict[str, str]) -> tuple[dict[str, str], Any]:
    """Secrets, the incident table, the bus with its SQS subscriber; the settings naming them."""
    session, endpoint = _session(env), env["AWS_ENDPOINT_URL"]
    secrets = session.client("secretsmanager", endpoint_url=endpoint)
    session.client("dynamodb", endpoint_url=endpoint).create_table(
        TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    events, sqs = session.client("events", endpoint_url=endpoint), session.client("sqs", endpoint_url=endpoint)
    queue = sqs.create_queue(QueueName="eks-responder-demo-bus")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=BUS)
    events.put_rule(Name="everything", EventBusName=BUS, EventPattern=json.dumps({"source": ["eks-responder"]}))
    events.put_targets(Rule="everything", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])

    def secret(name: str, value: str) -> str:
        secrets.create_secret(Name=f"eks-responder/demo/{name}", SecretString=value)
        return f"eks-responder/demo/{name}"

    return {"INCIDENTS_TABLE": TABLE, "EVENT_BUS_NAME": BUS, "WRITEBACK_SOURCES": "guardduty",
            "ARCHIVE_GUARDDUTY_FINDINGS": "true", "PAGERDUTY_ROUTING_KEY_SECRET": secret("pagerduty", ROUTING_KEY),
            "WEBHOOK_SIGNING_SECRET": secret("webhook", WEBHOOK_KEY),
            "SERVICENOW_CREDENTIALS_SECRET": secret("servicenow", json.dumps({"username": "demo", "password": "demo"})),
            "SLACK_WEBHOOK_SECRET": f"eks-responder/demo/{SLACK}",
            "TEAMS_WEBHOOK_SECRET": f"eks-responder/demo/{TEAMS}"}, (sqs, queue)  # fmt: skip


def _event(folder: Path) -> Path:
    event = json.loads(EVENT.read_text())
    event["id"] = "demo-outputs-0001"
    event["detail"]["id"] = INCIDENT
    event["detail"]["arn"] = event["detail"]["arn"].rsplit("/", 1)[0] + f"/{INCIDENT}"
    event["detail"]["title"] = f"A process in pod payments/{POD} opened a reverse shell."
    workload = event["detail"]["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]
    workload["name"], workload["uid"] = POD, "8e2f7c10-3333-4333-8444-aa5ef534a5e7"
    (folder / "event.json").write_text(json.dumps(event))
    rules = folder / "rules.yaml"
    steps = [{"action": "k8s:label-pod"}, {"action": "k8s:isolate-pod"}]
    rules.write_text(yaml.safe_dump({"version": 1, "rules": [
        {"name": "runtime-contain", "match": {"sources": ["guardduty"]}, "actions": steps}]}))  # fmt: skip
    return rules


def run(env: dict[str, str], client: Any) -> int:
    from lightkube.codecs import from_dict

    _say("Outputs: one incident, contained then released, told to every output (local stand-ins, moto)")
    servers = {"slack": stand_ins.slack(), "teams": stand_ins.teams(), "pagerduty": stand_ins.pagerduty(),
               "webhook": stand_ins.receiver(WEBHOOK_KEY)}  # fmt: skip
    servers["servicenow"], tickets = stand_ins.servicenow("demo", "demo")
    servers["securityhub"], hub = stand_ins.security_hub()
    servers["guardduty"], detector = stand_ins.guardduty(forward=env["AWS_ENDPOINT_URL"])
    try:
        settings, (sqs, queue) = _aws(env)
        session, endpoint = _session(env), env["AWS_ENDPOINT_URL"]
        secrets = session.client("secretsmanager", endpoint_url=endpoint)
        for name, url in ((SLACK, f"{servers['slack'].url}/services/T0DEMO/B0DEMO/demo"),
                          (TEAMS, f"{servers['teams'].url}/workflows/demo?sig=demo")):  # fmt: skip
            secrets.create_secret(Name=f"eks-responder/demo/{name}", SecretString=url)
        folder = stack.scratch("outputs")
        rules = _event(folder)
        container = {"name": "main", "image": "public.ecr.aws/docker/library/python:3"}
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [container]},
               "metadata": {"name": POD, "namespace": "payments", "labels": {"app": "ledger"}}}  # fmt: skip
        client.create(from_dict(pod))
        staged = {**env, **settings, "RULES_FILE": str(rules),
                  "PAGERDUTY_EVENTS_URL": f"{servers['pagerduty'].url}/v2/enqueue",
                  "WEBHOOK_URL": f"{servers['webhook'].url}/hooks/eks-responder",
                  "SERVICENOW_INSTANCE_URL": servers["servicenow"].url,
                  "AWS_ENDPOINT_URL_SECURITYHUB": servers["securityhub"].url,
                  "AWS_ENDPOINT_URL_GUARDDUTY": servers["guardduty"].url}  # fmt: skip
        replay = [sys.executable, "-m", "chalicelib.commands.cli", "replay", "--live", "--apply", "--json", str(folder)]
        release = [sys.executable, "-m", "chalicelib.commands.cli", "release", INCIDENT, "--as", "demo", "--json"]
        code, said = 0, []
        for what, command in (("contained", replay), ("released", release)):
            done = subprocess.run(command, env=staged, check=False, capture_output=True, text=True)
            code = code or done.returncode
            for line in (x for x in done.stdout.splitlines() if x.startswith("{")):
                told = json.loads(line).get("notifications") or []
                failed = [d["notifier"] for d in told if not d["delivered"]]
                said.append(f"{what}: told {len(told)} outputs" + (f" (not {', '.join(failed)})" if failed else ""))
        print(f"  {'; '.join(said)}")
        for line in _received(servers, tickets, hub, detector, (sqs, queue)):
            print(f"  {line}")
        refused = sum(len(s.refused) for s in servers.values())
        print(f"  {refused} request(s) refused by the stand-ins' format checks")
        return code or (1 if refused else 0)
    finally:
        for server in servers.values():
            server.close()


def _received(servers: dict[str, stand_ins.StandIn], tickets: stand_ins.ServiceNowState, hub: stand_ins.ModelCalls,
              detector: stand_ins.ModelCalls, bus: tuple[Any, str]) -> list[str]:  # fmt: skip
    sqs, queue = bus
    kinds: list[str] = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            kinds.append(json.loads(message["Body"])["detail-type"].removeprefix("EKS Responder "))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    paged = [f"{b['event_action']}" for b in servers["pagerduty"].bodies()]
    dedup = {b.get("dedup_key") for b in servers["pagerduty"].bodies()}
    notes = sum(len(n) for n in tickets.notes.values())
    numbers = ", ".join(r["number"] for r in tickets.records.values()) or "none"
    statuses = [u["Workflow"]["Status"] for u in hub.of("BatchUpdateFindings")]
    webhook = [r.json["detail"]["kind"] for r in servers["webhook"].received]
    return [
        f"Slack: {len(servers['slack'].received)} messages; Teams: {len(servers['teams'].received)} Adaptive Cards",
        f"PagerDuty: {' then '.join(paged) or 'nothing'} (dedup_key {', '.join(map(str, dedup))})",
        f"ServiceNow: ticket {numbers}, {notes} work notes",
        f"webhook: {len(webhook)} signed events verified ({', '.join(webhook)})",
        f"EventBridge -> SQS: {len(kinds)} events ({', '.join(f'{kinds.count(k)} {k}' for k in dict.fromkeys(kinds))})",
        f"Security Hub: workflow {' then '.join(statuses) or 'untouched'}; GuardDuty: "
        f"{len(detector.of('ArchiveFindings'))} finding archived",
    ]
