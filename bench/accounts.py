"""Many accounts: 1,000 findings across 50 member accounts and 3 regions, through spoke roles.

A moto server on loopback stands in for AWS (every account, every region). Each finding revokes
the sessions of a role in its own account; the report gives the AssumeRole calls made (one per
account per credential lifetime, not one per finding), the time per finding, and the check that
every action landed in the finding's own account.

    make bench            # or: .venv/bin/python bench/accounts.py --findings 1000 --accounts 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import time
from pathlib import Path

import goals

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:  # noqa: PLR0915 - one bench, top to bottom
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=50)
    args = parser.parse_args()

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request would drown the figure

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
    try:
        from chalicelib.entry import wiring
        from chalicelib.incident import Incident, Principal, PrincipalKind, ResourceKind, Severity
        from chalicelib.policy.loader import parse_rules
        from chalicelib.response.execute import Responder
        from chalicelib.response.report import Mode
        from chalicelib.settings import Settings

        accounts = [f"{100000000000 + i:012d}" for i in range(args.accounts)]
        hub = boto3.session.Session(region_name="us-east-1")
        for account in accounts:
            creds = hub.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/admin",
                                                  RoleSessionName="bench-setup")["Credentials"]  # fmt: skip
            member = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"], region_name="us-east-1",
            )  # fmt: skip
            member.client("iam").create_role(RoleName="developer", AssumeRolePolicyDocument=TRUST)
        current = Settings(managed_accounts=("*",), spoke_external_id="bench-external-id", dry_run=False)
        rules = parse_rules({"version": 1, "rules": [{"name": "revoke", "actions": [
            {"action": "iam:revoke-role-sessions"}]}]}, "bench")  # fmt: skip
        spokes = wiring.build_spokes(current)
        assert spokes is not None
        from chalicelib.executors.identity import IdentityConnector

        responder = Responder(rules, current, identity=IdentityConnector(wiring.aws_session), spokes=spokes)
        rng = random.Random(20261201)
        times: list[float] = []
        wrong = 0
        for index in range(args.findings):
            account, region = rng.choice(accounts), rng.choice(REGIONS)
            arn = f"arn:aws:iam::{account}:role/developer"
            incident = Incident(
                id=f"bench-{index}", source="guardduty", type="CredentialAccess:Kubernetes/MaliciousIPCaller",
                title="bench", severity=Severity.HIGH, score=8.0, account=account, region=region,
                resource_kind=ResourceKind.CLUSTER, principals=(Principal(PrincipalKind.IAM_ROLE, "developer", arn),),
            )  # fmt: skip
            started = time.perf_counter()
            report = responder.handle(incident, Mode.LIVE)
            times.append((time.perf_counter() - started) * 1000)
            (result,) = report.actions
            if result.status.value not in ("succeeded", "skipped") or not result.target.startswith(
                f"arn:aws:iam::{account}:"
            ):
                wrong += 1
        p95 = sorted(times)[int(len(times) * 0.95)]
        print(f"{args.findings} findings across {args.accounts} accounts and {len(REGIONS)} regions: "
              f"{spokes.credentials.assumed} AssumeRole calls (one per account per credential lifetime), "
              f"median {statistics.median(times):.1f} ms per finding (p95 {p95:.1f} ms), "
              f"{wrong} actions outside their finding's account")  # fmt: skip
        goals.record("many accounts: AssumeRole calls", f"{spokes.credentials.assumed} for {args.accounts} accounts",
                     f"<= {args.accounts}", spokes.credentials.assumed <= args.accounts)  # fmt: skip
        goals.record("many accounts: actions outside their account", str(wrong), "0", wrong == 0)
        per_finding = f"median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms"
        goals.record("many accounts: per finding", per_finding, "", None)
        return 0  # a goal missed is reported by bench/goals.py; only an error stops `make bench`
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
