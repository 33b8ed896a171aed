"""The composition root: settings, rules, clients, built once per Lambda container.

Heavy modules (boto3, the Kubernetes client) are imported here, on first use, never at import time.
"""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING, Any

from chalicelib.entry import decisions
from chalicelib.policy.loader import load_rules
from chalicelib.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from chalice.app import Response

    from chalicelib.entry.flow_logs import Intake
    from chalicelib.entry.intake import Ledger
    from chalicelib.executors.accounts import Spokes
    from chalicelib.executors.caps import CapLeases
    from chalicelib.executors.kms import KeyRegistry, KMSGateway, PolicyStore
    from chalicelib.executors.ledger import IncidentLedger
    from chalicelib.executors.plans import PlanStore
    from chalicelib.flowlogs.addresses import Forbidden, Ranges
    from chalicelib.flowlogs.attribution import Attribution
    from chalicelib.flowlogs.detect import DetectorSettings, Scanner
    from chalicelib.flowlogs.fields import Layout
    from chalicelib.interfaces import EvidenceSink, KeysAPI, KubeAPI
    from chalicelib.notifiers.base import Notifier
    from chalicelib.policy.model import RulesFile
    from chalicelib.response.execute import KubeConnector, Responder
    from chalicelib.response.plan import Plan
    from chalicelib.response.report import Mode


def region(default: str = "us-east-1") -> str:
    """The function's region (Lambda sets AWS_REGION), or the caller's configured default."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or default


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def rules() -> RulesFile:
    return load_rules(settings().rules_file)


@functools.cache
def aws_session() -> Any:
    """Every AWS client: standard retries (throttling and 5xx, exponential backoff with jitter),
    bounded attempts and timeouts, so a throttled API slows a step down but never hangs it."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    retries = {"mode": "standard", "total_max_attempts": settings().aws_max_attempts}
    session._session.set_default_client_config(Config(retries=retries, connect_timeout=5, read_timeout=10))
    # Every attempt, retries included, is sent only while the invocation has time left to record and tell.
    session.events.register("before-send", _before_send)
    return session


@functools.cache
def aws_client(service: str) -> Any:
    """One client per service for the function's own account and region (clients are thread-safe):
    the incident table's plan store, caps and ledger share one, instead of loading its model three
    times at every cold start."""
    return aws_session().client(service)


def _before_send(**_: Any) -> None:
    from chalicelib.invocation import check_deadline

    check_deadline("the AWS request")


def build_connector(current: Settings) -> KubeConnector:
    return _LazyConnector(current)


class _LazyConnector:
    """The Kubernetes connector, made when a cluster is first asked for: a plan (`replay`
    offline) never loads the Kubernetes client."""

    def __init__(self, current: Settings) -> None:
        self._current = current
        self._made: KubeConnector | None = None

    def _connector(self) -> KubeConnector:
        if self._made is None:
            from chalicelib.executors.kube import ClusterConnector

            current = self._current
            self._made = ClusterConnector(kubeconfig=current.kubeconfig, aws_session=aws_session,
                                          region=region("") or None, timeout=current.kube_timeout)  # fmt: skip
        return self._made

    def gateway(self, cluster: str, region: str | None, *, dry_run: bool, account: str | None = None) -> KubeAPI:
        return self._connector().gateway(cluster, region, dry_run=dry_run, account=account)

    def close(self) -> None:
        if self._made is not None:
            self._made.close()


def build_evidence(current: Settings) -> EvidenceSink | None:
    from chalicelib.executors.evidence import FolderEvidence, S3Evidence

    if current.evidence_bucket:
        session = aws_session()
        return S3Evidence(session.client("s3"), current.evidence_bucket, current.evidence_prefix,
                          presigner(session))  # fmt: skip
    if current.evidence_dir:
        return FolderEvidence(current.evidence_dir)
    return None


