"""Configuration, read once from the environment (the stage's `environment_variables`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chalicelib.errors import ConfigError
from chalicelib.flow_detectors import DETECTORS as FLOW_DETECTORS
from chalicelib.flow_detectors import MINING_PORTS as FLOW_MINING_PORTS

DEFAULT_RULES_FILE = Path(__file__).parent / "policy" / "rules.yaml"
DEFAULT_PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "amazon-guardduty")
MANAGED_BY = "eks-responder"
# Identities never revoked are named exactly (PROTECTED_PRINCIPALS) or carry this tag with the value
# `true`: a name glob is refused, since anyone who may create a role may give it a matching name.
DEFAULT_PROTECTED_PRINCIPAL_TAG = "eks-responder:protected"
_PRINCIPAL_ARN = r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/([\w+=,.@-]+/)*[\w+=,.@-]{1,128}"
# Addresses never denied in a network ACL: the public DNS resolvers nodes use. Add your NAT
# gateways' addresses, endpoints and partners (NEVER_BLOCK).
DEFAULT_NEVER_BLOCK = (
    "8.8.8.8/32", "8.8.4.4/32", "1.1.1.1/32", "1.0.0.1/32", "9.9.9.9/32", "149.112.112.112/32",
    "208.67.222.222/32", "208.67.220.220/32", "2001:4860:4860::8888/128", "2001:4860:4860::8844/128",
    "2606:4700:4700::1111/128", "2606:4700:4700::1001/128",
)  # fmt: skip


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _url(env: Mapping[str, str], name: str) -> str | None:
    """An output's URL: https (http only to this machine, for the local stack's stand-ins)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "https" and parts.hostname) and not local:
        raise ConfigError(f"{name}={raw!r}: an https URL (http only to this machine)")
    return raw


def _paired(env: Mapping[str, str], name: str, needs: str) -> str | None:
    """A secret that comes with another setting: each needs the other (an unsigned webhook, or a
    ticket system without credentials, is refused at start-up rather than failing every send)."""
    value, other = (env.get(name) or "").strip() or None, (env.get(needs) or "").strip()
    if bool(value) != bool(other):
        raise ConfigError(f"{name} and {needs} go together: set both or neither")
    return value


WRITABLE_SOURCES = ("guardduty", "securityhub", "inspector")


def _writeback(env: Mapping[str, str]) -> tuple[str, ...]:
    values = _list(env, "WRITEBACK_SOURCES")
    wrong = [v for v in values if v not in WRITABLE_SOURCES]
    if wrong:
        only = ", ".join(WRITABLE_SOURCES)
        raise ConfigError(f"WRITEBACK_SOURCES: {', '.join(wrong)} not written back (only {only}: in Security Hub)")
    return values


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    raw = (env.get(name) or allowed[0]).strip().lower()
    if raw not in allowed:
        raise ConfigError(f"{name}={env.get(name)!r} is not one of: {', '.join(allowed)}")
    return raw


def _matching(env: Mapping[str, str], name: str, pattern: str, what: str) -> tuple[str, ...]:
    """A list setting whose every entry must match `pattern` (it is written into requests as is)."""
    values = _list(env, name)
    for value in values:
        if not re.fullmatch(pattern, value):
            raise ConfigError(f"{name}: {value!r} is not {what}")
    return values


