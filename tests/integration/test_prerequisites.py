"""The one-command deploy prerequisites, against moto: resources created, the stage pointed at them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chalicelib import functions
from chalicelib.executors.evidence import evidence_bucket_problems
from chalicelib.generate import permissions
from deploy import prerequisites
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_prerequisites_are_created_once_and_configured(aws_session: Any, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    shutil.copy(ROOT / ".chalice" / "config.json", config)
    args = ["--stage", "prod", "--region", "us-east-1", "--config", str(config)]
    assert prerequisites.main(args) == 0
    assert prerequisites.main(args) == 0  # a second run keeps what exists
    env = json.loads(config.read_text())["stages"]["prod"]["environment_variables"]
    assert env["DRY_RUN"] == "false"  # the stage's own settings are kept
    table = aws_session.client("dynamodb").describe_table(TableName=env["INCIDENTS_TABLE"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    s3 = aws_session.client("s3")
    lock = s3.get_object_lock_configuration(Bucket=env["EVIDENCE_BUCKET"])["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", prerequisites.RETENTION_DAYS)
    bucket_policy = json.loads(s3.get_bucket_policy(Bucket=env["EVIDENCE_BUCKET"])["Policy"])
    assert {st["Sid"] for st in bucket_policy["Statement"]} == {"TLSOnly", "NoDeletes", "NoLockChanges"}
    assert evidence_bucket_problems(s3, env["EVIDENCE_BUCKET"]) == []
    assert env["SNS_TOPIC_ARN"].startswith("arn:aws:sns:us-east-1:")
    aws_session.client("secretsmanager").describe_secret(SecretId=env["SLACK_WEBHOOK_SECRET"])
    # The generated policy for that stage grants exactly those resources.
    policy = json.dumps(permissions.iam_policy(env, functions.BY_NAME["on_guardduty_finding"], "prod"))
    for resource in (f"table/{env['INCIDENTS_TABLE']}", env["SNS_TOPIC_ARN"], f"{env['EVIDENCE_BUCKET']}/*"):
        assert resource in policy, resource


def test_an_existing_bucket_that_cannot_hold_evidence_is_refused(aws_session: Any, tmp_path: Path) -> None:
    s3 = aws_session.client("s3")
    # A bucket made by hand, in GOVERNANCE mode (which can be bypassed) and with no policy.
    bucket = "eks-responder-prod-evidence-123456789012-us-east-1"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})  # fmt: skip
    problems = evidence_bucket_problems(s3, bucket)
    assert problems == [
        "Object Lock default retention is GOVERNANCE, not COMPLIANCE",
        "its bucket policy does not deny requests without TLS",
        "its bucket policy does not deny deleting objects",
        "its bucket policy does not deny changing the Object Lock configuration",
    ]
    config = tmp_path / "config.json"
    shutil.copy(ROOT / ".chalice" / "config.json", config)
    with pytest.raises(SystemExit, match="cannot be trusted with evidence"):
        prerequisites.main(["--stage", "prod", "--region", "us-east-1", "--config", str(config)])