def presigner(session: Any) -> Any:
    """The S3 client that signs URLs a node uses: regional, virtual-hosted (what the memory-capture
    document's parameters accept). Against a local endpoint, the session's own client."""
    import os

    if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"):
        return None
    from botocore.config import Config

    style = Config(signature_version="s3v4", s3={"addressing_style": "virtual"})
    return session.client("s3", region_name=region(), config=style)


def build_responder(current: Settings, current_rules: RulesFile) -> Responder:
    from chalicelib.executors.aws import AwsConnector
    from chalicelib.executors.guardduty_findings import FindingReader
    from chalicelib.executors.identity import IdentityConnector
    from chalicelib.executors.image_places import ImagePlaces
    from chalicelib.executors.scan_findings import ScanFindingsReader
    from chalicelib.response.execute import Responder

    return Responder(
        current_rules,
        current,
        build_connector(current),
        build_evidence(current),
        aws=AwsConnector(aws_session),
        identity=IdentityConnector(aws_session),
        keys=build_keys(current),
        scans=ScanFindingsReader(aws_session),
        caps=build_caps(current),
        plans=build_plans(current),
        spokes=build_spokes(current),
        findings=FindingReader(aws_session),
        images=ImagePlaces(aws_session),
    )


def build_spokes(current: Settings) -> Spokes | None:
    """Member accounts (MANAGED_ACCOUNTS): connectors built on the spoke role's credentials, rebuilt
    when they are assumed again (shortly before they expire)."""
    if not current.managed_accounts:
        return None
    from chalicelib.executors.accounts import ManagedAccounts, SpokeCredentials, Spokes
    from chalicelib.executors.aws import AwsConnector
    from chalicelib.executors.guardduty_findings import FindingReader
    from chalicelib.executors.identity import IdentityConnector
    from chalicelib.executors.image_places import ImagePlaces
    from chalicelib.executors.kube import ClusterConnector
    from chalicelib.response.execute import Connectors

    def build(spoke: Callable[[], Any], via: str) -> Connectors:
        kube = ClusterConnector(kubeconfig=current.kubeconfig, aws_session=spoke, region=region("") or None,
                                timeout=current.kube_timeout, plain_names=False)  # fmt: skip
        return Connectors(kube, AwsConnector(spoke), IdentityConnector(spoke), build_keys(current, spoke), via,
                          FindingReader(spoke), ImagePlaces(spoke))  # fmt: skip

    credentials = SpokeCredentials(aws_session, current.spoke_role, current.spoke_external_id)
    return Spokes(credentials, build, ManagedAccounts(current.managed_accounts, aws_session))


def build_plans(current: Settings) -> PlanStore[Plan] | None:
    """Plans waiting for approval live in the incident table; without it nothing can wait."""
    from chalicelib.executors.plans import PlanStore
    from chalicelib.response.plan import Plan

    table = current.incidents_table
    return PlanStore(table, aws_client("dynamodb"), Plan.from_dict) if table else None


def build_caps(current: Settings) -> CapLeases | None:
    """Caps shared by every invocation need the incident table; without it each run counts alone."""
    from chalicelib.executors.caps import CapLeases

    table = current.incidents_table
    return CapLeases(table, aws_client("dynamodb")) if table else None


def build_policy_store(current: Settings) -> PolicyStore | None:
    from chalicelib.executors.kms import PolicyStore

    if current.key_policy_bucket:
        return PolicyStore(s3=aws_client("s3"), bucket=current.key_policy_bucket, prefix=current.evidence_prefix)
    if current.evidence_dir:
        return PolicyStore(folder=current.evidence_dir)
    return None


def key_registry(
    current: Settings, gateway: KMSGateway, region: str, account_session: Callable[[], Any] | None = None
) -> KeyRegistry:
    from chalicelib.executors.kms import KeyRegistry

    session = (account_session or aws_session)()
    return KeyRegistry(
        gateway,
        listed=current.protected_keys,
        tag=current.protected_key_tag,
        clusters=current.clusters,
        eks=session.client("eks", region_name=region) if current.clusters else None,
        ec2=session.client("ec2", region_name=region) if current.clusters else None,
    )


