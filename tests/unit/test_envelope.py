from __future__ import annotations

import pytest

from chalicelib.errors import EventError
from chalicelib.sources.envelope import camelize_keys, split_document
from tests.conftest import GUARDDUTY_SAMPLES, load_json


def test_eventbridge_event_passes_through() -> None:
    event = load_json(GUARDDUTY_SAMPLES / "Backdoor_EC2_CandCActivity.B_DNS.eventbridge.json")
    assert split_document(event) == [event]


def test_bare_finding_is_wrapped_as_eventbridge_would() -> None:
    finding = load_json(GUARDDUTY_SAMPLES / "own" / "Discovery_Kubernetes_SuccessfulAnonymousAccess.json")
    (event,) = split_document(finding)
    assert event["source"] == "aws.guardduty"
    assert event["detail-type"] == "GuardDuty Finding"
    assert event["detail"] is finding
    assert event["account"] == finding["accountId"]


def test_get_findings_output_becomes_one_camelcase_event_per_finding() -> None:
    doc = load_json(
        GUARDDUTY_SAMPLES / "bare" / "PrivilegeEscalation_Kubernetes_PrivilegedContainer.real-get-findings-cli.json"
    )
    events = split_document(doc)
    assert len(events) == len(doc["Findings"])
    detail = events[0]["detail"]
    assert detail["resource"]["resourceType"] == "EKSCluster"
    assert detail["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]["name"] == "privileged-pod"


def test_camelize_keeps_values_and_lower_case_keys() -> None:
    assert camelize_keys({"IpAddressV4": "1.2.3.4", "sourceIPs": ["A"], "Tags": [{"Key": "K"}]}) == {
        "ipAddressV4": "1.2.3.4",
        "sourceIPs": ["A"],
        "tags": [{"key": "K"}],
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "expected a JSON object, got list"),
        ("text", "expected a JSON object, got str"),
        ({"Findings": []}, "holds no findings"),
        ({"Findings": [1]}, "finding #0 is not an object"),
        ({"hello": "world"}, "top-level keys: hello"),
    ],
)
def test_unrecognised_documents_say_what_they_are(doc: object, message: str) -> None:
    with pytest.raises(EventError, match=message):
        split_document(doc)
