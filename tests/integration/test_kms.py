"""Reversing tampering with protected KMS keys, against moto in server mode."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.entry import wiring
from chalicelib.response.report import Mode
from chalicelib.sources import kms as kms_source
from chalicelib.sources.envelope import wrap_cloudtrail
from tests.conftest import SAMPLES, load_json

pytestmark = pytest.mark.integration
ACCOUNT = "123456789012"
ISSUER = {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT}:role/intruder"}}
ATTACKER = {
    "type": "AssumedRole",
    "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/intruder/s",
    "accountId": ACCOUNT,
    "sessionContext": ISSUER,
}


def event(sample: str, key_arn: str, identity: dict[str, Any] | None = None, **changes: Any) -> Any:
    """A KMS sample record, aimed at `key_arn` in us-east-1, made by `identity`."""
    record = copy.deepcopy(load_json(SAMPLES / "kms" / "bare" / f"CloudTrail_{sample}.json"))
    record["awsRegion"] = "us-east-1"
    record["recipientAccountId"] = ACCOUNT
    record["userIdentity"] = identity or ATTACKER
    record["resources"] = [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key_arn}]
    record["eventID"] = f"{sample}-{key_arn[-6:]}"
    record.update(changes)
    return kms_source.to_incident(wrap_cloudtrail(record))


@pytest.fixture
def kms(aws_session: Any) -> Any:
    return aws_session.client("kms")


@pytest.fixture
def key(kms: Any) -> str:
    return str(kms.create_key(Description="cluster secrets")["KeyMetadata"]["Arn"])


def kid(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def state(kms: Any, key: str) -> dict[str, Any]:
    metadata = kms.describe_key(KeyId=kid(key))["KeyMetadata"]
    return {
        "KeyState": metadata["KeyState"],
        "rotation": kms.get_key_rotation_status(KeyId=kid(key))["KeyRotationEnabled"],
        "policy": kms.get_key_policy(KeyId=kid(key), PolicyName="default")["Policy"],
        "grants": sorted(g["GrantId"] for g in kms.list_grants(KeyId=kid(key))["Grants"]),
    }


def responder(make_responder: Any, key: str, **settings: Any) -> Any:
    return make_responder(protected_keys=(key.rsplit("/", 1)[-1],), **settings)


def test_scheduled_deletion_is_cancelled_and_the_key_enabled(kms: Any, key: str, make_responder: Any) -> None:
    kms.schedule_key_deletion(KeyId=kid(key), PendingWindowInDays=7)
    report = responder(make_responder, key).handle(event("ScheduleKeyDeletion", key), Mode.LIVE)
    statuses = {r.action: r.status.value for r in report.actions}
    assert statuses["kms:cancel-key-deletion"] == "succeeded"
    assert statuses["kms:enable-key"] == "succeeded"
    metadata = kms.describe_key(KeyId=kid(key))["KeyMetadata"]
    assert metadata["KeyState"] == "Enabled"
    assert "DeletionDate" not in metadata


def test_a_disabled_key_is_enabled_and_the_callers_role_revoked(
    kms: Any, key: str, make_responder: Any, aws_session: Any
) -> None:
    iam = aws_session.client("iam")
    iam.create_role(
        RoleName="intruder", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )
    kms.disable_key(KeyId=kid(key))
    report = responder(make_responder, key).handle(event("DisableKey", key), Mode.LIVE)
    assert kms.describe_key(KeyId=kid(key))["KeyMetadata"]["KeyState"] == "Enabled"
    revoke = next(r for r in report.actions if r.action == "iam:revoke-role-sessions")
    assert (revoke.target, revoke.status.value) == (f"arn:aws:iam::{ACCOUNT}:role/intruder", "succeeded")


def test_a_replaced_policy_is_restored_to_the_last_known_good(
    kms: Any, key: str, make_responder: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # GIVEN the scheduled snapshot stored the policy
    monkeypatch.setenv("PROTECTED_KEYS", key.rsplit("/", 1)[-1])
    monkeypatch.setenv("EVIDENCE_DIR", str(tmp_path / "evidence"))
    wiring.reset()
    assert wiring.refresh_key_policies("us-east-1")["stored"] == [key.rsplit("/", 1)[-1]]
    good = kms.get_key_policy(KeyId=kid(key), PolicyName="default")["Policy"]
    # WHEN an attacker hands the key to another account
    outsider = {"AWS": "arn:aws:iam::999999999999:root"}
    evil = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": outsider, "Action": "kms:*", "Resource": "*"}],
    }
    kms.put_key_policy(KeyId=kid(key), PolicyName="default", Policy=json.dumps(evil))
    report = responder(make_responder, key).handle(put_key_policy(key, evil), Mode.LIVE)
    # THEN the stored policy is back, and the replaced one is recorded
    restore = next(r for r in report.actions if r.action == "kms:restore-key-policy")
    assert restore.status.value == "succeeded", restore.detail
    assert json.loads(kms.get_key_policy(KeyId=kid(key), PolicyName="default")["Policy"]) == json.loads(good)
    assert json.loads(restore.prior["replaced_policy"]) == evil


def put_key_policy(key: str, policy: dict[str, Any], at: datetime | None = None) -> Any:
    """The CloudTrail record of an attacker's PutKeyPolicy, made at `at` (now by default)."""
    params = {"keyId": key, "policyName": "default", "policy": json.dumps(policy)}
    when = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return event("PutKeyPolicy", key, eventTime=when, requestParameters=params, eventID=f"put-{when}")