def build_keys(current: Settings, account_session: Callable[[], Any] | None = None) -> Callable[..., KeysAPI]:
    """A factory of KMS access per region (in the hub's account, or a member's): gateway, key
    registry and policy store (the store is the hub's)."""
    from chalicelib.executors.kms import Keys, KMSConnector

    connector = KMSConnector(account_session or aws_session)

    def make(region: str, *, dry_run: bool) -> KeysAPI:
        gateway = connector.gateway(region, dry_run=dry_run)
        registry = key_registry(current, gateway, region, account_session)
        return Keys(gateway, registry, build_policy_store(current))

    return make


def refresh_key_policies(region_name: str | None = None) -> dict[str, Any]:
    """The scheduled job: store the current policy of every protected key as the last known good one,
    in this account and (through their spoke roles) in every member account."""
    from chalicelib.entry import key_snapshot
    from chalicelib.executors.kms import KMSConnector

    current = settings()
    where = region_name or region()
    store = build_policy_store(current)
    if store is None:
        return {"stored": [], "error": "no policy store: set KEY_POLICY_BUCKET, EVIDENCE_BUCKET or EVIDENCE_DIR"}
    gateway = KMSConnector(aws_session).gateway(where, dry_run=False)
    spokes = build_spokes(current)

    def member(account: str) -> tuple[KeyRegistry, KMSGateway]:
        assert spokes is not None
        spoke = functools.partial(spokes.credentials.session, account, "key-policy-snapshot")
        found = KMSConnector(spoke).gateway(where, dry_run=False)
        return key_registry(current.for_account(account), found, where, spoke), found

    members = spokes.members() if spokes is not None else []
    return key_snapshot.refresh(store, (key_registry(current, gateway, where), gateway), members, member)


@functools.cache
def responder() -> Responder:
    return build_responder(settings(), rules())


def lambda_mode() -> Mode:
    from chalicelib.response.report import Mode

    return Mode.DRY_RUN if settings().dry_run else Mode.LIVE


def build_notifiers(current: Settings, slack_url: str | None = None) -> list[Notifier]:
    """Every output its settings configure (docs/integrations/); Slack from `slack_url` locally."""
    from chalicelib.notifiers import outputs

    return outputs.build(current, aws_session, slack_url)


@functools.cache
def notifiers() -> list[Notifier]:
    return build_notifiers(settings())


def handle_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda path: one EventBridge event in, one report (or error) out, then told."""
    from chalicelib.entry import intake
    from chalicelib.invocation import invocation

    with invocation(context):
        if decisions.is_carry_out(event):
            return carry_out(str(event["detail"]["incident_id"]))
        return intake.handle(event, responder(), lambda_mode(), ledger=ledger(), notifiers=notifiers())


def carry_out(incident_id: str, current: Settings | None = None, actor: Responder | None = None,
              told: Sequence[Notifier] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run the approved steps of a stored plan (in the function that owns its playbook)."""
    current = current or settings()
    store = build_plans(current)
    if store is None:
        return {"incident_id": incident_id, "error": "no INCIDENTS_TABLE: no plan is kept, nothing to carry out"}
    return decisions.carry_out(store, actor or responder(), incident_id, notifiers() if told is None else told)


def decide(
    incident_id: str,
    *,
    approve: bool,
    steps: tuple[int, ...] | None,
    who: str,
    current: Settings | None = None,
    run: Callable[[str], dict[str, Any]] | None = None,
    revision: str | None = None,
) -> dict[str, Any]:
    """Record a human's decision; when steps were approved, have them carried out."""
    current = current or settings()
    store = build_plans(current)
    if store is None:
        return {"incident_id": incident_id, "error": "no INCIDENTS_TABLE: no plan is kept, nothing to decide"}
    return decisions.decide(store, incident_id, approve=approve, steps=steps, who=who, revision=revision,
                            run=run or (lambda incident: invoke_owner(incident, current)),
                            notifiers=build_notifiers(current))  # fmt: skip


