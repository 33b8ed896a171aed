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
    from collections.abc import Callable

    from chalicelib.actions.base import EvidenceSink, KeysAPI
    from chalicelib.executors.kms import KeyRegistry, KMSGateway, PolicyStore
    from chalicelib.executors.ledger import IncidentLedger
    from chalicelib.notifiers.base import Notifier
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
    from chalicelib.executors.scan_findings import ScanFindingsReader
    from chalicelib.responder import Responder

    return Responder(
        current_rules,
        current,
        build_connector(current),
        build_evidence(current),
        aws=AwsConnector(aws_session),
        identity=IdentityConnector(aws_session),
        keys=build_keys(current),
        scans=ScanFindingsReader(aws_session),
    )


def build_policy_store(current: Settings) -> PolicyStore | None:
    from chalicelib.executors.kms import PolicyStore

    if current.key_policy_bucket:
        return PolicyStore(
            s3=aws_session().client("s3"), bucket=current.key_policy_bucket, prefix=current.evidence_prefix
        )
    if current.evidence_dir:
        return PolicyStore(folder=current.evidence_dir)
    return None


def key_registry(current: Settings, gateway: KMSGateway, region: str) -> KeyRegistry:
    from chalicelib.executors.kms import KeyRegistry

    session = aws_session()
    return KeyRegistry(
        gateway,
        listed=current.protected_keys,
        tag=current.protected_key_tag,
        clusters=current.clusters,
        eks=session.client("eks", region_name=region) if current.clusters else None,
        ec2=session.client("ec2", region_name=region) if current.clusters else None,
    )


def build_keys(current: Settings) -> Callable[..., KeysAPI]:
    """A factory of KMS access per region: gateway, key registry and policy store."""
    from chalicelib.executors.kms import Keys, KMSConnector

    connector = KMSConnector(aws_session)

    def make(region: str, *, dry_run: bool) -> KeysAPI:
        gateway = connector.gateway(region, dry_run=dry_run)
        registry = key_registry(current, gateway, region)
        return Keys(gateway, registry, build_policy_store(current))

    return make


def refresh_key_policies(region: str | None = None) -> dict[str, Any]:
    """The scheduled job: store the current policy of every protected key as the last known good one."""
    from chalicelib.executors.kms import KMSConnector, snapshot_policies

    current = settings()
    where = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    store = build_policy_store(current)
    if store is None:
        return {"stored": [], "error": "no policy store: set KEY_POLICY_BUCKET, EVIDENCE_BUCKET or EVIDENCE_DIR"}
    gateway = KMSConnector(aws_session).gateway(where, dry_run=False)
    registry = key_registry(current, gateway, where)
    return {"stored": snapshot_policies(registry, gateway, store)}


@functools.cache
def responder() -> Responder:
    return build_responder(settings(), rules())


def lambda_mode() -> Mode:
    from chalicelib.responder import Mode

    return Mode.DRY_RUN if settings().dry_run else Mode.LIVE


def build_notifiers(current: Settings, slack_url: str | None = None) -> list[Notifier]:
    """Slack when a webhook secret (or, locally, a URL) is configured; SNS when a topic is."""
    from chalicelib.notifiers.slack import SlackNotifier, secret_webhook
    from chalicelib.notifiers.sns import SNSNotifier

    found: list[Notifier] = []
    if slack_url:
        found.append(SlackNotifier(lambda: slack_url))
    elif current.slack_webhook_secret or current.slack_webhook_parameter:
        found.append(SlackNotifier(secret_webhook(current.slack_webhook_secret, current.slack_webhook_parameter)))
    if current.sns_topic_arn:
        found.append(SNSNotifier(aws_session().client("sns"), current.sns_topic_arn))
    return found


@functools.cache
def notifiers() -> list[Notifier]:
    return build_notifiers(settings())


def handle_event(event: dict[str, Any]) -> dict[str, Any]:
    """The Lambda path: one EventBridge event in, one report (or error) out, then told."""
    from chalicelib import intake

    return intake.handle(event, responder(), lambda_mode(), ledger=ledger(), notifiers=notifiers())


def build_ledger(current: Settings) -> IncidentLedger | None:
    from chalicelib.executors.ledger import IncidentLedger

    table = current.incidents_table
    return IncidentLedger(table, aws_session().client("dynamodb")) if table else None


@functools.cache
def ledger() -> IncidentLedger | None:
    return build_ledger(settings())


def reset() -> None:
    """Forget everything built so far (tests, or a changed environment)."""
    for cached in (settings, rules, aws_session, responder, notifiers, ledger):
        cached.cache_clear()
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]  # the webhook secret is cached for five minutes