def _evil(account: str) -> dict[str, Any]:
    outsider = {"AWS": f"arn:aws:iam::{account}:root"}
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": outsider, "Action": "kms:*",
                                                   "Resource": "*"}]}  # fmt: skip


def _policy(kms: Any, key: str) -> Any:
    return json.loads(kms.get_key_policy(KeyId=kid(key), PolicyName="default")["Policy"])


@pytest.fixture
def snapshots(key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    monkeypatch.setenv("PROTECTED_KEYS", kid(key))
    monkeypatch.setenv("EVIDENCE_DIR", str(tmp_path / "evidence"))
    wiring.reset()
    return lambda: wiring.refresh_key_policies("us-east-1")


def _attack(kms: Any, key: str, outsider: str, at: datetime | None = None) -> Any:
    """An attacker hands the key to `outsider`: the policy changes, and this is its CloudTrail record."""
    call = put_key_policy(key, _evil(outsider), at)
    kms.put_key_policy(KeyId=kid(key), PolicyName="default", Policy=json.dumps(_evil(outsider)))
    return call


def _restore(report: Any) -> Any:
    return next(r for r in report.actions if r.action == "kms:restore-key-policy")


def test_a_snapshot_between_the_attack_and_its_processing_never_makes_it_good(
    kms: Any, key: str, make_responder: Any, snapshots: Any
) -> None:
    # GIVEN the hourly snapshot saw the good policy
    snapshots()
    good = _policy(kms, key)
    # WHEN an attacker replaces the policy, the snapshot runs before the event is processed
    call = _attack(kms, key, "999999999999")
    snapshots()
    report = responder(make_responder, key).handle(call, Mode.LIVE)
    # THEN the policy in force before the call comes back, not the one the snapshot saw last
    restore = _restore(report)
    assert restore.status.value == "succeeded", restore.detail
    assert _policy(kms, key) == good


def test_a_tampering_policy_seen_in_a_dry_run_is_never_restored_later(
    kms: Any, key: str, make_responder: Any, snapshots: Any
) -> None:
    snapshots()
    good = _policy(kms, key)
    # GIVEN the first attack was handled in a dry run (nothing reversed) and then snapshotted
    first = _attack(kms, key, "999999999999")
    dry = responder(make_responder, key).handle(first, Mode.DRY_RUN)
    assert "is distrusted" in _restore(dry).detail
    snapshots()
    # WHEN a second attack follows
    second = _attack(kms, key, "888888888888")
    report = responder(make_responder, key).handle(second, Mode.LIVE)
    # THEN the restore skips the first attacker's policy (written by a non-administrator)
    restore = _restore(report)
    assert restore.status.value == "succeeded", restore.detail
    assert _policy(kms, key) == good


def test_no_trusted_policy_from_before_the_call_is_a_clear_failure(
    kms: Any, key: str, make_responder: Any, snapshots: Any
) -> None:
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    snapshots()  # the first snapshot is newer than the call
    report = responder(make_responder, key).handle(_attack(kms, key, "999999999999", long_ago), Mode.LIVE)
    restore = _restore(report)
    assert restore.status.value == "failed"
    assert "no trusted policy" in restore.detail
    assert "2020-01-01T00:00:00Z" in restore.detail


def test_rotation_is_turned_back_on(kms: Any, key: str, make_responder: Any) -> None:
    kms.enable_key_rotation(KeyId=kid(key))
    kms.disable_key_rotation(KeyId=kid(key))
    responder(make_responder, key).handle(event("DisableKeyRotation", key), Mode.LIVE)
    assert kms.get_key_rotation_status(KeyId=kid(key))["KeyRotationEnabled"] is True


def test_grants_to_other_accounts_are_revoked(kms: Any, key: str, make_responder: Any) -> None:
    foreign = kms.create_grant(
        KeyId=kid(key), GranteePrincipal="arn:aws:iam::999999999999:role/x", Operations=["Decrypt"]
    )
    local = kms.create_grant(
        KeyId=kid(key), GranteePrincipal=f"arn:aws:iam::{ACCOUNT}:role/app", Operations=["Decrypt"]
    )
    report = responder(make_responder, key).handle(event("CreateGrant", key), Mode.LIVE)
    assert report.actions[0].status.value == "succeeded"
    assert state(kms, key)["grants"] == [local["GrantId"]]
    assert foreign["GrantId"] in report.actions[0].detail


@pytest.mark.parametrize(
    ("sample", "changes"),
    [
        ("Decrypt", {}),
        ("DisableKey", {"errorCode": "AccessDeniedException", "errorMessage": "denied"}),
        ("ScheduleKeyDeletion", {"errorCode": "KMSInvalidStateException"}),
    ],
)
def test_read_only_and_failed_calls_change_nothing(
    kms: Any, key: str, make_responder: Any, sample: str, changes: dict[str, Any]
) -> None:
    kms.disable_key(KeyId=kid(key))
    before = state(kms, key)
    report = responder(make_responder, key).handle(event(sample, key, **changes), Mode.LIVE)
    assert report.actions == ()
    assert report.reason
    assert state(kms, key) == before


def test_the_responders_own_calls_are_ignored(kms: Any, key: str, make_responder: Any) -> None:
    kms.disable_key(KeyId=kid(key))
    own = {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/moto", "accountId": ACCOUNT}  # moto's caller
    report = responder(make_responder, key).handle(event("DisableKey", key, own), Mode.LIVE)
    enable = report.actions[0]
    assert enable.status.value == "skipped"
    assert "responder's own role" in enable.detail
    assert kms.describe_key(KeyId=kid(key))["KeyMetadata"]["KeyState"] == "Disabled"


def test_key_administrators_are_alerted_on_not_reversed(kms: Any, key: str, make_responder: Any) -> None:
    kms.disable_key(KeyId=kid(key))
    admin = f"arn:aws:iam::{ACCOUNT}:role/intruder"  # the session's role, by its exact ARN
    report = responder(make_responder, key, kms_admin_principals=(admin,)).handle(event("DisableKey", key), Mode.LIVE)
    assert {r.status.value for r in report.actions} == {"skipped"}
    assert "key administrator" in report.actions[0].detail
    assert kms.describe_key(KeyId=kid(key))["KeyMetadata"]["KeyState"] == "Disabled"
    # a name is not an identity: another account's role of the same name is no administrator here
    elsewhere = ("arn:aws:iam::999999999999:role/intruder",)
    again = responder(make_responder, key, kms_admin_principals=elsewhere).handle(event("DisableKey", key), Mode.LIVE)
    assert "key administrator" not in " ".join(r.detail for r in again.actions)


def test_unprotected_keys_are_only_reported(kms: Any, key: str, make_responder: Any) -> None:
    kms.disable_key(KeyId=kid(key))
    report = make_responder(protected_key_tag="protect=true").handle(event("DisableKey", key), Mode.LIVE)
    assert "is not protected" in report.actions[0].detail
    kms.tag_resource(KeyId=kid(key), Tags=[{"TagKey": "protect", "TagValue": "true"}])
    make_responder(protected_key_tag="protect=true").handle(event("DisableKey", key), Mode.LIVE)
    assert kms.describe_key(KeyId=kid(key))["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_clusters_secrets_key_is_protected_through_eks(
    kms: Any, key: str, make_responder: Any, aws_session: Any
) -> None:
    iam = aws_session.client("iam")
    role = iam.create_role(RoleName="eks", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    eks = aws_session.client("eks")
    eks.create_cluster(
        name="prod",
        roleArn=role,
        resourcesVpcConfig={"subnetIds": []},
        encryptionConfig=[{"resources": ["secrets"], "provider": {"keyArn": key}}],
    )
    kms.disable_key(KeyId=kid(key))
    report = make_responder(clusters=("prod",)).handle(event("DisableKey", key), Mode.LIVE)
    assert report.actions[0].status.value == "succeeded", report.actions[0].detail
    assert kms.describe_key(KeyId=kid(key))["KeyMetadata"]["KeyState"] == "Enabled"


def test_live_replay_of_a_cloudtrail_record_restores_the_key(
    kms: Any, key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from chalicelib.commands.cli import main

    record = copy.deepcopy(load_json(SAMPLES / "kms" / "bare" / "CloudTrail_ScheduleKeyDeletion.json"))
    record.update(awsRegion="us-east-1", recipientAccountId=ACCOUNT, userIdentity=ATTACKER)
    record["resources"] = [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key}]
    path = tmp_path / "schedule-key-deletion.json"
    path.write_text(json.dumps(record))
    kms.schedule_key_deletion(KeyId=kid(key), PendingWindowInDays=7)
    monkeypatch.setenv("PROTECTED_KEYS", kid(key))
    monkeypatch.delenv("DRY_RUN", raising=False)
    assert main(["replay", "--apply", "--json", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(a["action"], a["status"]) for a in result["actions"]][:2] == [
        ("kms:cancel-key-deletion", "succeeded"),
        ("kms:enable-key", "succeeded"),
    ]
    assert kms.describe_key(KeyId=kid(key))["KeyMetadata"]["KeyState"] == "Enabled"
