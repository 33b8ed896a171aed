"""One responder, many accounts: a finding from a member account is acted on there, through its
spoke role, and nowhere else (moto serves every account; the hub is 123456789012)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import boto3
import pytest

from chalicelib.incident import Principal, PrincipalKind
from chalicelib.response.report import Mode
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


def test_messages_name_the_account_by_its_alias_read_through_the_spoke(aws_session: Any, make_responder: Any) -> None:
    from chalicelib.notifiers import slack_message

    named, bare = MEMBERS[1], MEMBERS[2]
    for account in (named, bare):
        session = in_account(aws_session, account)
        session.client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    in_account(aws_session, named).client("iam").create_account_alias(AccountAlias="payments-prod")
    responder = make_responder(rules_with("iam:revoke-role-sessions"), managed_accounts=MEMBERS)

    report = responder.handle(_finding(named), Mode.LIVE)
    assert report.account_alias == "payments-prod"
    assert f"acting in account {named} (payments-prod) through its spoke role" in " ".join(report.notes)
    text = json.dumps(slack_message.build(report.to_dict()))
    assert f"`{named} (payments-prod)`" in text
    # an account without an alias is named by its number alone; the alias is not borrowed
    other = responder.handle(_finding(bare), Mode.LIVE)
    assert other.account_alias is None
    assert f"acting in account {bare} through its spoke role" in " ".join(other.notes)


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

    from chalicelib.entry import flow_logs as batch
    from chalicelib.entry import wiring
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
    from chalicelib.entry import wiring
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


def _flow_object(session: Any, bucket: str, logged_by: str) -> str:
    """A delivered flow-log object (one record to a listed address) in `session`'s account."""
    import gzip

    from chalicelib.flowlogs.fields import DEFAULT

    record = f"2 {logged_by} eni-0a1b2c3d 10.0.1.5 45.10.0.9 40001 443 6 10 4000 1764320000 1764320060 ACCEPT OK"
    key = f"AWSLogs/{logged_by}/vpcflowlogs/eu-west-1/2026/12/01/{logged_by}_vpcflowlogs_eu-west-1_fl-1_x.log.gz"
    s3 = session.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(f"{' '.join(DEFAULT.fields)}\n{record}\n".encode()))
    return key


def _deliver(bucket: str, key: str, owner: str, current: Any, responder: Any) -> dict[str, Any]:
    from chalicelib.entry import wiring

    event = {"id": "e-1", "source": "aws.s3", "detail-type": "Object Created", "account": owner,
             "region": "us-east-1", "detail": {"bucket": {"name": bucket}, "object": {"key": key}}}  # fmt: skip
    (delivery,) = wiring.flow_log_objects(event, current, wiring.flow_intake(responder, Mode.DRY_RUN, "us-east-1"))[
        "deliveries"
    ]
    return delivery  # type: ignore[no-any-return]


def test_a_flow_log_object_is_read_in_the_account_that_owns_its_bucket(
    aws_session: Any, make_responder: Any, tmp_path: Any
) -> None:
    from chalicelib.settings import Settings
    from tests.integration.iam_calls import RECORDED

    archive, logged_by = MEMBERS[0], MEMBERS[1]  # a central log-archive account holds every member's flow logs
    key = _flow_object(in_account(aws_session, archive), "flow-logs", logged_by)
    (tmp_path / "threats.txt").write_text("45.10.0.9\n")
    current = Settings(flow_logs_bucket="flow-logs", threat_list=str(tmp_path / "threats.txt"))
    before = len(RECORDED)
    responder = make_responder(managed_accounts=MEMBERS)

    delivery = _deliver("flow-logs", key, archive, current, responder)
    assert (delivery["records"], delivery["error"]) == (1, None)
    reads = [c for c in RECORDED[before:] if (c.service, c.operation) == ("s3", "GetObject")]
    assert [c.account for c in reads] == [archive]  # through the archive's spoke role, not the hub's own
    # the flows are the logging account's, in its region, as the key names them
    (found,) = delivery["results"]
    assert (found["incident"]["account"], found["incident"]["region"]) == (logged_by, "eu-west-1")

    # a bucket owned by an account that is not managed is not read at all, and that is told
    after = len(RECORDED)
    unmanaged = _deliver("flow-logs", key, UNMANAGED, current, responder)
    assert unmanaged["records"] == 0
    assert f"cannot read the object: account {UNMANAGED} is not managed" in unmanaged["error"]
    assert not [c for c in RECORDED[after:] if c.service == "s3"]


