"""`eks-responder doctor` against the local stack: a stage set up by `make prerequisites` passes,
and each broken piece is one FAIL line that says how to fix it — the RBAC asked of the real API
server as the responder identity."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from chalicelib import actions
from chalicelib.commands import doctor
from chalicelib.executors.kube import ClusterConnector
from chalicelib.generate.permissions import CLUSTER_ROLE_NAME, cluster_role_documents
from chalicelib.settings import Settings
from deploy import prerequisites
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration
AVML = b"avml stand-in"


@pytest.fixture
def stage(aws_session: Any, local_stack: Any, cluster: Cluster) -> Settings:
    """A stage as `make prerequisites` leaves it, serving the local cluster."""
    names = prerequisites.create(aws_session, "test", "123456789012")
    s3, bucket = aws_session.client("s3"), names["EVIDENCE_BUCKET"]
    # The operator uploads AVML over TLS; the local endpoint speaks HTTP, which the bucket's policy
    # refuses: lift the policy for the upload only.
    policy = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    s3.delete_bucket_policy(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="evidence/tools/avml", Body=AVML)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    return Settings.from_env({**names, "STAGE": "test", "CLUSTERS": "local", "DRY_RUN": "false",
                              "KUBECONFIG": str(local_stack.responder_kubeconfig),
                              "AVML_SHA256": hashlib.sha256(AVML).hexdigest()})  # fmt: skip


@pytest.fixture
def connector(stage: Settings, aws_session: Any) -> Iterator[ClusterConnector]:
    made = ClusterConnector(kubeconfig=stage.kubeconfig, aws_session=lambda: aws_session, region="us-east-1")
    yield made
    made.close()


def _lines(found: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.what: check for check in found}


def test_a_stage_set_up_by_make_prerequisites_passes(stage: Settings, aws_session: Any, connector: Any) -> None:
    # The local endpoint speaks HTTP, which the evidence bucket's policy refuses (TLS only, as it
    # must): with the policy, reading the tool back is refused; without it, the bucket check fails.
    s3, bucket = aws_session.client("s3"), stage.evidence_bucket
    assert bucket is not None
    found = _lines(doctor.run(stage, aws_session, connector))
    # The functions are not deployed here (`make prerequisites` only): delivery says what is missing.
    assert [c.what for c in found.values() if c.status != doctor.OK] == ["delivery", "AVML in the evidence bucket"]
    assert "on_guardduty_finding has no on-failure destination" in found["delivery"].said
    assert "Forbidden" in found["AVML in the evidence bucket"].said
    assert "every permission of the generated ClusterRole" in found["cluster local"].said
    assert found["incident table"].said.startswith("eks-responder-test-incidents")
    assert found["evidence bucket"].said.endswith("(Object Lock, no public access)")
    policy = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    s3.delete_bucket_policy(Bucket=bucket)
    try:
        found = _lines(doctor.run(stage, aws_session, connector))
        other_tool = _lines(doctor.run(replace(stage, avml_sha256="0" * 64), aws_session, connector))
    finally:
        s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert [c.what for c in found.values() if c.status != doctor.OK] == ["evidence bucket", "delivery"]
    assert "does not deny requests without TLS" in found["evidence bucket"].said
    assert found["AVML in the evidence bucket"].said.endswith("matches AVML_SHA256")
    assert "not AVML_SHA256" in other_tool["AVML in the evidence bucket"].said


def test_each_broken_piece_is_a_fail_line_with_its_fix(stage: Settings, aws_session: Any, connector: Any) -> None:
    broken = replace(stage, incidents_table="no-such-table", stage="other", dry_run=True)
    found = _lines(doctor.run(broken, aws_session, connector))
    assert found["incident table"].status == doctor.FAIL
    assert "make prerequisites STAGE=other" in found["incident table"].line()
    assert found["memory-capture document"].status == doctor.FAIL  # stage other has none
    assert found["mode"].status == doctor.WARN
    assert found["cluster local"].status == doctor.OK


def test_a_missing_output_secret_or_bus_is_a_fail_line_with_its_fix(
    stage: Settings, aws_session: Any, connector: Any
) -> None:
    aws_session.client("secretsmanager").create_secret(Name="eks-responder/teams", SecretString="https://x/y")
    aws_session.client("events").create_event_bus(Name="security-events")
    wired = replace(stage, teams_webhook_secret="eks-responder/teams", event_bus_name="security-events",
                    pagerduty_routing_key_secret="eks-responder/no-such-key")  # fmt: skip
    found = _lines(doctor.run(wired, aws_session, connector))
    assert (found["Teams webhook secret"].status, found["event bus"].status) == (doctor.OK, doctor.OK)
    assert found["PagerDuty routing key secret"].status == doctor.FAIL
    assert "create the secret eks-responder/no-such-key" in found["PagerDuty routing key secret"].line()
    gone = _lines(doctor.run(replace(wired, event_bus_name="gone"), aws_session, connector))
    assert "aws events create-event-bus --name gone" in gone["event bus"].line()


def test_a_permission_the_role_lost_is_named(stage: Settings, aws_session: Any, connector: Any, admin: Client) -> None:
    # GIVEN someone removed the node rules from the responder's ClusterRole
    role = admin.get(ClusterRole, CLUSTER_ROLE_NAME)
    kept = [r for r in role.rules or [] if "nodes" not in (r.resources or [])]
    admin.patch(ClusterRole, CLUSTER_ROLE_NAME, {"rules": [r.to_dict() for r in kept]})
    try:
        check = _lines(doctor.run(stage, aws_session, connector))["cluster local"]
    finally:
        for doc in cluster_role_documents(list(actions.REGISTRY.values())):
            admin.apply(from_dict(doc), force=True)
    # THEN the cluster line fails, naming node permissions, and says how to fix it
    assert check.status == doctor.FAIL
    assert "nodes patch" in check.said
    assert "deploy/rbac/clusterrole.yaml" in check.line()


def test_the_installed_command_checks_a_stage_read_from_the_chalice_config(
    stage: Settings, aws_session: Any, local_stack: Any, tmp_path: Any
) -> None:
    """As an operator runs it: `eks-responder doctor --stage` in a folder outside the repository
    (only the installed package importable, no deploy/), the stage's variables from its config."""
    import json
    import os
    import subprocess
    import sys

    chalice = tmp_path / ".chalice"
    chalice.mkdir()
    variables = {"INCIDENTS_TABLE": stage.incidents_table, "EVIDENCE_BUCKET": stage.evidence_bucket,
                 "CLUSTERS": "local", "DRY_RUN": "false",
                 "KUBECONFIG": str(local_stack.responder_kubeconfig)}  # fmt: skip
    config = {"version": "2.0", "app_name": "eks-responder", "environment_variables": {"RESPONDER_NAMESPACE": "x"},
              "stages": {"test": {"environment_variables": variables}}}  # fmt: skip
    (chalice / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("INCIDENTS_TABLE", "EVIDENCE_BUCKET", "STAGE")}
    ran = subprocess.run([sys.executable, "-m", "chalicelib.commands.cli", "doctor", "--stage", "test"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert "Traceback" not in ran.stderr, ran.stderr
    assert ran.stdout.startswith("stage test from .chalice/config.json\n"), ran.stdout
    assert f"ok   incident table: {stage.incidents_table}" in ran.stdout
    assert "evidence bucket" in ran.stdout
    missing = subprocess.run([sys.executable, "-m", "chalicelib.commands.cli", "doctor", "--stage", "nope"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                             timeout=120)  # fmt: skip
    assert missing.returncode != 0
    assert "no stage 'nope' in .chalice/config.json (stages: test)" in missing.stderr
