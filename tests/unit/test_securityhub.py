"""Security Hub copies of GuardDuty findings: one incident with the native finding, never two."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.errors import EventError
from chalicelib.executors.guardduty_findings import FindingReader, wire_names
from chalicelib.incident import ResourceKind, Severity
from chalicelib.policy.loader import load_rules
from chalicelib.response.execute import Responder
from chalicelib.response.report import Mode
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from chalicelib.sources import guardduty, registry
from tests.conftest import EVENTS, load_event, load_json

OWN_PRODUCT = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"
ASFF = EVENTS / "securityhub" / "asff-copy-of-execution-runtime-reverse-shell.json"
OCSF = EVENTS / "securityhub" / "ocsf-copy-of-impact-runtime-crypto-miner-executed.json"


def test_an_asff_copy_is_the_native_findings_incident_by_id() -> None:
    native = guardduty.to_incident(load_event("execution-runtime-reverse-shell"))
    found = registry.to_incident(load_json(ASFF))
    assert (found.id, found.type, found.severity, found.account, found.region, found.cluster) == (
        native.id, native.type, Severity.HIGH, native.account, native.region, "demo")  # fmt: skip
    assert (found.source, found.resource_kind) == ("securityhub", ResourceKind.CLUSTER)
    assert found.details == {"via": "Security Hub (ASFF)", "guardduty_detector": "4ab1f0c2d3e4f5a6b7c8d9e0f1a2b3c4"}


def test_an_ocsf_copy_is_read_too() -> None:
    native = guardduty.to_incident(load_event("impact-runtime-crypto-miner-executed-deployment"))
    found = registry.to_incident(load_json(OCSF))
    assert (found.id, found.type, found.severity, found.cluster) == (native.id, native.type, Severity.HIGH, "demo")
    assert found.details["via"] == "Security Hub (OCSF)"


def _asff(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = load_json(ASFF)
    event["detail"]["findings"][0].update(changes)
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_asff(ProductArn="arn:aws:securityhub:us-east-1::product/aws/config"), "not a GuardDuty finding"),
        # anyone may import findings under the account's own product: never taken for GuardDuty's
        (_asff(ProductArn=OWN_PRODUCT), "not a GuardDuty finding"),
        (_asff(Id="arn:aws:guardduty:us-east-1:123456789012:detector/x/finding/../etc"), "not a GuardDuty finding ARN"),
        (_asff(Severity={"Original": "42"}, FindingProviderFields={"Severity": {"Original": "42"}}), "severity"),
        ({**load_json(ASFF), "detail": {"findings": []}}, "carries 0"),
    ],
)
def test_what_is_not_a_guardduty_copy_is_refused_with_the_reason(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError, match=message):
        registry.to_incident(event)


def _ocsf_product(path: str, **product: str) -> dict[str, Any]:
    event: dict[str, Any] = load_json(EVENTS / "securityhub" / path)
    event["detail"]["findings"][0]["metadata"]["product"] = product
    return event


GD_OCSF, INSPECTOR_OCSF = OCSF.name, "ocsf-copy-of-inspector-image-finding.json"


@pytest.mark.parametrize(
    "event",
    [
        # the product's name is free text: a custom integration may call itself GuardDuty
        _ocsf_product(GD_OCSF, name="GuardDuty", vendor_name="AWS",
                      uid="arn:aws:securityhub:us-east-1:123456789012:productv2/123456789012/default"),
        _ocsf_product(GD_OCSF, name="GuardDuty", vendor_name="AWS"),
        _ocsf_product(INSPECTOR_OCSF, name="Inspector", vendor_name="AWS"),
        _ocsf_product(GD_OCSF, name="GuardDuty", vendor_name="Example Corp",
                      uid="arn:aws:securityhub:us-east-1::productv2/aws/guardduty"),
        _ocsf_product(GD_OCSF, name="GuardDuty", uid="arn:aws:securityhub:us-east-1::productv2/aws/guardduty/x"),
    ],
)  # fmt: skip
def test_an_ocsf_copy_is_believed_only_from_awss_own_product(event: dict[str, Any]) -> None:
    with pytest.raises(EventError, match="not a finding of AWS's own GuardDuty or Inspector"):
        registry.to_incident(event)


def test_the_product_uid_decides_which_service_a_copy_is_from_not_its_name() -> None:
    # named Inspector, imported under GuardDuty's product: read as GuardDuty's (and so refused for
    # lacking a GuardDuty finding ARN), never taken as an image finding
    event = _ocsf_product(INSPECTOR_OCSF, name="Inspector", vendor_name="AWS",
                          uid="arn:aws:securityhub:us-east-1::productv2/aws/guardduty")  # fmt: skip
    with pytest.raises(EventError, match="GuardDuty finding ARN"):
        registry.to_incident(event)


def _member_names(value: Any, shape: Any) -> Any:
    """The inverse of wire_names: an event's finding as boto3 returns it from GetFindings."""
    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(value, dict):
        by_wire = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
        return {by_wire[k][0]: _member_names(v, by_wire[k][1]) for k, v in value.items()
                if k in by_wire and v is not None}  # fmt: skip
    if kind == "list" and isinstance(value, list):
        return [_member_names(v, shape.member) for v in value]
    return value


