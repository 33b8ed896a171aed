"""The demo's member account: a finding from account B, contained there through B's spoke role."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from devstack import narrate, stack

ROOT = Path(__file__).resolve().parents[1]
MEMBER = "210987654321"
HUB = "123456789012"
EVENT = ROOT / "events" / "guardduty" / "credential-access-kubernetes-malicious-ip-caller.json"
POLICY = "eks-responder-revoke-older-sessions"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


_say = narrate.say


def _session(env: dict[str, str], account: str | None = None) -> Any:
    import boto3

    keys = {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    hub = boto3.session.Session(**keys, region_name="us-east-1")
    if account is None:
        return hub
    creds = hub.client("sts", endpoint_url=env["AWS_ENDPOINT_URL"]).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="demo-setup"
    )["Credentials"]
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"], region_name="us-east-1")  # fmt: skip


def _revocation(env: dict[str, str], session: Any) -> str:
    iam = session.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"])
    try:
        document = iam.get_role_policy(RoleName="developer", PolicyName=POLICY)["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        return "no revocation"
    document = json.loads(document) if isinstance(document, str) else document
    return f"{POLICY} (statement {document['Statement'][0]['Sid']})"


def run(env: dict[str, str]) -> int:
    _say(f"A second account: a finding from member account {MEMBER}, contained there through its spoke role")
    member = _session(env, MEMBER)
    iam = member.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"])
    iam.create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
    iam.create_account_alias(AccountAlias="demo-payments")  # the messages name it
    event = json.loads(EVENT.read_text())
    event["id"], event["account"] = "demo-member-0001", MEMBER
    event["detail"].update(id="bb58ba0fda05c4a3253c92dd408cff48", accountId=MEMBER)
    user = event["detail"]["resource"]["kubernetesDetails"]["kubernetesUserDetails"]
    user["username"] = f"arn:aws:sts::{MEMBER}:assumed-role/developer/jane"
    user["uid"] = f"aws-iam-authenticator:{MEMBER}:AROAEXAMPLEDEVELOPER"
    folder = stack.scratch("member")
    (folder / "event.json").write_text(json.dumps(event))
    hub_before = _revocation(env, _session(env))
    print(f"  before: account {MEMBER} role developer: {_revocation(env, member)}")
    print(f"          account {HUB} (the hub) role developer: {hub_before}")
    # The local stack has one cluster, the hub's: this rule keeps to what the member account itself
    # holds (its IAM role), as a member without cluster access would be handled.
    rules = folder / "rules.yaml"
    rules.write_text(json.dumps({"version": 1, "rules": [
        {"name": "member-credentials", "match": {"finding_types": ["CredentialAccess:Kubernetes/*"]},
         "actions": [{"action": "iam:revoke-role-sessions"}]}]}))  # fmt: skip
    staged = {**env, "MANAGED_ACCOUNTS": MEMBER, "SPOKE_EXTERNAL_ID": "demo-organization-external-id",
              "RULES_FILE": str(rules)}  # fmt: skip
    cmd = [sys.executable, "-m", "chalicelib.commands.cli", "replay", "--live", "--apply", str(folder / "event.json")]
    code = subprocess.run(cmd, env=staged, check=False).returncode
    hub_after = _revocation(env, _session(env))
    print(f"  after:  account {MEMBER} role developer: {_revocation(env, member)}")
    same = "unchanged" if hub_after == hub_before else f"CHANGED: {hub_after}"
    print(f"          account {HUB} (the hub) role developer: {same}")
    return code
