from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.errors import EventError
from chalicelib.incident import Incident, PrincipalKind, ResourceKind, Severity
from chalicelib.sources import kms
from chalicelib.sources.envelope import split_document
from tests.conftest import EVENTS, SAMPLES, load_json

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
        ({"source": "aws.kms", "detail-type": "KMS CMK Deletion"}, "detail: required, missing"),
    ],
)
def test_malformed_kms_events(event: dict[str, object], message: str) -> None:
    with pytest.raises(EventError, match=message):
        kms.to_incident(event)


def _replicated(policy: object = None) -> Incident:
    event = load_json(EVENTS / "kms" / "replicate-key-to-another-account.json")
    if policy is None:
        del event["detail"]["requestParameters"]["policy"]
    elif policy != "as-is":
        event["detail"]["requestParameters"]["policy"] = policy
    return kms.to_incident(event)


def test_a_replica_whose_policy_lets_another_account_in_is_high_and_says_who() -> None:
    from chalicelib.policy.loader import load_rules
    from chalicelib.policy.matcher import decide
    from chalicelib.settings import DEFAULT_RULES_FILE

    incident = _replicated("as-is")
    assert incident.severity is Severity.HIGH
    assert incident.details["replica_region"] == "eu-south-2"
    assert incident.details["replica_policy"] == "grants 444455556666"
    assert decide(incident, load_rules(DEFAULT_RULES_FILE)).rule.name == "kms-key-replicated"  # not "read-only"
    default = _replicated(None)
    assert default.severity is Severity.MEDIUM
    assert default.details["replica_policy"] == "the default key policy (this account only)"


@pytest.mark.parametrize(
    ("policy", "said"),
    [
        ('{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*"}}', "grants *"),
        ("[" * 50_000, "grants (a policy too large to read)"),
        ("[" * 20_000, "grants (a policy that is not JSON)"),
        ("not json", "grants (a policy that is not JSON)"),
        ('{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "someone-else"}}]}', "grants (someone-else)"),
        ('{"Statement": [{"Effect": "Deny", "Principal": {"AWS": "444455556666"}}]}', "grants no other account"),
    ],
)
def test_a_replica_policy_is_read_as_hostile_data(policy: str, said: str) -> None:
    assert _replicated(policy).details["replica_policy"] == said


def test_what_kms_does_on_its_own_is_read_as_a_service_event_never_refused() -> None:
    from chalicelib.policy.loader import load_rules
    from chalicelib.policy.matcher import decide
    from chalicelib.settings import DEFAULT_RULES_FILE

    rules = load_rules(DEFAULT_RULES_FILE)
    (deleted,) = split_document(load_json(SAMPLES / "kms" / "bare" / "CloudTrail_DeleteKey.json"))
    assert deleted["detail-type"] == "AWS Service Event via CloudTrail"  # as EventBridge would send it
    incident = kms.to_incident(deleted)
    assert (incident.type, incident.severity, incident.principals) == ("KMS:DeleteKey", Severity.HIGH, ())
    assert incident.title == "KMS DeleteKey by AWS: the key's scheduled deletion ran: it is gone"
    assert decide(incident, rules).rule.name == "kms-cannot-be-reversed"
    rotated = {**deleted, "detail": {**deleted["detail"], "eventName": "RotateKey"}}
    incident = kms.to_incident(rotated)
    assert incident.severity is Severity.LOW
    assert decide(incident, rules).rule.name == "kms-rotated-by-aws"