class _Session:
    def __init__(self, client: Any) -> None:
        self._client = client

    def client(self, *_: Any, **__: Any) -> Any:
        return self._client


def _reader(native: dict[str, Any]) -> tuple[FindingReader, Stubber]:
    client = boto3.client("guardduty", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    shape = client.meta.service_model.operation_model("GetFindings").output_shape.members["Findings"].member
    stub = Stubber(client)
    detail = native["detail"]
    expected = {"DetectorId": "4ab1f0c2d3e4f5a6b7c8d9e0f1a2b3c4", "FindingIds": [detail["id"]]}
    stub.add_response("get_findings", {"Findings": [_member_names(detail, shape)]}, expected)
    stub.activate()
    return FindingReader(lambda: _Session(client)), stub


def test_the_native_finding_is_read_back_in_the_events_own_spelling() -> None:
    native = load_event("execution-runtime-reverse-shell")
    reader, stub = _reader(native)
    detail = reader.read("us-east-1", "4ab1f0c2d3e4f5a6b7c8d9e0f1a2b3c4", native["detail"]["id"])
    stub.assert_no_pending_responses()
    assert detail is not None
    # every field the model knows comes back as the EventBridge event spells it
    assert detail["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]["name"] == "web-5d9c7b8f6-x7k2p"
    assert detail["resource"]["instanceDetails"]["instanceId"] == "i-cd9226b0ed9ce5ec6"
    assert guardduty.to_incident({**native, "detail": detail}) == guardduty.to_incident(native)


def test_a_copy_is_acted_on_with_the_native_findings_facts() -> None:
    native = load_event("execution-runtime-reverse-shell")
    reader, _ = _reader(native)
    responder = Responder(load_rules(DEFAULT_RULES_FILE), Settings(), findings=reader)
    enriched = responder.enrich(registry.to_incident(load_json(ASFF)), Mode.DRY_RUN)
    expected = guardduty.to_incident(native)
    assert enriched == replace(expected, source="securityhub", event_id=load_json(ASFF)["id"])
    assert enriched.pods  # the copy named no pod; the native does
    assert enriched.details["via"] == "Security Hub (ASFF)"


def test_a_copy_whose_native_finding_cannot_be_read_says_so() -> None:
    client = boto3.client("guardduty", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_client_error("get_findings", "AccessDeniedException", "not allowed")
    stub.activate()
    responder = Responder(load_rules(DEFAULT_RULES_FILE), Settings(), findings=FindingReader(lambda: _Session(client)))
    enriched = responder.enrich(registry.to_incident(load_json(ASFF)), Mode.DRY_RUN)
    assert enriched.resource_kind is ResourceKind.CLUSTER
    assert enriched.details["native"].startswith("not read (An error occurred (AccessDeniedException)")
    assert enriched.details["native"].endswith("the copy is reported, not acted on")
    assert enriched.unverified.startswith("native finding not read")
    # What the copy alone says is planned and told, never acted on: here, the node playbook it names.
    node = replace(enriched, instance_ids=("i-cd9226b0ed9ce5ec6",), resource_kind=ResourceKind.NODE)
    report = responder.handle(node, Mode.LIVE)
    assert report.actions
    assert {a.status.value for a in report.actions} == {"planned"}
    assert report.notes[0].startswith("unverified copy, planned only: native finding not read")


def test_a_plan_reads_nothing() -> None:
    responder = Responder(load_rules(DEFAULT_RULES_FILE), Settings(), findings=None)
    copy_ = registry.to_incident(load_json(ASFF))
    assert responder.enrich(copy_, Mode.PLAN) == copy_


def test_wire_names_keep_what_the_model_does_not_know_out() -> None:
    client = boto3.client("guardduty", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    shape = client.meta.service_model.operation_model("GetFindings").output_shape.members["Findings"].member
    assert wire_names({"Id": "a", "Unknown": 1, "Resource": {"ResourceType": "Instance"}}, shape) == {
        "id": "a", "resource": {"resourceType": "Instance"}}  # fmt: skip
    assert json.dumps(copy.deepcopy(wire_names({"Severity": 8.0}, shape))) == '{"severity": 8.0}'


def test_an_inspector_image_finding_from_security_hub_is_inspectors_own_incident() -> None:
    from tests.conftest import SAMPLES

    sample = SAMPLES / "ecr" / "Inspector2_Finding_ECR_PACKAGE_VULNERABILITY.2024-doc.json"
    native = registry.to_incident(load_json(sample))
    copy_ = registry.to_incident(load_json(EVENTS / "securityhub" / "asff-copy-of-inspector-image-finding.json"))
    assert copy_.id == native.id  # one incident per image, whichever arrives
    assert replace(copy_, event_id=None, raw_ref=None, details={}) == replace(
        native, event_id=None, raw_ref=None, details={})  # fmt: skip
    assert {k: v for k, v in copy_.details.items() if k != "via"} == native.details
    assert copy_.details["via"] == "Security Hub (ASFF)"


def test_inspectors_ocsf_copy_is_the_same_incident_as_its_asff_copy_and_the_native_event() -> None:
    asff = registry.to_incident(load_json(EVENTS / "securityhub" / "asff-copy-of-inspector-image-finding.json"))
    ocsf = registry.to_incident(load_json(EVENTS / "securityhub" / "ocsf-copy-of-inspector-image-finding.json"))
    assert ocsf.id == asff.id
    assert replace(ocsf, event_id=None, raw_ref=None, details={}) == replace(
        asff, event_id=None, raw_ref=None, details={})  # fmt: skip
    assert {k: v for k, v in ocsf.details.items() if k != "via"} == {
        k: v for k, v in asff.details.items() if k != "via"}  # fmt: skip
    assert ocsf.details["via"] == "Security Hub (OCSF)"


def test_inspectors_ocsf_copy_keeps_its_severity_status_and_exploit_facts() -> None:
    event = load_json(EVENTS / "securityhub" / "ocsf-copy-of-inspector-image-finding.json")
    finding = event["detail"]["findings"][0]
    finding.update({"severity_id": 5, "severity": "Critical"})
    finding["vulnerabilities"][0]["is_exploit_available"] = True
    critical = registry.to_incident(event)
    assert critical.severity.label == "critical"
    finding.update({"status_id": 4, "status": "Resolved"})
    assert registry.to_incident(event).details != critical.details  # a closed finding is said to be closed
    malformed_ids: tuple[Any, ...] = ({}, [], "4", None)  # what the hostile corpus tried
    for malformed in malformed_ids:  # read as "not closed", never a crash
        finding.update({"status_id": malformed, "status": "New"})
        assert registry.to_incident(event).details == critical.details
    finding["resources"][0]["type"] = "AWS::EC2::Instance"
    with pytest.raises(EventError, match="not about an ECR image"):
        registry.to_incident(event)


def test_an_inspector_finding_not_about_an_image_is_refused() -> None:
    event = load_json(EVENTS / "securityhub" / "asff-copy-of-inspector-image-finding.json")
    event["detail"]["findings"][0]["Resources"][0]["Type"] = "AwsEc2Instance"
    with pytest.raises(EventError, match="not about an ECR image"):
        registry.to_incident(event)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ({"Product": 5, "Normalized": 50}, Severity.MEDIUM),  # GuardDuty's own score, as older findings carry it
        ({"Normalized": 50}, Severity.MEDIUM),
        ({"Normalized": 75}, Severity.HIGH),
        ({"Normalized": 95}, Severity.CRITICAL),
        ({"Normalized": 20}, Severity.LOW),
    ],
)
def test_an_older_asff_severity_without_a_label_is_scored_as_security_hub_documents(
    severity: dict[str, Any], expected: Severity
) -> None:
    event = _asff(Severity=severity, FindingProviderFields={})
    assert registry.to_incident(event).severity is expected


def test_an_asff_copy_carries_the_kubernetes_user_it_holds_in_details_other() -> None:
    from chalicelib.incident import PrincipalKind
    from chalicelib.policy.matcher import decide

    event = load_json(ASFF)
    finding = event["detail"]["findings"][0]
    finding["Types"] = finding["FindingProviderFields"]["Types"] = [
        "TTPs/Discovery/Discovery:Kubernetes-MaliciousIPCaller"
    ]
    finding["Resources"].append({"Type": "Other", "Id": "kubernetes-user", "Details": {"Other": {
        "kubernetesDetails/kubernetesUserDetails/username": "system:anonymous",
        "kubernetesDetails/kubernetesUserDetails/groups": "system:unauthenticated"}}})  # fmt: skip
    found = registry.to_incident(event)
    (caller,) = found.principals
    assert (caller.kind, caller.name, caller.groups) == (PrincipalKind.ANONYMOUS, "system:anonymous",
                                                         ("system:unauthenticated",))  # fmt: skip
    assert decide(found, load_rules(DEFAULT_RULES_FILE)).rule.name == "anonymous-kubernetes-caller"
    # a value that is no Kubernetes name is not taken
    finding["Resources"][-1]["Details"]["Other"]["kubernetesDetails/kubernetesUserDetails/username"] = "a\nb"
    assert registry.to_incident(event).principals == ()
