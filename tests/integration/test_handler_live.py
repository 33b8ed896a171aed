"""The Lambda handler end to end: EventBridge event in, cluster contained, evidence in (moto) S3."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client as ChaliceClient
from lightkube import Client
from lightkube.resources.core_v1 import Pod

import app
from chalicelib.entry import wiring
from chalicelib.interfaces import QUARANTINE_LABEL
from devstack.stack import LocalStack
from tests.conftest import ROOT, load_event
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration
BUCKET = "eks-responder-evidence-demo"  # the stage the IAM proof evaluates names this bucket


@pytest.fixture
def lambda_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    local_stack.moto_reset()
    for key, value in local_stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EVIDENCE_BUCKET", BUCKET)
    s3 = boto3.client("s3", endpoint_url=local_stack.moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    wiring.reset()
    yield s3
    wiring.responder().close()
    wiring.reset()


@pytest.fixture
def project_with_bucket(tmp_path: Path) -> Path:
    """The project's Chalice config, as a user would have it: with an evidence bucket named."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in config["stages"].values():
        stage["environment_variables"]["EVIDENCE_BUCKET"] = BUCKET
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    return tmp_path


def _event_for(namespace: str, pod: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("execution-runtime-reverse-shell"))
    workload = event["detail"]["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]
    workload.update({"name": pod, "namespace": namespace})
    event["detail"]["id"] = f"handler-{namespace}"
    del event["detail"]["resource"]["instanceDetails"]
    return event


@pytest.mark.parametrize(("stage", "isolated"), [("prod", True), ("dev", False)])
def test_handler_contains_in_prod_and_only_plans_in_dev(
    stage: str, isolated: bool, cluster: Cluster, admin: Client, lambda_env: Any, project_with_bucket: Path
) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    with ChaliceClient(app.app, stage_name=stage, project_dir=str(project_with_bucket)) as client:
        response = client.lambda_.invoke("on_guardduty_finding", _event_for(cluster.namespace, pod))
    payload = response.payload
    assert payload["rule"] == "compromised-pod"
    assert payload["mode"] == ("live" if isolated else "dry-run")
    labels = admin.get(Pod, pod, namespace=cluster.namespace).metadata.labels or {}
    assert (labels.get(QUARANTINE_LABEL) == "true") is isolated
    keys = [o["Key"] for o in lambda_env.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    where = f"evidence/123456789012/us-east-1/handler-{cluster.namespace}"
    manifest = f"{where}/pods/{cluster.namespace}/{pod}/MANIFEST.json"
    assert (manifest in keys) is isolated
