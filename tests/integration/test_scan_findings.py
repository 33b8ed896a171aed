"""A counts-only ECR scan reads its CVE list from an ECR endpoint before the rules decide."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import pytest

from chalicelib.entry import intake
from chalicelib.policy.loader import load_rules, parse_rules
from chalicelib.response.report import Mode
from chalicelib.settings import DEFAULT_RULES_FILE
from chalicelib.validation import plain
from devstack import stack as devstack
from tests.conftest import SAMPLES, load_json
from tests.integration.conftest import Cluster
from tests.integration.test_block_image import labels, run_pod

pytestmark = pytest.mark.integration

MARK = "eks-responder.io/under-investigation"


def _pushed_and_scanned(aws_session: Any, repository: str) -> str:
    ecr = aws_session.client("ecr")
    ecr.create_repository(repositoryName=repository)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": f"sha256:{uuid.uuid4().hex * 2}"},
            "layers": [],
        }
    )
    image = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag="1.4")["image"]
    ecr.start_image_scan(repositoryName=repository, imageId={"imageTag": "1.4"})
    return str(image["imageId"]["imageDigest"])


def _findings_are(stack: devstack.LocalStack, repository: str, digest: str, findings: list[dict[str, Any]]) -> None:
    """What ECR's scan of this image found, set on the endpoint the way its documentation describes."""
    result = {"registryId": "123456789012", "repositoryName": repository, "imageId": {"imageDigest": digest},
              "imageScanStatus": {"status": "COMPLETE"},
              "imageScanFindings": {"findings": findings}}  # fmt: skip
    body = json.dumps({"results": [result], "region": "us-east-1"}).encode()
    request = urllib.request.Request(f"{stack.moto_url}/moto-api/static/ecr/scan-finding-results", body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status < 300


def _event(repository: str, digest: str) -> dict[str, Any]:
    event: dict[str, Any] = load_json(SAMPLES / "ecr" / "ECR_Image_Scan_basic_COMPLETE.json")
    event["id"] = str(uuid.uuid4())
    event["detail"].update({"repository-name": repository, "image-digest": digest, "image-tags": ["1.4"],
                            "finding-severity-counts": {"CRITICAL": 1, "HIGH": 1}})  # fmt: skip
    return event


FINDINGS = [
    {"name": "CVE-2021-3711", "severity": "CRITICAL", "uri": "https://example.com",
     "attributes": [{"key": "package_name", "value": "openssl"}, {"key": "package_version", "value": "1.1.1k"},
                    {"key": "CVSS3_SCORE", "value": "9.8"}]},
    {"name": "CVE-2022-37434", "severity": "HIGH", "attributes": [{"key": "CVSS2_SCORE", "value": "7.5"}]},
]  # fmt: skip


def _setup(cluster: Cluster, aws_session: Any, local_stack: devstack.LocalStack) -> tuple[str, str]:
    repository = f"payments-{uuid.uuid4().hex[:6]}"
    digest = _pushed_and_scanned(aws_session, repository)
    _findings_are(local_stack, repository, digest, FINDINGS)
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    run_pod(cluster, "api", f"{registry}/{repository}:1.4", cluster.namespace,
            image_id=f"{registry}/{repository}@{digest}")  # fmt: skip
    return repository, digest


def test_the_cve_list_is_read_and_the_critical_one_blocks(
    cluster: Cluster, make_responder: Any, aws_session: Any, local_stack: devstack.LocalStack, kyverno_api: None
) -> None:
    repository, digest = _setup(cluster, aws_session, local_stack)
    result = intake.handle(_event(repository, digest), make_responder(clusters=("local",)), Mode.LIVE)

    details = result["incident"]["details"]
    assert details["cve"] == "CVE-2021-3711"
    assert details["worst_cves"].splitlines() == ["CVE-2021-3711 CRITICAL CVSS 9.8 openssl 1.1.1k",
                                                  "CVE-2022-37434 HIGH CVSS 7.5"]  # fmt: skip
    assert result["rule"] == "block-critical-image"
    assert labels(cluster, cluster.namespace, "api").get(MARK) == "true"


def test_an_accepted_critical_cve_leaves_the_image_reported_not_blocked(
    cluster: Cluster, make_responder: Any, aws_session: Any, local_stack: devstack.LocalStack
) -> None:
    repository, digest = _setup(cluster, aws_session, local_stack)
    rules = plain(load_rules(DEFAULT_RULES_FILE))
    rules["accepted_risks"] = [{"cve": "CVE-2021-3711", "repositories": ["payments-*"], "expires": "2099-01-01",
                                "reason": "not reachable in this service"}]  # fmt: skip
    responder = make_responder(parse_rules(rules, "test"), clusters=("local",))
    result = intake.handle(_event(repository, digest), responder, Mode.LIVE)

    assert result["incident"]["severity"] == "high"
    assert result["incident"]["details"]["accepted_cves"] == "CVE-2021-3711"
    assert result["rule"] == "vulnerable-image"
    assert result["actions"] == []
    assert MARK not in labels(cluster, cluster.namespace, "api")


def test_an_image_ecr_has_no_scan_for_still_acts_on_the_counts(
    cluster: Cluster, make_responder: Any, aws_session: Any, kyverno_api: None
) -> None:
    repository = f"payments-{uuid.uuid4().hex[:6]}"
    aws_session.client("ecr").create_repository(repositoryName=repository)
    digest = f"sha256:{uuid.uuid4().hex * 2}"
    result = intake.handle(_event(repository, digest), make_responder(clusters=("local",)), Mode.LIVE)
    assert "findings_error" in result["incident"]["details"]
    assert result["rule"] == "block-critical-image"