def _cidrs(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    import ipaddress

    values = _list(env, name)
    for value in values:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a CIDR block (e.g. 203.0.113.0/24)") from None
        if network.prefixlen == 0:
            raise ConfigError(f"{name}: {value!r} is every address; list the ranges that must keep access")
    return values


def _principals(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Exact IAM role or user ARNs. A glob or a bare name is refused: `iam:CreateRole` is enough to
    satisfy one, so it would let whoever holds it choose who is spared."""
    values = _list(env, name)
    for value in values:
        if not re.fullmatch(_PRINCIPAL_ARN, value):
            raise ConfigError(
                f"{name}: {value!r} is not an exact IAM role or user ARN (arn:aws:iam::<account>:role/<name>); "
                "name globs are refused, since anyone who may create a role can match one: list the ARNs, "
                f"or tag the principals {DEFAULT_PROTECTED_PRINCIPAL_TAG}=true (PROTECTED_PRINCIPAL_TAG)"
            )
    return values


def _overrides(env: Mapping[str, str], allowed: frozenset[str]) -> dict[str, dict[str, str]]:
    """ACCOUNT_OVERRIDES: `{"111122223333": {"DRY_RUN": "true", ...}, ...}` (JSON)."""
    import json

    raw = env.get("ACCOUNT_OVERRIDES")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"ACCOUNT_OVERRIDES is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("ACCOUNT_OVERRIDES must map account ids to settings")
    found: dict[str, dict[str, str]] = {}
    for account, changes in parsed.items():
        if not (isinstance(account, str) and account.isdigit() and len(account) == 12) or not isinstance(changes, dict):  # noqa: PLR2004
            raise ConfigError(f"ACCOUNT_OVERRIDES: {account!r} must be a 12-digit account id mapped to settings")
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ConfigError(f"ACCOUNT_OVERRIDES[{account}]: {', '.join(unknown)} cannot differ per account")
        found[account] = {str(k): str(v) for k, v in changes.items()}
    return found


_MAX_PORT = 65535


# An S3 bucket name once `{account}` (12 digits) and `{region}` are filled in.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _flow_logs_bucket(env: Mapping[str, str]) -> str | None:
    raw = env.get("FLOW_LOGS_BUCKET") or None
    if raw is not None and not _BUCKET.match(raw.replace("{account}", "0" * 12).replace("{region}", "us-east-1")):
        raise ConfigError(f"FLOW_LOGS_BUCKET={raw!r} is not a bucket name ({{account}} and {{region}} may fill it)")
    return raw


def _detectors(env: Mapping[str, str]) -> tuple[str, ...]:
    chosen = _list(env, "FLOW_DETECTORS", FLOW_DETECTORS)
    unknown = [d for d in chosen if d not in FLOW_DETECTORS]
    if unknown:
        raise ConfigError(f"FLOW_DETECTORS: unknown {', '.join(unknown)} (known: {', '.join(FLOW_DETECTORS)})")
    return chosen


def _ports(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _list(env, name)
    if not raw:
        return default if env.get(name) is None else ()
    try:
        ports = tuple(int(p) for p in raw)
    except ValueError:
        raise ConfigError(f"{name}={env.get(name)!r} is not a list of port numbers") from None
    if any(not 0 < p <= _MAX_PORT for p in ports):
        raise ConfigError(f"{name}={env.get(name)!r}: ports are 1-65535")
    return ports


@dataclass(frozen=True)
class Settings:
    """Every knob the responder has. See docs/configuration.md."""

    stage: str = "local"
    dry_run: bool = True
    rules_file: Path = DEFAULT_RULES_FILE
    responder_namespace: str = "eks-responder"
    protected_namespaces: tuple[str, ...] = DEFAULT_PROTECTED_NAMESPACES
    protected_node_labels: tuple[str, ...] = ()  # "key" or "key=value"
    protected_nodes: tuple[str, ...] = ()
    protected_images: tuple[str, ...] = ()
    protected_clusters: tuple[str, ...] = ()
    max_nodes_cordoned_per_hour: int = 3
    protected_instances: tuple[str, ...] = ()
    protected_principals: tuple[str, ...] = ()  # exact role or user ARNs
    protected_principal_tag: str = DEFAULT_PROTECTED_PRINCIPAL_TAG
    public_endpoint_cidrs: tuple[str, ...] = ()  # eks:restrict-public-endpoint's ranges
    allowed_accounts: tuple[str, ...] = ()
    managed_accounts: tuple[str, ...] = ()  # member accounts acted in through the spoke role ("*": any)
    spoke_role: str = "eks-responder-spoke"  # the role's name in every member account
    spoke_external_id: str | None = None
    clusters: tuple[str, ...] = ()  # the clusters this responder serves: key protection, image lookups
    protected_keys: tuple[str, ...] = ()
    protected_key_tag: str | None = None
    kms_admin_principals: tuple[str, ...] = ()
    key_policy_bucket: str | None = None
    slack_webhook_secret: str | None = None  # Secrets Manager secret holding the webhook URL
    slack_webhook_parameter: str | None = None  # or an SSM SecureString
    sns_topic_arn: str | None = None
    # The other outputs (docs/integrations/): each is on when its setting is given.
    event_bus_name: str | None = None  # EventBridge: the responder's own events
    pagerduty_routing_key_secret: str | None = None  # Secrets Manager: an Events API v2 integration key
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    teams_webhook_secret: str | None = None  # Secrets Manager: a Teams Workflows webhook URL
    webhook_url: str | None = None
    webhook_signing_secret: str | None = None  # Secrets Manager: the HMAC key the webhook is signed with
    servicenow_instance_url: str | None = None
    servicenow_credentials_secret: str | None = None  # Secrets Manager: {"username","password"} or {"token"}
    servicenow_table: str = "incident"
    writeback_sources: tuple[str, ...] = ()  # Security Hub workflow write-back: guardduty, securityhub, inspector
    archive_guardduty_findings: bool = False
    incidents_table: str | None = None  # DynamoDB: exactly-once, incident records, plans awaiting approval
    failure_queue_url: str | None = None  # SQS: what failed for good (`eks-responder redrive`)
    approval_default: str = "auto"  # for steps no rule or approvals entry decides: auto | required
    approval_minutes: int = 240  # how long a plan waits for approval before it expires
    approvers: tuple[str, ...] = ()  # Slack user ids (U..., W...) or user-group ids (S...) who decide
    slack_bot_token_secret: str | None = None  # Secrets Manager: a bot token (usergroups:read), for group ids
    slack_api_url: str = "https://slack.com/api/"
    slack_signing_secret: str | None = None  # Secrets Manager secret: Slack's signing secret
    max_instances_isolated_per_hour: int = 3
    never_block: tuple[str, ...] = DEFAULT_NEVER_BLOCK  # CIDRs ec2:block-ip never denies
    max_acl_denies_per_subnet: int = 20  # deny entries ec2:block-ip keeps in one network ACL
    evidence_bucket: str | None = None
    # ec2:capture-memory: the SHA-256 of the AVML binary the operator put at <prefix>/tools/avml
    avml_sha256: str | None = None
    # Security groups (sg-) or prefix lists (pl-) of the VPC endpoints an isolated node may still
    # reach on 443, so a memory capture finishes after isolation (SSM and S3 endpoints only).
    forensics_egress: tuple[str, ...] = ()
    evidence_prefix: str = "evidence"
    evidence_dir: Path | None = None
    kubeconfig: Path | None = None
    kube_timeout: float = 10.0  # seconds per Kubernetes API call; transient failures are retried twice
    aws_max_attempts: int = 5  # botocore standard retry mode: throttling and 5xx, backoff with jitter
    log_tail_lines: int = 200
    # VPC Flow Logs
    # Where flow logs are delivered (scopes s3:GetObject); `{account}`/`{region}` name a bucket per
    # member account, each read in its own account through its spoke role.
    flow_logs_bucket: str | None = None
    flow_log_format: str | None = None  # the flow log's LogFormat, for headerless input; default v2

    def flow_logs_bucket_of(self, account: str, region: str) -> str | None:
        """The flow-log bucket of one account and region (the setting, its slots filled)."""
        if not self.flow_logs_bucket:
            return None
        return self.flow_logs_bucket.replace("{account}", account).replace("{region}", region)

    threat_list: str | None = None  # s3://bucket/key or a file path: one address or CIDR per line
    flow_internal_cidrs: tuple[str, ...] = ()  # public ranges that are ours (an IPv6 VPC's GUA block)
    flow_detectors: tuple[str, ...] = FLOW_DETECTORS
    flow_mining_ports: tuple[int, ...] = FLOW_MINING_PORTS
    flow_admin_ports: tuple[int, ...] = (22, 3389)
    flow_scan_min_ports: int = 100
    flow_scan_max_bytes: int = 1000
    flow_sweep_min_addresses: int = 64
    # CIDR or CIDR:port[-port] our pods and nodes must never reach (control-plane ENIs, other VPCs' ranges)
    flow_forbidden_destinations: tuple[str, ...] = ()
    flow_egress_bytes: int = 1 << 30
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    # ACCOUNT_OVERRIDES: per member account, settings that differ from the stage's (same names).
    account_overrides: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)
    source: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # the environment read

    OVERRIDABLE = frozenset({
        "DRY_RUN", "PROTECTED_NAMESPACES", "PROTECTED_NODE_LABELS", "PROTECTED_NODES", "PROTECTED_IMAGES",
        "PROTECTED_CLUSTERS", "PROTECTED_INSTANCES", "PROTECTED_PRINCIPALS", "PROTECTED_KEYS", "PROTECTED_KEY_TAG",
        "MAX_NODES_CORDONED_PER_HOUR", "MAX_INSTANCES_ISOLATED_PER_HOUR", "MAX_ACL_DENIES_PER_SUBNET", "NEVER_BLOCK",
        "APPROVAL_DEFAULT", "CLUSTERS",
    })  # fmt: skip

    def for_account(self, account: str) -> Settings:
        """The settings that hold for incidents of `account`: the stage's, with its overrides."""
        changes = self.account_overrides.get(account)
        if not changes:
            return self
        return Settings.from_env({**self.source, **changes})

    @property
    def all_protected_namespaces(self) -> tuple[str, ...]:
        """The configured list plus the responder's own namespace, always."""
        if self.responder_namespace in self.protected_namespaces:
            return self.protected_namespaces
        return (*self.protected_namespaces, self.responder_namespace)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        kubeconfig = env.get("KUBECONFIG") or None
        evidence_dir = env.get("EVIDENCE_DIR") or None
        return cls(
            stage=env.get("STAGE", "local"),
            dry_run=_bool(env, "DRY_RUN", default=True),
            rules_file=Path(env.get("RULES_FILE") or DEFAULT_RULES_FILE),
            responder_namespace=env.get("RESPONDER_NAMESPACE", "eks-responder"),
            protected_namespaces=_list(env, "PROTECTED_NAMESPACES", DEFAULT_PROTECTED_NAMESPACES),
            protected_node_labels=_list(env, "PROTECTED_NODE_LABELS"),
            protected_nodes=_list(env, "PROTECTED_NODES"),
            protected_images=_list(env, "PROTECTED_IMAGES"),
            protected_clusters=_list(env, "PROTECTED_CLUSTERS"),
            max_nodes_cordoned_per_hour=_int(env, "MAX_NODES_CORDONED_PER_HOUR", 3),
            protected_instances=_list(env, "PROTECTED_INSTANCES"),
            protected_principals=_principals(env, "PROTECTED_PRINCIPALS"),
            protected_principal_tag=env.get("PROTECTED_PRINCIPAL_TAG") or DEFAULT_PROTECTED_PRINCIPAL_TAG,
            public_endpoint_cidrs=_cidrs(env, "PUBLIC_ENDPOINT_CIDRS"),
            allowed_accounts=_list(env, "ALLOWED_ACCOUNTS"),
            managed_accounts=_list(env, "MANAGED_ACCOUNTS"),
            spoke_role=env.get("SPOKE_ROLE_NAME") or "eks-responder-spoke",
            spoke_external_id=env.get("SPOKE_EXTERNAL_ID") or None,
            clusters=_list(env, "CLUSTERS"),
            protected_keys=_list(env, "PROTECTED_KEYS"),
            protected_key_tag=env.get("PROTECTED_KEY_TAG") or None,
            kms_admin_principals=_principals(env, "KMS_ADMIN_PRINCIPALS"),
            key_policy_bucket=env.get("KEY_POLICY_BUCKET") or env.get("EVIDENCE_BUCKET") or None,
            slack_webhook_secret=env.get("SLACK_WEBHOOK_SECRET") or None,
            slack_webhook_parameter=env.get("SLACK_WEBHOOK_PARAMETER") or None,
            sns_topic_arn=env.get("SNS_TOPIC_ARN") or None,
            event_bus_name=env.get("EVENT_BUS_NAME") or None,
            pagerduty_routing_key_secret=env.get("PAGERDUTY_ROUTING_KEY_SECRET") or None,
            pagerduty_events_url=_url(env, "PAGERDUTY_EVENTS_URL") or "https://events.pagerduty.com/v2/enqueue",
            teams_webhook_secret=env.get("TEAMS_WEBHOOK_SECRET") or None,
            webhook_url=_url(env, "WEBHOOK_URL"),
            webhook_signing_secret=_paired(env, "WEBHOOK_SIGNING_SECRET", "WEBHOOK_URL"),
            servicenow_instance_url=_url(env, "SERVICENOW_INSTANCE_URL"),
            servicenow_credentials_secret=_paired(env, "SERVICENOW_CREDENTIALS_SECRET", "SERVICENOW_INSTANCE_URL"),
            servicenow_table=(_matching(env, "SERVICENOW_TABLE", "[a-z][a-z0-9_]{0,79}", "a table") or ["incident"])[0],
            writeback_sources=_writeback(env),
            archive_guardduty_findings=_bool(env, "ARCHIVE_GUARDDUTY_FINDINGS", default=False),
            incidents_table=env.get("INCIDENTS_TABLE") or None,
            failure_queue_url=env.get("FAILURE_QUEUE_URL") or None,
            approval_default=_choice(env, "APPROVAL_DEFAULT", ("auto", "required")),
            approval_minutes=max(1, _int(env, "APPROVAL_MINUTES", 240)),
            approvers=_list(env, "APPROVERS"),
            slack_bot_token_secret=env.get("SLACK_BOT_TOKEN_SECRET") or None,
            slack_api_url=env.get("SLACK_API_URL") or "https://slack.com/api/",
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            max_instances_isolated_per_hour=_int(env, "MAX_INSTANCES_ISOLATED_PER_HOUR", 3),
            never_block=_list(env, "NEVER_BLOCK", DEFAULT_NEVER_BLOCK),
            max_acl_denies_per_subnet=_int(env, "MAX_ACL_DENIES_PER_SUBNET", 20),
            evidence_bucket=env.get("EVIDENCE_BUCKET") or None,
            avml_sha256=(_matching(env, "AVML_SHA256", "[0-9a-f]{64}", "a SHA-256 (64 lowercase hex)") or (None,))[0],
            forensics_egress=_matching(env, "FORENSICS_EGRESS", "(sg|pl)-[0-9a-f]{8,17}", "an sg- or pl- id"),
            evidence_prefix=env.get("EVIDENCE_PREFIX", "evidence").strip("/") or "evidence",
            evidence_dir=Path(evidence_dir) if evidence_dir else None,
            kubeconfig=Path(kubeconfig) if kubeconfig else None,
            kube_timeout=float(_int(env, "KUBE_TIMEOUT_SECONDS", 10)) or 10.0,
            aws_max_attempts=max(1, _int(env, "AWS_MAX_ATTEMPTS", 5)),
            log_tail_lines=_int(env, "LOG_TAIL_LINES", 200),
            flow_logs_bucket=_flow_logs_bucket(env),
            flow_log_format=env.get("FLOW_LOG_FORMAT") or None,
            threat_list=env.get("THREAT_LIST") or None,
            flow_internal_cidrs=_list(env, "FLOW_INTERNAL_CIDRS"),
            flow_detectors=_detectors(env),
            flow_mining_ports=_ports(env, "FLOW_MINING_PORTS", FLOW_MINING_PORTS),
            flow_admin_ports=_ports(env, "FLOW_ADMIN_PORTS", (22, 3389)),
            flow_scan_min_ports=_int(env, "FLOW_SCAN_MIN_PORTS", 100),
            flow_scan_max_bytes=_int(env, "FLOW_SCAN_MAX_BYTES", 1000),
            flow_sweep_min_addresses=_int(env, "FLOW_SWEEP_MIN_ADDRESSES", 64),
            flow_forbidden_destinations=_list(env, "FLOW_FORBIDDEN_DESTINATIONS"),
            flow_egress_bytes=_int(env, "FLOW_EGRESS_BYTES", 1 << 30),
            account_overrides=_overrides(env, cls.OVERRIDABLE),
            source=dict(env),
        )


def stage_environment(config: Path, stage: str) -> dict[str, str]:
    """The environment a stage's functions get from `.chalice/config.json` (the top level's
    variables, then the stage's), so commands can check or act as that stage would."""
    import json

    try:
        loaded = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {config}: {exc}") from None
    stages = loaded.get("stages") if isinstance(loaded, dict) else None
    if not isinstance(stages, dict) or not isinstance(stages.get(stage), dict):
        known = ", ".join(sorted(stages)) if isinstance(stages, dict) else "none"
        raise ConfigError(f"no stage {stage!r} in {config} (stages: {known})")
    merged = {**(loaded.get("environment_variables") or {}), **(stages[stage].get("environment_variables") or {})}
    return {str(k): str(v) for k, v in merged.items()} | {"STAGE": merged.get("STAGE") or stage}
