"""ec2:capture-memory against moto: the command sent, the presigned URLs used as a node would,
and the follow-up event that reports the end; the isolation group that lets the capture finish."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.actions.ec2.capture_memory import CAPTURE_TAG
from chalicelib.actions.ec2.common import ISOLATION_GROUP_TAG
from chalicelib.entry import wiring
from chalicelib.executors.evidence import S3Evidence
from chalicelib.response.report import Mode
from chalicelib.settings import Settings
from tests.conftest import EVENTS
from tests.integration import iam_calls
from tests.integration.conftest import Cluster, rules_with
from tests.integration.test_node_aws import Fleet, _ec2_incident, make_fleet

pytestmark = pytest.mark.integration
BUCKET = "eks-responder-evidence-demo"  # the bucket of the stage the IAM proof judges
AVML = b"\x7fELF stand-in for the AVML binary"
AVML_SHA256 = hashlib.sha256(AVML).hexdigest()
STAGE = "test"


@pytest.fixture
def fleet(aws_session: Any, cluster: Cluster) -> Fleet:
    return make_fleet(aws_session, cluster)


@pytest.fixture
def evidence(aws_session: Any) -> S3Evidence:
    s3 = aws_session.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="evidence/tools/avml", Body=AVML)
    return S3Evidence(s3, BUCKET, "evidence")


def _as_the_node(parameters: dict[str, list[str]], memory: bytes, volatile: bytes) -> None:
    """What the document does on the node, with the URLs it was given (HTTP to the moto server)."""
    with urllib.request.urlopen(parameters["ToolUrl"][0]) as got:
        assert hashlib.sha256(got.read()).hexdigest() == parameters["ToolSha256"][0]
    sums = f"{hashlib.sha256(memory).hexdigest()}  memory.lime\n{hashlib.sha256(volatile).hexdigest()}  volatile.txt\n"
    for name, body in (("VolatileUrl", volatile), ("ImageUrl", memory), ("SumsUrl", sums.encode())):
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        put = urllib.request.Request(
            parameters[name][0],
            data=body,
            method="PUT",
            headers={"Content-MD5": md5, "Content-Type": "application/octet-stream"},
        )  # as curl -T sends it: no form
        with urllib.request.urlopen(put) as answer:
            assert answer.status == 200


def _ended(command: str, instance: str, status: str = "Success") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "ssm" / "memory-capture-succeeded.json").read_text())
    event["detail"].update({"command-id": command, "instance-id": instance, "status": status,
                            "document-name": f"eks-responder-{STAGE}-memory-capture"})  # fmt: skip
    return event


def _capture(fleet: Fleet, make_responder: Any, evidence: S3Evidence, **settings: Any) -> tuple[Any, Any]:
    target = fleet.instances[0]
    found = _ec2_incident(target)
    responder = make_responder(rules_with("ec2:capture-memory"), evidence=evidence, stage=STAGE,
                               avml_sha256=AVML_SHA256, **settings)  # fmt: skip
    return found, responder


def test_the_capture_is_sent_uploaded_through_its_urls_and_its_end_reported(
    fleet: Fleet, make_responder: Any, evidence: S3Evidence, aws_session: Any
) -> None:
    # GIVEN a node finding and a responder with AVML in the evidence bucket
    target = fleet.instances[0]
    found, responder = _capture(fleet, make_responder, evidence)
    # WHEN the capture step runs
    (result,) = responder.handle(found, Mode.LIVE).actions
    # THEN one command of the stage's document went to that node, naming the incident
    assert result.status.value == "succeeded", result.detail
    ssm = aws_session.client("ssm")
    (command,) = ssm.list_commands()["Commands"]
    assert command["DocumentName"] == f"eks-responder-{STAGE}-memory-capture"
    # (moto lists every instance as a target of a command without Targets: the request itself is read)
    sent_calls = [c.params for c in iam_calls.RECORDED if c.operation == "SendCommand"]
    (sent,) = [p for p in sent_calls if found.id in p["Comment"]]
    assert sent["InstanceIds"] == [target]
    assert found.id in command["Comment"]
    assert command["CommandId"] in result.detail
    parameters = command["Parameters"]
    assert set(parameters) == {"ToolUrl", "ToolSha256", "VolatileUrl", "ImageUrl", "SumsUrl"}
    folder = f"evidence/123456789012/us-east-1/{found.id}/instances/{target}/memory/"
    assert folder + "memory.lime" in parameters["ImageUrl"][0]
    # the node is tagged with it, and a second run of the same incident sends nothing
    tags = {t["Key"]: t["Value"] for t in fleet.instance(target)["Tags"]}
    assert tags[CAPTURE_TAG].startswith(f"{command['CommandId']}/")
    assert tags[CAPTURE_TAG].endswith(f"/{found.id}")
    (again,) = responder.handle(found, Mode.LIVE).actions
    assert again.status.value == "skipped"
    # ... nor does another finding about the same node within the hour
    (other,) = responder.handle(replace(found, id=found.id[::-1]), Mode.LIVE).actions
    assert other.status.value == "skipped"
    assert "one an hour" in other.detail
    assert len(ssm.list_commands()["Commands"]) == 1
    # WHEN the node uses its URLs, and SSM says the command succeeded
    memory, volatile = b"LiME" * 1000, b"== processes\nroot 1 /sbin/init\n"
    _as_the_node(parameters, memory, volatile)
    current = Settings(stage=STAGE, evidence_bucket=BUCKET)
    told = wiring.handle_capture_status(_ended(command["CommandId"], target), current)
    # THEN the capture is reported as finished, with the hashes, and a manifest is written
    (step,) = told["actions"]
    assert step["status"] == "succeeded", step["detail"]
    assert hashlib.sha256(memory).hexdigest()[:16] in step["detail"]
    assert told["incident"]["id"] == found.id
    manifest = json.loads(evidence.read(f"{folder.removeprefix('evidence/')}MANIFEST.json", 65536) or b"{}")
    assert manifest["files"]["memory.lime"]["sha256"] == hashlib.sha256(memory).hexdigest()
    assert manifest["files"]["volatile.txt"]["sha256"] == hashlib.sha256(volatile).hexdigest()
    assert manifest["command_id"] == command["CommandId"]


def test_a_capture_that_failed_is_told_as_failed(fleet: Fleet, make_responder: Any, evidence: S3Evidence,
                                                 aws_session: Any) -> None:  # fmt: skip
    found, responder = _capture(fleet, make_responder, evidence)
    responder.handle(found, Mode.LIVE)
    (command,) = aws_session.client("ssm").list_commands()["Commands"]
    told = wiring.handle_capture_status(_ended(command["CommandId"], fleet.instances[0], "TimedOut"),
                                        Settings(stage=STAGE, evidence_bucket=BUCKET))  # fmt: skip
    (step,) = told["actions"]
    assert step["status"] == "failed"
    assert "TimedOut" in step["detail"]


def test_status_events_it_did_not_start_are_not_reported(fleet: Fleet, make_responder: Any, evidence: S3Evidence,
                                                         aws_session: Any) -> None:  # fmt: skip
    found, responder = _capture(fleet, make_responder, evidence)
    responder.handle(found, Mode.LIVE)
    (command,) = aws_session.client("ssm").list_commands()["Commands"]
    current = Settings(stage=STAGE, evidence_bucket=BUCKET)
    # a command nobody recorded, the right command on another node, and another stage's document
    unknown = _ended("11111111-2222-4333-8444-555555555555", fleet.instances[0])
    elsewhere = _ended(command["CommandId"], fleet.instances[1])
    other_stage = _ended(command["CommandId"], fleet.instances[0])
    other_stage["detail"]["document-name"] = "eks-responder-prod-memory-capture"
    for event in (unknown, elsewhere, other_stage):
        told = wiring.handle_capture_status(event, current)
        assert "ignored" in told, told
        assert "actions" not in told


def test_without_avml_set_up_nothing_is_sent(fleet: Fleet, make_responder: Any, evidence: S3Evidence,
                                             aws_session: Any) -> None:  # fmt: skip
    found = _ec2_incident(fleet.instances[0])
    responder = make_responder(rules_with("ec2:capture-memory"), evidence=evidence, stage=STAGE)
    (result,) = responder.handle(found, Mode.LIVE).actions
    assert result.status.value == "skipped"
    assert "AVML_SHA256" in result.detail
    assert aws_session.client("ssm").list_commands()["Commands"] == []


def test_the_isolation_group_lets_the_node_reach_only_the_forensics_endpoints(
    fleet: Fleet, make_responder: Any, evidence: S3Evidence
) -> None:
    # GIVEN the VPC's endpoints' security group and the S3 prefix list, named in FORENSICS_EGRESS
    target = fleet.instances[0]
    vpc = fleet.instance(target)["VpcId"]
    endpoints = fleet.ec2.create_security_group(GroupName="endpoints", Description="x", VpcId=vpc)["GroupId"]
    listed = fleet.ec2.create_managed_prefix_list(PrefixListName="s3", MaxEntries=2, AddressFamily="IPv4")
    prefix_list = listed["PrefixList"]["PrefixListId"]
    found = _ec2_incident(target)
    # WHEN the node is captured and isolated
    egress = (endpoints, prefix_list)
    responder = make_responder(rules_with("ec2:capture-memory", "ec2:isolate-instance"), evidence=evidence,
                               stage=STAGE, avml_sha256=AVML_SHA256, forensics_egress=egress)  # fmt: skip
    capture, isolation = responder.handle(found, Mode.LIVE).actions
    # THEN the capture does not warn, and the isolation group allows HTTPS to those two, nothing else
    assert "FORENSICS_EGRESS is unset" not in capture.detail
    assert isolation.status.value == "succeeded", isolation.detail
    (group,) = {g for groups in fleet.interface_groups(target).values() for g in groups}
    sg = fleet.ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    assert sg["IpPermissions"] == []
    (rule,) = sg["IpPermissionsEgress"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [endpoints]
    assert [p["PrefixListId"] for p in rule["PrefixListIds"]] == [prefix_list]
    assert rule.get("IpRanges", []) == []
    # WHEN somebody widens the group, the next isolation puts it back to exactly that
    fleet.ec2.authorize_security_group_egress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    again = make_responder(rules_with("ec2:isolate-instance"), forensics_egress=(endpoints, prefix_list))
    (result,) = again.handle(replace(found, id=found.id + "0"), Mode.LIVE).actions
    assert result.status.value in {"succeeded", "skipped"}, result.detail
    assert f"from isolation group {group}" in result.detail
    sg = fleet.ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    assert [(r["IpProtocol"], r.get("FromPort")) for r in sg["IpPermissionsEgress"]] == [("tcp", 443)]
    assert {t["Key"]: t["Value"] for t in sg["Tags"]}[ISOLATION_GROUP_TAG] == "true"