def test_each_member_may_keep_its_own_flow_log_bucket(aws_session: Any, make_responder: Any) -> None:
    from chalicelib.settings import Settings
    from tests.integration import iam_calls

    member = MEMBERS[2]
    key = _flow_object(in_account(aws_session, member), f"acme-flow-logs-{member}", member)
    current = Settings(flow_logs_bucket="acme-flow-logs-{account}")
    responder = make_responder(managed_accounts=MEMBERS)
    # The IAM proof judges calls against one stage's bucket name; this name's grant to each spoke is
    # checked in tests/unit/test_spoke.py.
    with iam_calls.paused():
        delivery = _deliver(f"acme-flow-logs-{member}", key, member, current, responder)
        assert (delivery["records"], delivery["error"]) == (1, None)
        # another account's bucket, claimed by a member's event: not its bucket, not read
        other = _deliver(f"acme-flow-logs-{MEMBERS[0]}", key, member, current, responder)
    assert other["ignored"] == f"not the flow-log bucket acme-flow-logs-{member} of account {member}"


def test_a_key_naming_another_account_in_a_members_bucket_is_refused(
    aws_session: Any, make_responder: Any, tmp_path: Any
) -> None:
    """Member B owns its bucket and may write any key there: an object under `AWSLogs/<A>/...` in
    B's bucket is never attributed or acted on in account A (through A's spoke role)."""
    from chalicelib.settings import Settings
    from tests.integration import iam_calls
    from tests.integration.iam_calls import RECORDED

    victim, attacker = MEMBERS[0], MEMBERS[2]
    key = _flow_object(in_account(aws_session, attacker), f"acme-flow-logs-{attacker}", victim)
    (tmp_path / "threats.txt").write_text("45.10.0.9\n")
    current = Settings(flow_logs_bucket="acme-flow-logs-{account}", threat_list=str(tmp_path / "threats.txt"))
    responder = make_responder(managed_accounts=MEMBERS)
    sent: list[dict[str, Any]] = []

    class Told:
        name = "test"

        def send(self, report: dict[str, Any]) -> None:
            sent.append(report)

    before = len(RECORDED)
    from chalicelib.entry import wiring

    detail = {"bucket": {"name": f"acme-flow-logs-{attacker}"}, "object": {"key": key}}
    event = {"id": "e-1", "source": "aws.s3", "detail-type": "Object Created", "account": attacker,
             "region": "us-east-1", "detail": detail}  # fmt: skip
    with iam_calls.paused():
        intake = wiring.flow_intake(responder, Mode.LIVE, "us-east-1", notifiers_=[Told()])
        (delivery,) = wiring.flow_log_objects(event, current, intake)["deliveries"]
    assert delivery["error"].startswith(f"refused: the key names account {victim}"), delivery
    assert "incident" not in delivery
    assert [r["error"] for r in sent] == [delivery["error"]]  # told, with the object's name
    assert sent[0]["event_id"] == f"s3://acme-flow-logs-{attacker}/{key}"
    # Nothing was read, looked up or changed in the victim's account (no call at all there).
    assert not [c for c in RECORDED[before:] if c.account == victim]


def test_a_members_finding_never_reaches_the_hubs_cluster_through_a_plain_name(
    cluster: Any, make_responder: Any, aws_session: Any
) -> None:
    """The kubeconfig's plain-named context `local` is the hub's cluster: a member's finding about
    its own cluster `local` must not label the hub's pod of that name."""
    from chalicelib.interfaces import INVESTIGATION_LABEL
    from tests.integration.test_block_image import labels

    pod = cluster.pod("web")
    member = MEMBERS[0]
    found = replace(incident(namespace=cluster.namespace, pods=(pod,)), account=member)
    responder = make_responder(rules_with("k8s:label-pod"), managed_accounts=MEMBERS)
    report = responder.handle(found, Mode.LIVE)
    assert [a.status.value for a in report.actions] != ["succeeded"], report.actions
    assert "a plain name stands for the hub's own cluster" in json.dumps(report.to_dict())
    assert INVESTIGATION_LABEL not in labels(cluster, cluster.namespace, pod)
    # The hub's own finding about its cluster is acted on as before.
    own = responder.handle(replace(found, id=f"{found.id}-hub", account=HUB), Mode.LIVE)
    assert [a.status.value for a in own.actions] == ["succeeded"], own.actions
    assert labels(cluster, cluster.namespace, pod)[INVESTIGATION_LABEL] == "true"


def test_an_own_account_sts_cannot_establish_never_lets_the_hub_act_for_a_member(
    aws_session: Any, make_responder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = {a: in_account(aws_session, a) for a in MEMBERS}
    accounts[HUB] = aws_session
    for session in accounts.values():
        session.client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    responder = make_responder(rules_with("iam:revoke-role-sessions"), managed_accounts=MEMBERS)

    def unavailable() -> str:
        raise RuntimeError("STS: Throttling")

    monkeypatch.setattr(responder._identity, "account", unavailable)
    report = responder.handle(_finding(MEMBERS[0]), Mode.LIVE)
    (step,) = report.actions
    assert step.status.value == "failed"
    assert "own account could not be established" in step.detail
    assert not any(_revoked(s) for s in accounts.values())  # the hub's same-named role above all
