"""One responder, many accounts: a finding from a member account is acted on there, through its
spoke role, and nowhere else (moto serves every account; the hub is 123456789012)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import boto3
import pytest

from chalicelib.incident import Principal, PrincipalKind
from chalicelib.responder import Mode
from tests.integration.conftest import incident, rules_with

pytestmark = pytest.mark.integration
HUB = "123456789012"
MEMBERS = ("111111111111", "222222222222", "333333333333")
UNMANAGED = "444444444444"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})
POLICY = "eks-responder-revoke-older-sessions"


def in_account(aws_session: Any, account: str) -> Any:
    """A session in `account`, as an administrator there would have it (moto: assume any role)."""
    creds = aws_session.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/admin", RoleSessionName="test-setup"
    )["Credentials"]
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"], region_name="us-east-1")  # fmt: skip


def node_instance(session: Any) -> dict[str, Any]:
    """A worker node of cluster `prod` in the session's account."""
    ec2 = session.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "eks:cluster-name", "Value": "prod"}]}]
    made: dict[str, Any] = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=tags)[
        "Instances"
    ][0]
    return made


def _finding(account: str) -> Any:
    found = incident(kind=incident().resource_kind, type_="CredentialAccess:Kubernetes/MaliciousIPCaller")
    arn = f"arn:aws:iam::{account}:role/developer"
    return replace(
        found, account=account, cluster=None, principals=(Principal(PrincipalKind.IAM_ROLE, "developer", arn),)
    )


def _revoked(session: Any) -> bool:
    return POLICY in session.client("iam").list_role_policies(RoleName="developer")["PolicyNames"]


def test_each_finding_is_contained_in_its_own_account_and_nowhere_else(aws_session: Any, make_responder: Any) -> None:
    accounts = {a: in_account(aws_session, a) for a in (*MEMBERS, UNMANAGED)}
    accounts[HUB] = aws_session
    for session in accounts.values():
        session.client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    responder = make_responder(rules_with("iam:revoke-role-sessions"), managed_accounts=MEMBERS,
                               spoke_external_id="org-responder")  # fmt: skip

    for member in MEMBERS:
        report = responder.handle(_finding(member), Mode.LIVE)
        assert [a.status.value for a in report.actions] == ["succeeded"], report.actions
        assert (
            f"acting in account {member} through its spoke role arn:aws:iam::{member}:role/eks-responder-spoke"
            in report.notes
        )
        # contained in that account, and in no other (0 cross-account actions)
        assert {a for a, s in accounts.items() if _revoked(s)} == set(MEMBERS[: MEMBERS.index(member) + 1])

    # several findings from one account: one AssumeRole per account per credential lifetime
    for _ in range(5):
        responder.handle(_finding(MEMBERS[0]), Mode.LIVE)
    assert responder._spokes.credentials.assumed == len(MEMBERS)

    # an account that is not managed: reported, nothing done, said
    (result,) = responder.handle(_finding(UNMANAGED), Mode.LIVE).actions
    assert result.status.value == "skipped"
    assert f"account {UNMANAGED} is not managed by this responder" in result.detail
    assert not _revoked(accounts[UNMANAGED])
    assert not _revoked(accounts[HUB])


def test_a_spoke_role_that_cannot_be_assumed_fails_and_never_falls_back(aws_session: Any, make_responder: Any) -> None:
    aws_session.client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    member = in_account(aws_session, MEMBERS[0])
    member.client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    # An external id STS refuses (AWS requires 2 to 1,224 characters): AssumeRole fails, nothing is done.
    responder = make_responder(rules_with("iam:revoke-role-sessions"), managed_accounts=("*",), spoke_external_id="x")
    (result,) = responder.handle(_finding(MEMBERS[0]), Mode.LIVE).actions
    assert result.status.value == "failed"
    assert "cannot assume arn:aws:iam::111111111111:role/eks-responder-spoke" in result.detail
    assert "never with the hub's credentials" in result.detail
    assert not _revoked(member)
    assert not _revoked(aws_session)  # the hub's own role of the same name is untouched


