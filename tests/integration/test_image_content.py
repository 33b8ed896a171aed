"""A digest is judged by where its content lives, not by the repository a finding names.

Pushing the production image's bytes to a scratch repository, and letting a scan report an
(accepted) CVE there, must never get the production image blocked at admission everywhere.
ECR is the moto server; the image-blocks ConfigMap is the real API server's.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from chalicelib.actions.k8s.block_image import policy_name
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.interfaces import Status
from chalicelib.policy.loader import load_rules
from chalicelib.policy.model import AcceptedRisk
from chalicelib.response.report import Mode
from chalicelib.settings import DEFAULT_RULES_FILE
from tests.integration.conftest import Cluster
from tests.integration.test_block_image import image_blocks

pytestmark = pytest.mark.integration

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CVE = "CVE-2024-3094"
TODAY = datetime.now(UTC).date()


def push(ecr: Any, repository: str, layer: str) -> str:
    """One image whose digest follows from its layer: the same layer in two repositories is one digest."""
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repository)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": f"sha256:{'c' * 64}", "size": 1},
                "layers": [{"digest": f"sha256:{layer}", "size": 1,
                            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}]}  # fmt: skip
    answer = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag="1.0")
    return str(answer["image"]["imageId"]["imageDigest"])


def scan_of(repository: str, digest: str) -> Incident:
    return Incident(
        id=f"ecr-scan-{repository.replace('/', '-')}@{digest}",
        source="ecr",
        type="ECR:ImageScan",
        title=f"ECR scan of {repository}: CRITICAL 1",
        severity=Severity.CRITICAL,
        score=9.0,
        account="123456789012",
        region="us-east-1",
        resource_kind=ResourceKind.IMAGE,
        images=(f"{HOST}/{repository}@{digest}",),
        details={"repository": repository, "digest": digest, "tags": "1.0", "cve": CVE},
    )


def _copy_of_production(ecr: Any, layer: str) -> str:
    """The production image's bytes pushed again to a scratch repository: one digest in both."""
    push(ecr, "prod/payments", layer)
    return push(ecr, "scratch/anything", layer)


def _with_risks(*risks: AcceptedRisk) -> Any:
    return msgspec.structs.replace(load_rules(DEFAULT_RULES_FILE), accepted_risks=risks)


def _block(report: Any) -> Any:
    (found,) = [r for r in report.actions if r.action == "k8s:block-image"]
    return found


@pytest.fixture
def ecr(aws_session: Any) -> Any:
    return aws_session.client("ecr")


@pytest.fixture
def layer() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def test_the_production_images_bytes_in_a_scratch_repository_are_never_blocked(
    cluster: Cluster, make_responder: Any, ecr: Any, layer: str
) -> None:
    production = push(ecr, "prod/payments", layer)
    copied = push(ecr, "scratch/anything", layer)
    assert copied == production
    responder = make_responder(clusters=("local",), protected_images=(f"{HOST}/prod/*",))
    before = image_blocks(cluster)

    report = responder.handle(scan_of("scratch/anything", copied), Mode.LIVE)

    block = _block(report)
    assert block.status is Status.SKIPPED, block.detail
    assert "also in protected repository prod/payments (PROTECTED_IMAGES)" in block.detail
    assert image_blocks(cluster) == before  # nothing written: no entry for the digest
    assert policy_name(f"{HOST}/scratch/anything@{copied}") not in image_blocks(cluster)


def test_a_digest_an_accepted_risk_covers_elsewhere_in_the_registry_is_never_blocked(
    cluster: Cluster, make_responder: Any, ecr: Any, layer: str
) -> None:
    copied = _copy_of_production(ecr, layer)
    risk = AcceptedRisk(cve=CVE, repositories=("prod/*",), expires=TODAY + timedelta(days=30),
                        reason="patched in the next release, JIRA-12")  # fmt: skip
    responder = make_responder(rules=_with_risks(risk), clusters=("local",))

    block = _block(responder.handle(scan_of("scratch/anything", copied), Mode.LIVE))

    assert block.status is Status.SKIPPED, block.detail
    assert f"repository prod/payments, where {CVE} is an accepted risk (patched in the next release" in block.detail
    assert policy_name(f"{HOST}/scratch/anything@{copied}") not in image_blocks(cluster)


def test_an_expired_accepted_risk_or_another_cve_protects_nothing(
    cluster: Cluster, make_responder: Any, ecr: Any, layer: str
) -> None:
    copied = _copy_of_production(ecr, layer)
    expired = AcceptedRisk(cve=CVE, repositories=("prod/*",), expires=TODAY - timedelta(days=1), reason="old")
    other = AcceptedRisk(cve="CVE-2021-44228", repositories=("prod/*",), expires=TODAY, reason="other")
    rules = _with_risks(expired, other)

    responder = make_responder(rules=rules, clusters=("local",))
    block = _block(responder.handle(scan_of("scratch/anything", copied), Mode.LIVE))

    assert block.status is Status.SUCCEEDED, block.detail
    assert policy_name(f"{HOST}/scratch/anything@{copied}") in image_blocks(cluster)


def test_a_digest_no_protected_repository_holds_is_blocked(
    cluster: Cluster, make_responder: Any, ecr: Any, layer: str
) -> None:
    push(ecr, "prod/payments", uuid.uuid4().hex * 2)  # other bytes
    scratch = push(ecr, "scratch/anything", layer)
    responder = make_responder(clusters=("local",), protected_images=(f"{HOST}/prod/*",))

    block = _block(responder.handle(scan_of("scratch/anything", scratch), Mode.LIVE))

    assert block.status is Status.SUCCEEDED, block.detail
    assert policy_name(f"{HOST}/scratch/anything@{scratch}") in image_blocks(cluster)


def test_when_the_registry_cannot_be_read_nothing_is_blocked(
    cluster: Cluster, make_responder: Any, ecr: Any, layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = push(ecr, "scratch/anything", layer)
    # a registry the responder has no endpoint for: every ECR call fails to connect
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")
    responder = make_responder(clusters=("local",), protected_images=(f"{HOST}/prod/*",))

    block = _block(responder.handle(scan_of("scratch/anything", scratch), Mode.LIVE))

    assert block.status is Status.SKIPPED, block.detail
    assert block.detail.startswith(f"NOT BLOCKED: where {scratch} lives in registry 123456789012 could not be read")
    assert policy_name(f"{HOST}/scratch/anything@{scratch}") not in image_blocks(cluster)