def slack_action(request: Any, current: Settings | None = None) -> Response:
    """The Slack interactivity route, composed: a decision is recorded here, a release requested here,
    and either is carried out by the function that owns the incident's playbook."""
    from chalicelib.entry import slack_route
    from chalicelib.notifiers.slack_interactivity import group_members

    current = current or settings()
    chosen = current

    def decided(incident_id: str, **how: Any) -> dict[str, Any]:
        return decide(incident_id, current=chosen, **how)

    def released(
        incident_id: str, *, steps: tuple[int, ...] | None, who: str, revision: str | None = None
    ) -> dict[str, Any]:
        store = build_plans(chosen)
        if store is None:
            return {"error": "no INCIDENTS_TABLE: no plan is kept, nothing to release"}
        return decisions.request_release(store, incident_id, steps=steps, who=who, revision=revision,
                                         run=lambda incident: invoke_owner(incident, chosen))  # fmt: skip

    members = group_members(current.slack_bot_token_secret, current.slack_api_url)
    return slack_route.respond(request, current, decided, released, members)


def handle_capture_status(event: dict[str, Any], current: Settings | None = None) -> dict[str, Any]:
    """A memory capture's command ended: its manifest, the audit record and the message."""
    from chalicelib.actions.ec2.memory_document import document_name
    from chalicelib.entry.captures import report_ended

    current = current or settings()
    return report_ended(event, document_name(current.stage), build_evidence(current), build_notifiers(current))


def expire_plans(current: Settings | None = None) -> dict[str, Any]:
    """The 15-minute schedule: plans nobody answered in time expire, and it is said once."""
    current = current or settings()
    store = build_plans(current)
    if store is None:
        return {"expired": [], "note": "no INCIDENTS_TABLE: no plan is kept"}
    return decisions.expire(store, notifiers())


def invoke_owner(incident_id: str, current: Settings) -> dict[str, Any]:
    """In Lambda, the function that owns the incident's playbook carries the steps out (with its own
    permissions, asynchronously); elsewhere (a local server, the demo), here and now."""
    import json
    import os

    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return carry_out(incident_id, current)

    def invoke(name: str, payload: dict[str, Any]) -> None:
        aws_session().client("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(payload))

    return decisions.hand_to_owner(build_plans(current), incident_id, current.stage, invoke)


def build_ledger(current: Settings) -> IncidentLedger | None:
    from chalicelib.executors.ledger import IncidentLedger

    table = current.incidents_table
    return IncidentLedger(table, aws_client("dynamodb")) if table else None


@functools.cache
def ledger() -> IncidentLedger | None:
    return build_ledger(settings())


def reset() -> None:
    """Forget everything built so far (tests, or a changed environment), closing its connections."""
    if responder.cache_info().currsize:
        responder().close()
    for cached in (settings, rules, aws_session, aws_client, responder, notifiers, ledger):  # plans: built per call
        cached.cache_clear()
    _threats.clear()
    from chalicelib.notifiers.slack_interactivity import forget_groups

    forget_groups()
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]  # the webhook secret is cached for five minutes


# -- VPC Flow Logs ---------------------------------------------------------------------------------

THREAT_LIST_TTL = 900.0  # seconds a loaded threat list is used before it is read again


def detector_settings(current: Settings) -> DetectorSettings:
    from chalicelib.flowlogs.detect import DetectorSettings

    return DetectorSettings(
        enabled=frozenset(current.flow_detectors),
        mining_ports=current.flow_mining_ports,
        admin_ports=current.flow_admin_ports,
        scan_min_ports=current.flow_scan_min_ports,
        scan_max_bytes=current.flow_scan_max_bytes,
        egress_bytes=current.flow_egress_bytes,
        sweep_min_addresses=current.flow_sweep_min_addresses,
        forbidden=forbidden_destinations(current.flow_forbidden_destinations),
    )