def test_instances_and_keys_are_contained_in_their_own_account(aws_session: Any, make_responder: Any) -> None:
    from tests.integration.test_kms import event, kid
    from tests.integration.test_node_aws import EC2_FINDING

    sessions = {a: in_account(aws_session, a) for a in MEMBERS}
    sessions[HUB] = aws_session
    instances, keys = {}, {}
    for account, session in sessions.items():
        instances[account] = node_instance(session)["InstanceId"]
        keys[account] = session.client("kms").create_key(Description="secrets")["KeyMetadata"]["Arn"]
        session.client("kms").schedule_key_deletion(KeyId=kid(keys[account]), PendingWindowInDays=7)

    def protected(account: str) -> bool:
        found = sessions[account].client("ec2").describe_instance_attribute(
            InstanceId=instances[account], Attribute="disableApiTermination")  # fmt: skip
        return bool(found["DisableApiTermination"]["Value"])

    def pending(account: str) -> bool:
        state = sessions[account].client("kms").describe_key(KeyId=kid(keys[account]))["KeyMetadata"]["KeyState"]
        return str(state) == "PendingDeletion"

    ec2_rules = rules_with("ec2:protect-instance")
    for member in MEMBERS:
        found = replace(incident(instance_ids=(instances[member],), type_=EC2_FINDING), account=member, cluster="prod")
        report = make_responder(ec2_rules, managed_accounts=MEMBERS).handle(found, Mode.LIVE)
        assert [a.status.value for a in report.actions] == ["succeeded"], report.actions
        attack = replace(event("ScheduleKeyDeletion", keys[member]), account=member)
        kms_report = make_responder(managed_accounts=MEMBERS, protected_keys=("*",)).handle(attack, Mode.LIVE)
        statuses = {a.action: a.status.value for a in kms_report.actions}
        assert statuses["kms:cancel-key-deletion"] == "succeeded", kms_report.actions
    assert {a for a in sessions if protected(a)} == set(MEMBERS)  # the hub's own instance untouched
    assert {a for a in sessions if pending(a)} == {HUB}  # only the members' keys restored


def test_an_organizational_unit_manages_its_accounts_and_only_them(aws_session: Any, make_responder: Any) -> None:
    organizations = aws_session.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    root = organizations.list_roots()["Roots"][0]["Id"]
    workloads = organizations.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
    nested = organizations.create_organizational_unit(ParentId=workloads, Name="prod")["OrganizationalUnit"]["Id"]

    def account(name: str, parent: str) -> str:
        made = organizations.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]
        organizations.move_account(AccountId=made["AccountId"], SourceParentId=root, DestinationParentId=parent)
        return str(made["AccountId"])

    inside, outside = account("payments", nested), account("sandbox", root)
    for member in (inside, outside):
        in_account(aws_session, member).client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    responder = make_responder(rules_with("iam:revoke-role-sessions"), managed_accounts=(workloads,))
    (acted,) = responder.handle(_finding(inside), Mode.LIVE).actions
    assert acted.status.value == "succeeded", acted.detail
    (left,) = responder.handle(_finding(outside), Mode.LIVE).actions
    assert left.status.value == "skipped"
    assert "is not managed" in left.detail
    assert _revoked(in_account(aws_session, inside))
    assert not _revoked(in_account(aws_session, outside))


def test_an_account_override_makes_that_account_drier_and_no_other(aws_session: Any, make_responder: Any) -> None:
    sessions = {a: in_account(aws_session, a) for a in MEMBERS[:2]}
    for session in sessions.values():
        session.client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    careful, trusted = MEMBERS[:2]
    responder = make_responder(rules_with("iam:revoke-role-sessions"), managed_accounts=MEMBERS,
                               account_overrides={careful: {"DRY_RUN": "true"}},
                               source={"DRY_RUN": "false"})  # fmt: skip
    dry = responder.handle(_finding(careful), Mode.LIVE)
    assert dry.mode is Mode.DRY_RUN
    assert [a.status.value for a in dry.actions] == ["planned"]
    assert not _revoked(sessions[careful])
    live = responder.handle(_finding(trusted), Mode.LIVE)
    assert [a.status.value for a in live.actions] == ["succeeded"]
    assert _revoked(sessions[trusted])


