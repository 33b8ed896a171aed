"""Flow-log findings attributed on a real API server and an EC2 endpoint, then contained."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from chalicelib.entry import flow_logs as batch
from chalicelib.entry import wiring
from chalicelib.flowlogs.addresses import Classifier, Ranges
from chalicelib.flowlogs.detect import Scanner
from chalicelib.flowlogs.fields import DEFAULT
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration
THREAT = "45.10.0.9"
STARTED = "2025-11-28T00:00:00Z"  # what a kubelet reports: long before the records' capture window
MARK = "eks-responder.io/under-investigation"


@dataclass
class Worker:
    instance_id: str
    interface: str
    node_ip: str
    pod_ip: str
    node: str
    pod: str
    subnet: str


@pytest.fixture
def worker(aws_session: Any, cluster: Cluster) -> Worker:
    """An EKS worker in EC2 with a VPC CNI pod address on its ENI, its node, and the pod."""
    ec2 = aws_session.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"Key": "eks:cluster-name", "Value": "local"}]
    spec = [{"ResourceType": "instance", "Tags": tags}]
    made = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large", TagSpecifications=spec)
    made = made["Instances"][0]
    interface = made["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.assign_private_ip_addresses(NetworkInterfaceId=interface, SecondaryPrivateIpAddressCount=1)
    addresses = ec2.describe_network_interfaces(NetworkInterfaceIds=[interface])["NetworkInterfaces"][0]
    pod_ip = next(a["PrivateIpAddress"] for a in addresses["PrivateIpAddresses"] if not a["Primary"])
    node = cluster.node(f"flow-{uuid.uuid4().hex[:6]}", made["InstanceId"])
    pod = cluster.pod("api", node)
    status = {"status": {"podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "phase": "Running", "startTime": STARTED}}
    cluster.admin.patch(Pod.Status, pod, status, namespace=cluster.namespace, patch_type=PatchType.MERGE)
    return Worker(made["InstanceId"], interface, made["PrivateIpAddress"], pod_ip, node, pod, made["SubnetId"])


def _payload(records: list[str]) -> dict[str, Any]:
    body = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/vpc/flow-logs",
            "logStream": "eni-all", "subscriptionFilters": ["eks-responder"],
            "logEvents": [{"id": str(i), "timestamp": 0, "message": r} for i, r in enumerate(records)]}  # fmt: skip
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()}}


def _record(interface: str, src: str, dst: str, sport: int, dport: int, size: int = 4000,
            action: str = "ACCEPT") -> str:  # fmt: skip
    # Captured a minute or two ago, as a delivery is: who held each address then is who it is.
    start = int(time.time()) - 120
    return f"2 123456789012 {interface} {src} {dst} {sport} {dport} 6 10 {size} {start} {start + 60} {action} OK"


def _run(make_responder: Any, records: list[str], threats: tuple[str, ...] = (f"{THREAT}/32",)) -> list[dict[str, Any]]:
    responder = make_responder(clusters=("local",))
    scanner = Scanner(Classifier(Ranges(threats)))
    delivery = batch.scan_payload(_payload(records), None, scanner, datetime.now(UTC), "us-east-1")
    result = batch.respond(delivery, wiring.flow_intake(responder, Mode.LIVE, "us-east-1"))
    return list(result["results"])


def _acl_denies(aws_session: Any, subnet: str) -> set[str]:
    acls = aws_session.client("ec2").describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet]}]
    )["NetworkAcls"]
    return {e["CidrBlock"] for acl in acls for e in acl["Entries"] if e["RuleAction"] == "deny" and "CidrBlock" in e}


def _status(result: dict[str, Any]) -> dict[str, str]:
    return {a["action"]: a["status"] for a in result["actions"]}


def test_a_pod_talking_to_a_threat_is_found_by_its_address_and_isolated(
    worker: Worker, cluster: Cluster, make_responder: Any, aws_session: Any
) -> None:
    (result,) = _run(make_responder, [_record(worker.interface, worker.pod_ip, THREAT, 40001, 443),
                                      _record(worker.interface, THREAT, worker.pod_ip, 443, 40001)])  # fmt: skip
    incident = result["incident"]
    assert incident["pods"] == [f"{cluster.namespace}/{worker.pod}"]
    assert incident["resource_kind"] == "pod"
    assert incident["instance_id"] == worker.instance_id
    assert result["rule"] == "flow-pod-contacts-threats"
    assert _status(result) == {"k8s:label-pod": "succeeded", "k8s:capture-pod": "succeeded",
                               "k8s:isolate-pod": "succeeded", "ec2:isolate-pod-eni": "skipped",
                               "ec2:block-ip": "succeeded"}  # fmt: skip
    pod = cluster.admin.get(Pod, worker.pod, namespace=cluster.namespace)
    assert (pod.metadata.labels or {}).get(MARK) == "true"
    assert list(cluster.admin.list(NetworkPolicy, namespace=cluster.namespace))
    assert f"{THREAT}/32" in _acl_denies(aws_session, worker.subnet)
    assert "top_flows" in incident["details"]
    assert f"{worker.pod_ip}:40001 -> {THREAT}:443 4000 B ACCEPT" in incident["details"]["top_flows"]


def test_the_node_address_itself_gets_the_node_playbook(
    worker: Worker, cluster: Cluster, make_responder: Any, aws_session: Any
) -> None:
    (result,) = _run(make_responder, [_record(worker.interface, worker.node_ip, "81.2.69.20", 40001, 3333)])
    assert result["incident"]["resource_kind"] == "node"
    assert result["rule"] == "flow-node-contacts-threats"
    assert _status(result)["k8s:cordon-node"] == "succeeded"
    assert _status(result)["ec2:isolate-instance"] == "succeeded"
    assert cluster.admin.get(Node, worker.node).spec.unschedulable is True
    # A mining port is a heuristic: the remote's subnet-wide deny waits for a human.
    assert _status(result)["ec2:block-ip"] == "awaiting-approval"
    assert "81.2.69.20/32" not in _acl_denies(aws_session, worker.subnet)


def test_an_internet_port_scan_is_reported_never_blocked_its_source_can_be_forged(
    worker: Worker, make_responder: Any, aws_session: Any
) -> None:
    probes = [_record(worker.interface, "81.2.69.66", worker.node_ip, 51515, port, 44, "REJECT")
              for port in range(1, 151)]  # fmt: skip
    (result,) = _run(make_responder, probes)
    assert result["incident"]["type"] == "Recon:FlowLogs/PortScanFromInternet"
    assert result["incident"]["details"]["ports"].startswith("150 distinct")
    assert result["rule"] == "flow-scan-from-internet", result["incident"]["details"]
    assert _status(result) == {"k8s:label-node": "succeeded"}
    assert "81.2.69.66/32" not in _acl_denies(aws_session, worker.subnet)


def test_an_address_no_interface_has_is_reported_not_acted_on(worker: Worker, make_responder: Any) -> None:
    (result,) = _run(make_responder, [_record(worker.interface, "10.250.250.250", THREAT, 40001, 443)])
    assert result["rule"] == "flow-not-attributed"
    assert result["actions"] == []
    assert "no network interface" in result["incident"]["details"]["attribution"]


def _object_created(bucket: str, key: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "source": "aws.s3", "detail-type": "Object Created", "account": "123456789012",
            "region": "us-east-1", "detail": {"bucket": {"name": bucket}, "object": {"key": key}}}  # fmt: skip


def _settings(**values: Any) -> Any:
    from chalicelib.settings import Settings

    return Settings(clusters=("local",), **values)


def test_an_s3_delivery_is_streamed_from_the_bucket_and_handled(
    worker: Worker, cluster: Cluster, make_responder: Any, aws_session: Any, tmp_path: Any
) -> None:
    s3 = aws_session.client("s3")
    s3.create_bucket(Bucket="flow-logs")
    header = " ".join(DEFAULT.fields)
    body = "\n".join([header, _record(worker.interface, worker.pod_ip, THREAT, 40001, 443)]) + "\n"
    key = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/28/123456789012_vpcflowlogs_us-east-1_fl-1_x.log.gz"
    s3.put_object(Bucket="flow-logs", Key=key, Body=gzip.compress(body.encode()))
    threats = tmp_path / "threats.txt"
    threats.write_text(f"# test feed\n{THREAT}\n")
    s3.put_object(Bucket="flow-logs", Key="threats.txt", Body=threats.read_bytes())
    current = _settings(flow_logs_bucket="flow-logs", threat_list="s3://flow-logs/threats.txt")
    intake = wiring.flow_intake(make_responder(clusters=("local",)), Mode.DRY_RUN, "us-east-1")

    result = wiring.flow_log_objects(_object_created("flow-logs", key), current, intake)
    (delivery,) = result["deliveries"]
    assert (delivery["origin"], delivery["records"], delivery["error"]) == (f"s3://flow-logs/{key}", 1, None)
    (found,) = delivery["results"]
    assert found["incident"]["account"] == "123456789012"  # from the key, as S3 delivery names it
    assert found["incident"]["pods"] == [f"{cluster.namespace}/{worker.pod}"]
    # dry run: validated, nothing changed (the pod has no branch ENI: nothing to plan there)
    assert {a["action"]: a["status"] for a in found["actions"]}.pop("ec2:isolate-pod-eni") == "skipped"
    statuses = {a["action"]: a for a in found["actions"] if a["action"] != "ec2:isolate-pod-eni"}
    # moto makes network-ACL entries despite DryRun: the block is reported as made, never as checked
    block = statuses.pop("ec2:block-ip")
    assert (block["status"], block["detail"].startswith("APPLIED DESPITE DRY RUN")) == ("succeeded", True), block
    assert {a["status"] for a in statuses.values()} == {"planned"}
    pod = cluster.admin.get(Pod, worker.pod, namespace=cluster.namespace)
    assert MARK not in (pod.metadata.labels or {})

    other = wiring.flow_log_objects(_object_created("someone-elses", key), current, intake)
    assert other["deliveries"][0]["ignored"] == "not the flow-log bucket flow-logs"

    # Without FLOW_LOGS_BUCKET no bucket is read as flow logs (an ALB log would raise alerts).
    unset = wiring.flow_log_objects(_object_created("flow-logs", key), _settings(), intake)
    assert unset["deliveries"] == [
        {"origin": f"s3://flow-logs/{key}", "ignored": "FLOW_LOGS_BUCKET is not set: no bucket is read as flow logs"}
    ]


def test_a_truncated_object_is_scanned_up_to_the_damage_and_told(
    worker: Worker, make_responder: Any, aws_session: Any
) -> None:
    s3 = aws_session.client("s3")
    s3.create_bucket(Bucket="flow-logs")
    lines = [_record(worker.interface, worker.pod_ip, f"10.1.{i // 250}.{i % 250}", 40000, 8080) for i in range(20_000)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    s3.put_object(Bucket="flow-logs", Key="cut.log.gz", Body=whole[: len(whole) // 2])
    told: list[dict[str, Any]] = []

    class Recorder:
        name = "recorder"

        def send(self, report: dict[str, Any]) -> None:
            told.append({k: report[k] for k in ("event_id", "error")})

    intake = wiring.flow_intake(make_responder(), Mode.DRY_RUN, "us-east-1", None, [Recorder()])
    result = wiring.flow_log_objects(
        _object_created("flow-logs", "cut.log.gz"), _settings(flow_logs_bucket="flow-logs"), intake
    )
    (delivery,) = result["deliveries"]
    assert "ends early" in delivery["error"]
    assert 0 < delivery["records"] < 20_000
    assert told == [{"event_id": "s3://flow-logs/cut.log.gz", "error": delivery["error"]}]


def test_replay_of_a_payload_prints_the_attributed_pod_and_the_planned_actions(
    worker: Worker, cluster: Cluster, local_stack: Any, aws_session: Any, tmp_path: Any, capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from chalicelib.commands.cli import main

    payload = tmp_path / "payload.json"
    records = [_record(worker.interface, worker.pod_ip, THREAT, 40001, 443)]
    payload.write_text(json.dumps(_payload(records)))
    threats = tmp_path / "threats.txt"
    threats.write_text(f"{THREAT}\n")
    settings = {"DRY_RUN": "true", "CLUSTERS": "local", "THREAT_LIST": str(threats), "EVIDENCE_DIR": str(tmp_path)}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    wiring.reset()
    code = main(["replay", "--live", "--json", "--kubeconfig", str(local_stack.responder_kubeconfig), str(payload)])
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert code == 0
    assert row["event"] == "logs:/vpc/flow-logs/eni-all"
    assert row["delivery"]["records"] == 1
    assert row["incident"]["pods"] == [f"{cluster.namespace}/{worker.pod}"]
    assert row["incident"]["details"]["attribution"].startswith(f"{worker.pod_ip} is pod {cluster.namespace}/")
    assert row["mode"] == "dry-run"
    assert [(a["action"], a["status"]) for a in row["actions"]] == [
        ("k8s:label-pod", "planned"), ("k8s:capture-pod", "planned"), ("k8s:isolate-pod", "planned"),
        ("ec2:isolate-pod-eni", "skipped"),
        ("ec2:block-ip", "succeeded"),  # moto makes ACL entries despite DryRun: reported as made
    ]  # fmt: skip
    assert row["actions"][-1]["detail"].startswith("APPLIED DESPITE DRY RUN")
    # Planned, not done (the API server's dry run; moto applies ACL entries even with DryRun, so not that).
    pod = cluster.admin.get(Pod, worker.pod, namespace=cluster.namespace)
    assert MARK not in (pod.metadata.labels or {})


# --- which pod had the address when the flows were captured (the last two minutes)


def _holder(cluster: Cluster, worker: Worker, name: str, status: dict[str, Any]) -> str:
    """Another pod on the worker's node whose status holds the same address."""
    cluster.pod(name, worker.node)
    held = {"podIP": worker.pod_ip, "podIPs": [{"ip": worker.pod_ip}], **status}
    cluster.admin.patch(Pod.Status, name, {"status": held}, namespace=cluster.namespace, patch_type=PatchType.MERGE)
    return name


