"""The composition root: settings, rules, clients, built once per Lambda container.

Heavy modules (boto3, lightkube) are imported here, on first use, never at import time.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from chalicelib.policy.loader import load_rules
from chalicelib.settings import Settings

if TYPE_CHECKING:
    from chalicelib.actions.base import EvidenceSink
    from chalicelib.policy.model import RulesFile
    from chalicelib.responder import KubeConnector, Mode, Responder


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def rules() -> RulesFile:
    return load_rules(settings().rules_file)


@functools.cache
def aws_session() -> Any:
    import boto3

    return boto3.session.Session()


def build_connector(current: Settings) -> KubeConnector:
    from chalicelib.executors.kube import ClusterConnector

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return ClusterConnector(kubeconfig=current.kubeconfig, aws_session=aws_session, region=region)


def build_evidence(current: Settings) -> EvidenceSink | None:
    from chalicelib.executors.evidence import FolderEvidence, S3Evidence

    if current.evidence_bucket:
        return S3Evidence(aws_session().client("s3"), current.evidence_bucket, current.evidence_prefix)
    if current.evidence_dir:
        return FolderEvidence(current.evidence_dir)
    return None


def build_responder(current: Settings, current_rules: RulesFile) -> Responder:
    from chalicelib.executors.aws import AwsConnector
    from chalicelib.executors.identity import IdentityConnector
    from chalicelib.responder import Responder

    return Responder(
        current_rules,
        current,
        build_connector(current),
        build_evidence(current),
        aws=AwsConnector(aws_session),
        identity=IdentityConnector(aws_session),
    )


@functools.cache
def responder() -> Responder:
    return build_responder(settings(), rules())


def lambda_mode() -> Mode:
    from chalicelib.responder import Mode

    return Mode.DRY_RUN if settings().dry_run else Mode.LIVE


def handle_event(event: dict[str, Any]) -> dict[str, Any]:
    """The Lambda path: one EventBridge event in, one report (or error) out."""
    from chalicelib import intake

    return intake.handle(event, responder(), lambda_mode())


def reset() -> None:
    """Forget everything built so far (tests, or a changed environment)."""
    for cached in (settings, rules, aws_session, responder):
        cached.cache_clear()
