from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.errors import EventError
from chalicelib.incident import Incident, PrincipalKind, ResourceKind, Severity
from chalicelib.sources import kms
from chalicelib.sources.envelope import split_document
from tests.conftest import SAMPLES, load_json

KMS_SAMPLES = sorted((SAMPLES / "kms").rglob("*.json"))


def _incident(name: str) -> Incident:
    (event,) = split_document(load_json(SAMPLES / "kms" / name))
    return kms.to_incident(event)


@pytest.mark.parametrize("path", KMS_SAMPLES, ids=lambda p: p.name)
def test_every_kms_sample_parses(path: Path) -> None:
    (event,) = split_document(load_json(path))
    incident = kms.to_incident(event)
    assert incident.source == "kms"
    assert incident.resource_kind is ResourceKind.KMS_KEY
    assert incident.key_arns


def test_destructive_calls_are_high_and_name_the_key_and_caller() -> None:
    incident = _incident("bare/CloudTrail_ScheduleKeyDeletion.json")
    assert incident.type == "KMS:ScheduleKeyDeletion"
    assert incident.severity is Severity.HIGH
    assert incident.key_arns == ("arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",)
    assert incident.principals[0].kind is PrincipalKind.IAM_USER
    assert incident.details["pendingWindowInDays"] == "20"


def test_read_only_and_failed_calls_are_low_and_flagged() -> None:
    assert _incident("bare/CloudTrail_Decrypt.json").severity is Severity.LOW
    failed = _incident("bare/CloudTrail_Decrypt.4.json")
    assert failed.failed is True
    assert failed.details["error"].startswith("KMSInvalidStateException")


def test_grants_carry_the_grantee() -> None:
    incident = _incident("bare/CloudTrail_CreateGrant.json")
    assert incident.severity is Severity.MEDIUM
    assert "granteePrincipal" in incident.details


def test_native_events() -> None:
    deletion = _incident("KMS_CMK_Deletion.json")
    assert deletion.type == "KMS:CMKDeletion"
    assert deletion.key_arns[0].endswith("1234abcd-12ab-34cd-56ef-1234567890ab")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"source": "aws.kms", "detail-type": "KMS Something New", "detail": {}}, "unsupported KMS event"),
        ({"source": "aws.kms", "detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "X"}}, "eventID"),
        ({"source": "aws.kms", "detail-type": "KMS CMK Deletion", "detail": {}}, "names no key"),
        ({"source": "aws.kms", "detail-type": "KMS CMK Deletion"}, "detail: Field required"),
    ],
)
def test_malformed_kms_events(event: dict[str, object], message: str) -> None:
    with pytest.raises(EventError, match=message):
        kms.to_incident(event)