def _finished(at: str) -> dict[str, Any]:
    terminated = {"exitCode": 0, "reason": "Completed", "startedAt": "2025-11-27T00:00:00Z", "finishedAt": at}
    return {"phase": "Succeeded", "startTime": "2025-11-27T00:00:00Z", "containerStatuses": [{
        "name": "main", "image": "nginx", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": terminated}}]}  # fmt: skip


def _marked(cluster: Cluster, name: str) -> bool:
    return (cluster.admin.get(Pod, name, namespace=cluster.namespace).metadata.labels or {}).get(MARK) == "true"


def test_a_finished_decoy_keeping_the_address_never_spares_the_running_pod(
    worker: Worker, cluster: Cluster, make_responder: Any
) -> None:
    """A tenant's Job pod that finished before the flows keeps status.podIP; listed first or not,
    the pod running with the address then is the one contained."""
    decoy = _holder(cluster, worker, "aaa-decoy", _finished("2025-11-28T08:00:00Z"))
    (result,) = _run(make_responder, [_record(worker.interface, worker.pod_ip, THREAT, 40001, 443)])
    assert result["incident"]["pods"] == [f"{cluster.namespace}/{worker.pod}"], result["incident"]["details"]
    assert _marked(cluster, worker.pod)
    assert not _marked(cluster, decoy)


def test_an_address_only_a_finished_pod_had_contains_no_pod(
    worker: Worker, cluster: Cluster, make_responder: Any
) -> None:
    cluster.admin.delete(Pod, worker.pod, namespace=cluster.namespace, grace_period=0)
    decoy = _holder(cluster, worker, "finished-job", _finished("2025-11-28T08:00:00Z"))
    (result,) = _run(make_responder, [_record(worker.interface, worker.pod_ip, THREAT, 40001, 443)])
    assert result["incident"]["pods"] == []
    assert "were not running when the flows were captured" in result["incident"]["details"]["attribution"]
    assert not _marked(cluster, decoy)


def test_a_pod_started_after_the_flows_is_not_their_sender(
    worker: Worker, cluster: Cluster, make_responder: Any
) -> None:
    later = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"status": {"startTime": later}}
    cluster.admin.patch(Pod.Status, worker.pod, status, namespace=cluster.namespace, patch_type=PatchType.MERGE)
    (result,) = _run(make_responder, [_record(worker.interface, worker.pod_ip, THREAT, 40001, 443)])
    assert result["incident"]["pods"] == []
    assert not _marked(cluster, worker.pod)


def test_two_running_pods_with_the_address_are_named_and_wait_for_a_human(
    worker: Worker, cluster: Cluster, make_responder: Any
) -> None:
    other = _holder(cluster, worker, "twin", {"phase": "Running", "startTime": "2025-11-27T00:00:00Z"})
    (result,) = _run(make_responder, [_record(worker.interface, worker.pod_ip, THREAT, 40001, 443)])
    incident = result["incident"]
    assert sorted(incident["pods"]) == sorted([f"{cluster.namespace}/{worker.pod}", f"{cluster.namespace}/{other}"])
    assert "held by 2 running pods" in incident["details"]["attribution"]
    assert incident["hold"].startswith(f"address {worker.pod_ip} was held by")
    statuses = set(_status(result).values())
    assert statuses <= {"awaiting-approval", "skipped", "planned"}, _status(result)
    assert "awaiting-approval" in statuses
    assert not _marked(cluster, worker.pod)
    assert not _marked(cluster, other)


def test_an_object_s3_cannot_serve_now_is_told_and_the_invocation_fails_for_a_retry(
    worker: Worker, make_responder: Any, aws_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    from chalicelib.errors import RetryLaterError
    from chalicelib.executors import flow_sources

    s3 = aws_session.client("s3")
    s3.create_bucket(Bucket="flow-logs")
    s3.put_object(Bucket="flow-logs", Key="f.log.gz", Body=gzip.compress(b"x\n"))
    told: list[str] = []

    class Recorder:
        name = "recorder"

        def send(self, report: dict[str, Any]) -> None:
            told.append(str(report.get("error")))

    def unreachable(*_: Any, **__: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    monkeypatch.setattr(flow_sources, "open_object", unreachable)
    intake = wiring.flow_intake(make_responder(), Mode.DRY_RUN, "us-east-1", None, [Recorder()])
    with pytest.raises(RetryLaterError, match=r"s3://flow-logs/f\.log\.gz"):
        wiring.flow_log_objects(_object_created("flow-logs", "f.log.gz"), _settings(flow_logs_bucket="flow-logs"),
                                intake)  # fmt: skip
    (said,) = told
    assert "cannot read the object now (tried again later)" in said