def test_a_member_accounts_flow_logs_are_attributed_in_that_account(aws_session: Any, make_responder: Any) -> None:
    import base64
    import gzip
    from datetime import UTC, datetime

    from chalicelib import wiring
    from chalicelib.flowlogs import batch
    from chalicelib.flowlogs.addresses import Classifier, Ranges
    from chalicelib.flowlogs.detect import Scanner

    member = MEMBERS[0]
    made = node_instance(in_account(aws_session, member))
    eni, address = made["NetworkInterfaces"][0]["NetworkInterfaceId"], made["PrivateIpAddress"]
    record = f"2 {member} {eni} {address} 45.10.1.9 40000 443 6 10 4000 1764320000 1764320060 ACCEPT OK"
    events = [{"id": "1", "timestamp": 0, "message": record}]
    body = {"messageType": "DATA_MESSAGE", "owner": member, "logGroup": "/vpc/flow-logs", "logStream": eni,
            "subscriptionFilters": ["eks-responder"], "logEvents": events}  # fmt: skip
    payload = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()}}

    def attributed(responder: Any) -> str:
        scanner = Scanner(Classifier(Ranges(["45.10.0.0/16"])))
        delivery = batch.scan_payload(payload, None, scanner, datetime.now(UTC), "us-east-1")
        (result,) = batch.respond(delivery, wiring.flow_intake(responder, Mode.LIVE, "us-east-1"))["results"]
        return str(result["incident"]["details"].get("attribution", ""))

    # in the member account, through its spoke role: the instance behind the address is found
    assert made["InstanceId"] in attributed(make_responder(managed_accounts=(member,)))
    # not managed: the member's addresses are not looked up with the hub's credentials
    assert made["InstanceId"] not in attributed(make_responder())


def test_a_members_evidence_names_its_account(aws_session: Any, make_responder: Any, tmp_path: Any) -> None:
    from tests.integration.test_node_aws import EC2_FINDING

    member = MEMBERS[1]
    instance = node_instance(in_account(aws_session, member))
    found = replace(incident(instance_ids=(instance["InstanceId"],), type_=EC2_FINDING), account=member, cluster="prod")
    report = make_responder(rules_with("ec2:isolate-instance"), managed_accounts=(member,)).handle(found, Mode.LIVE)
    assert [a.status.value for a in report.actions] == ["succeeded"], report.actions
    (manifest,) = (tmp_path / "evidence").rglob("MANIFEST.json")
    assert json.loads(manifest.read_text())["account"] == member
    # and the path says it too: one prefix per account and region in the hub's one store
    where = manifest.relative_to(tmp_path / "evidence").parts
    assert where[:3] == (member, found.region, found.id), where
    assert report.evidence == str((tmp_path / "evidence" / member / found.region / found.id).resolve())


def test_a_members_key_policy_is_snapshotted_and_restored_there(
    aws_session: Any, make_responder: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from chalicelib import wiring
    from tests.integration.test_kms import kid, put_key_policy

    member = MEMBERS[2]
    kms = in_account(aws_session, member).client("kms")
    key = kms.create_key(Description="secrets")["KeyMetadata"]["Arn"]
    good = kms.get_key_policy(KeyId=kid(key), PolicyName="default")["Policy"]
    # the hourly snapshot reads the member's protected keys through its spoke role
    monkeypatch.setenv("MANAGED_ACCOUNTS", member)
    monkeypatch.setenv("PROTECTED_KEYS", kid(key))
    monkeypatch.setenv("EVIDENCE_DIR", str(tmp_path / "evidence"))
    wiring.reset()
    assert kid(key) in wiring.refresh_key_policies("us-east-1")["stored"]
    # an attacker in the member account hands the key away; the responder puts the policy back there
    outsider = {"AWS": "arn:aws:iam::999999999999:root"}
    evil = {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": outsider, "Action": "kms:*", "Resource": "*"}]}  # fmt: skip
    kms.put_key_policy(KeyId=kid(key), PolicyName="default", Policy=json.dumps(evil))
    attack = replace(put_key_policy(key, evil), account=member)
    report = make_responder(managed_accounts=(member,), protected_keys=(kid(key),)).handle(attack, Mode.LIVE)
    restore = next(r for r in report.actions if r.action == "kms:restore-key-policy")
    assert restore.status.value == "succeeded", restore.detail
    assert json.loads(kms.get_key_policy(KeyId=kid(key), PolicyName="default")["Policy"]) == json.loads(good)
