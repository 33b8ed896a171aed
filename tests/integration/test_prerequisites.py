"""The one-command deploy prerequisites, against moto: resources created, the stage pointed at them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chalicelib import functions, permissions
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
    lock = aws_session.client("s3").get_object_lock_configuration(Bucket=env["EVIDENCE_BUCKET"])
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    assert env["SNS_TOPIC_ARN"].startswith("arn:aws:sns:us-east-1:")
    aws_session.client("secretsmanager").describe_secret(SecretId=env["SLACK_WEBHOOK_SECRET"])
    # The generated policy for that stage grants exactly those resources.
    policy = json.dumps(permissions.iam_policy(env, functions.BY_NAME["on_guardduty_finding"], "prod"))
    for resource in (f"table/{env['INCIDENTS_TABLE']}", env["SNS_TOPIC_ARN"], f"{env['EVIDENCE_BUCKET']}/*"):
        assert resource in policy, resource