@functools.cache
def forbidden_destinations(entries: tuple[str, ...]) -> Forbidden:
    from chalicelib.flowlogs.addresses import parse_forbidden

    return parse_forbidden(entries, "FLOW_FORBIDDEN_DESTINATIONS")


_threats: dict[str | None, tuple[float, Ranges]] = {}


def threat_ranges(current: Settings) -> Ranges:
    """The threat list as merged ranges, kept for the container's life and refreshed every 15 minutes."""
    from chalicelib.flowlogs.addresses import Ranges, parse_networks

    cached = _threats.get(current.threat_list)
    if cached is not None and time.monotonic() - cached[0] < THREAT_LIST_TTL:
        return cached[1]
    if current.threat_list is None:
        ranges = Ranges(())
    else:
        from chalicelib.executors.flow_sources import read_threat_list

        text = read_threat_list(current.threat_list, lambda: aws_client("s3"))
        ranges = parse_networks(text, current.threat_list)
    _threats[current.threat_list] = (time.monotonic(), ranges)
    return ranges


def scanner(current: Settings) -> Scanner:
    from chalicelib.flowlogs.addresses import Classifier
    from chalicelib.flowlogs.detect import Scanner

    forbidden = forbidden_destinations(current.flow_forbidden_destinations).ranges
    return Scanner(Classifier(threat_ranges(current), internal_ranges(current.flow_internal_cidrs), forbidden),
                   detector_settings(current))  # fmt: skip


@functools.cache
def internal_ranges(cidrs: tuple[str, ...]) -> Ranges:
    from chalicelib.flowlogs.addresses import parse_networks

    return parse_networks("\n".join(cidrs), "FLOW_INTERNAL_CIDRS")


def flow_layout(current: Settings) -> Layout | None:
    from chalicelib.flowlogs.fields import parse_format

    return parse_format(current.flow_log_format) if current.flow_log_format else None


def flow_intake(
    responder_: Responder,
    mode: Mode,
    region: str,
    ledger_: Ledger | None = None,
    notifiers_: Sequence[Notifier] = (),
) -> Intake:
    from chalicelib.entry.flow_logs import Intake
    from chalicelib.response.report import Mode as Modes

    def attribution(account: str) -> Attribution | str | None:
        return None if mode is Modes.PLAN else responder_.attribution(region, account or None)

    return Intake(responder_, mode, attribution, ledger_, notifiers_)


def handle_flow_log_objects(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda path for flow logs delivered to S3: every object named in the event."""
    from chalicelib.invocation import invocation

    current = settings()
    with invocation(context):
        intake = flow_intake(responder(), lambda_mode(), region(), ledger(), notifiers())
        return flow_log_objects(event, current, intake)


def _flow_setup(current: Settings) -> tuple[Layout | None, Scanner]:
    """The configured format and a scanner with the threat list: configuration errors surface here."""
    return flow_layout(current), scanner(current)


def handle_flow_log_payload(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda path for a CloudWatch Logs subscription delivery."""
    from chalicelib.invocation import invocation

    with invocation(context):
        from chalicelib.entry.flow_logs import function_account

        return _flow_log_payload(event, function_account(context))


def flow_log_objects(event: dict[str, Any], current: Settings, intake: Intake) -> dict[str, Any]:
    from chalicelib.entry import flow_logs

    return flow_logs.objects(event, current, intake, lambda: _flow_setup(current), region())


def _flow_log_payload(event: dict[str, Any], account: str | None = None) -> dict[str, Any]:
    from chalicelib.entry import flow_logs

    current = settings()
    where = region()
    # A subscription is in the function's own account (CloudWatch Logs invokes a function of its own).
    return flow_logs.payload(
        event,
        lambda: _flow_setup(current),
        where,
        (lambda: account) if account else lambda: responder().own_account(),
        notifiers(),
        lambda: flow_intake(responder(), lambda_mode(), where, ledger(), notifiers()),
    )
