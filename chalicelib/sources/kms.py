"""KMS events: CloudTrail "AWS API Call via CloudTrail" records for KMS, and native KMS events.

Formats: the KMS developer guide's CloudTrail examples and "Monitoring with EventBridge".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from msgspec import Meta, field

from chalicelib import key_policies
from chalicelib.errors import EventError
from chalicelib.incident import (
    Incident,
    Principal,
    PrincipalRole,
    ResourceKind,
    Severity,
    principal_from_arn,
    timestamp,
)
from chalicelib.validation import Lenient, ValidationError, describe, parse

SOURCE = "kms"
API_CALL = "AWS API Call via CloudTrail"
# What KMS does on its own, as CloudTrail records it: the end of a deletion's waiting period
# (DeleteKey: the key is gone; the native "KMS CMK Deletion" event, which is subscribed, says the
# same), automatic rotation (RotateKey), expired imported material. Read when they arrive (a replay
# of a trail, or a subscription someone adds), never mistaken for a caller's API call.
SERVICE_EVENT = "AWS Service Event via CloudTrail"
_SERVICE_SEVERITY = {"DeleteKey": Severity.HIGH, "DeleteExpiredKeyMaterial": Severity.HIGH}
_SERVICE_SAYS = {"DeleteKey": "the key's scheduled deletion ran: it is gone",
                 "RotateKey": "KMS rotated the key material itself",
                 "DeleteExpiredKeyMaterial": "imported key material expired and was deleted"}  # fmt: skip
MAX_POLICY = 32_768  # a key policy is at most 32 KB
NATIVE_EVENTS = {
    "KMS CMK Deletion": "CMKDeletion",
    "KMS Imported Key Material Expiration": "ImportedKeyMaterialExpiration",
    "KMS CMK Rotation": "CMKRotation",
}

# What each call does to a key, as far as the responder cares.
_HIGH = {"ScheduleKeyDeletion", "DisableKey", "PutKeyPolicy", "DeleteImportedKeyMaterial", "CMKDeletion"}
_MEDIUM = {"CreateGrant", "DisableKeyRotation", "UpdatePrimaryRegion", "ImportedKeyMaterialExpiration",
           "ReplicateKey", "UpdateAlias", "DeleteAlias"}  # fmt: skip


class SessionIssuerModel(Lenient, frozen=True):
    type: str | None = None
    arn: str | None = None


class SessionContextModel(Lenient, frozen=True):
    session_issuer: SessionIssuerModel | None = field(default=None, name="sessionIssuer")


class UserIdentityModel(Lenient, frozen=True):
    type: str | None = None
    arn: str | None = None
    account_id: str | None = field(default=None, name="accountId")
    invoked_by: str | None = field(default=None, name="invokedBy")
    session_context: SessionContextModel | None = field(default=None, name="sessionContext")


class ResourceRefModel(Lenient, frozen=True):
    arn: str | None = field(default=None, name="ARN")
    type: str | None = None


class CloudTrailRecordModel(Lenient, frozen=True, kw_only=True):
    """The `detail` of an "AWS API Call via CloudTrail" event (one CloudTrail record)."""

    event_id: Annotated[str, Meta(min_length=1)] = field(name="eventID")
    event_name: Annotated[str, Meta(min_length=1)] = field(name="eventName")
    event_source: str = field(name="eventSource")
    event_time: str | None = field(default=None, name="eventTime")
    aws_region: str = field(name="awsRegion")
    recipient_account_id: str | None = field(default=None, name="recipientAccountId")
    user_identity: UserIdentityModel | None = field(default=None, name="userIdentity")
    request_parameters: dict[str, Any] | None = field(default=None, name="requestParameters")
    response_elements: dict[str, Any] | None = field(default=None, name="responseElements")
    resources: list[ResourceRefModel] | None = None
    error_code: str | None = field(default=None, name="errorCode")
    error_message: str | None = field(default=None, name="errorMessage")
    read_only: bool | None = field(default=None, name="readOnly")


class KMSEventModel(Lenient, frozen=True, kw_only=True):
    id: str | None = None
    source: str
    detail_type: str = field(name="detail-type")
    account: str | None = None
    region: str | None = None
    resources: list[str] | None = None
    detail: dict[str, Any]


def to_incident(event: dict[str, Any], raw_ref: str | None = None) -> Incident:
    try:
        envelope = parse(event, KMSEventModel)
    except ValidationError as exc:
        raise EventError(f"not a valid KMS event: {describe(exc)}") from None
    if envelope.detail_type in NATIVE_EVENTS:
        return _native(envelope, raw_ref)
    if envelope.detail_type not in (API_CALL, SERVICE_EVENT):
        raise EventError(f"unsupported KMS event detail-type {envelope.detail_type!r}")
    try:
        record = parse(envelope.detail, CloudTrailRecordModel)
    except ValidationError as exc:
        raise EventError(f"not a valid CloudTrail record: {describe(exc)}") from None
    if record.event_source != "kms.amazonaws.com":
        raise EventError(f"not a KMS call: eventSource={record.event_source!r}")
    if envelope.detail_type == SERVICE_EVENT:
        return _service_event(envelope, record, raw_ref)
    return _api_call(envelope, record, raw_ref)


def _service_event(envelope: KMSEventModel, record: CloudTrailRecordModel, raw_ref: str | None) -> Incident:
    """KMS acting on its own: no caller to contain, a fact to report (severity by what it means)."""
    incident = _api_call(envelope, record, raw_ref)
    name = record.event_name
    severity = _SERVICE_SEVERITY.get(name, Severity.LOW)
    says = _SERVICE_SAYS.get(name, "an AWS service event")
    return replace(incident, severity=severity, score={Severity.HIGH: 8.0}.get(severity, 2.0), principals=(),
                   title=f"KMS {name} by AWS: {says}",
                   details={**incident.details, "service_event": "true"})  # fmt: skip


def replica_grants(policy: str, key_account: str) -> tuple[str, ...]:
    """The accounts other than the key's own that a replica's policy allows (`*` for anyone): the
    policy is the caller's text, read as data and bounded; one that cannot be read says so."""
    import json

    if len(policy) > MAX_POLICY:
        return ("(a policy too large to read)",)
    try:
        document = json.loads(policy)
    except (ValueError, RecursionError):
        return ("(a policy that is not JSON)",)
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    found: list[str] = []
    for statement in statements if isinstance(statements, list) else []:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        names = [principal] if isinstance(principal, str) else []
        if isinstance(principal, dict):
            given = principal.get("AWS")
            names = [given] if isinstance(given, str) else [n for n in given or [] if isinstance(n, str)]
        for name in names:
            account = "*" if name == "*" else _account_of(name)
            if account and account != key_account:
                found.append(account)
    return tuple(dict.fromkeys(found))


def _account_of(principal: str) -> str | None:
    if principal.isdigit() and len(principal) == 12:  # noqa: PLR2004 - an account id
        return principal
    parts = principal.split(":")
    if len(parts) > 4 and parts[0] == "arn" and parts[4].isdigit():  # noqa: PLR2004
        return parts[4]
    return "(" + principal[:80] + ")"  # not an account: named as written


def _key_arns(record: CloudTrailRecordModel) -> tuple[str, ...]:
    arns = [r.arn for r in record.resources or [] if r.arn and ":key/" in r.arn]
    response_key = (record.response_elements or {}).get("keyId")
    if not arns and isinstance(response_key, str) and response_key.startswith("arn:"):
        arns.append(response_key)
    return tuple(dict.fromkeys(arns))


def _caller(identity: UserIdentityModel | None) -> list[Principal]:
    if identity is None:
        return []
    issuer = identity.session_context.session_issuer if identity.session_context else None
    arn = issuer.arn if issuer and issuer.arn else identity.arn
    found = principal_from_arn(arn, PrincipalRole.CALLER) if arn else None
    return [found] if found else []


def _api_call(envelope: KMSEventModel, record: CloudTrailRecordModel, raw_ref: str | None) -> Incident:
    name = record.event_name
    failed = record.error_code is not None
    if failed or record.read_only:
        severity = Severity.LOW
    elif name in _HIGH:
        severity = Severity.HIGH
    elif name in _MEDIUM:
        severity = Severity.MEDIUM
    else:
        severity = Severity.LOW
    params = record.request_parameters or {}
    details = {"event_name": name, "event_time": record.event_time or ""}
    if record.error_code:
        details["error"] = f"{record.error_code}: {record.error_message or ''}".strip(": ")
    for key in ("granteePrincipal", "retiringPrincipal", "pendingWindowInDays", "keyId"):
        if params.get(key) is not None:
            details[key] = str(params[key])
    if isinstance(params.get("policy"), str):  # PutKeyPolicy: which version was written, never the text
        details["written_policy_sha256"] = key_policies.digest(params["policy"])
    if name == "ReplicateKey" and not failed:
        severity = _replica(params, record, details, severity)
    if (record.response_elements or {}).get("grantId"):
        details["grantId"] = str(record.response_elements["grantId"])  # type: ignore[index]
    identity = record.user_identity
    if identity and identity.invoked_by:
        details["invoked_by"] = identity.invoked_by
    account = record.recipient_account_id or envelope.account or (identity.account_id if identity else "") or ""
    return Incident(
        id=f"cloudtrail-{record.event_id}",
        source=SOURCE,
        type=f"KMS:{name}",
        title=f"KMS {name}" + (f" failed ({record.error_code})" if failed else ""),
        severity=severity,
        score={Severity.HIGH: 8.0, Severity.MEDIUM: 5.0}.get(severity, 2.0),
        account=account,
        region=record.aws_region,
        resource_kind=ResourceKind.KMS_KEY,
        principals=tuple(_caller(identity)),
        key_arns=_key_arns(record),
        failed=failed,
        details=details,
        event_id=envelope.id,
        raw_ref=raw_ref or record.event_id,
        observed_at=timestamp(record.event_time),
    )


def _replica(
    params: dict[str, Any], record: CloudTrailRecordModel, details: dict[str, str], severity: Severity
) -> Severity:
    """ReplicateKey makes a copy of the key in another region, with its own policy: high when that
    policy lets another account (or anyone) use it, the key material having left the caller's hands."""
    details["replica_region"] = str(params.get("replicaRegion") or "?")[:40]
    key_account = record.recipient_account_id or ""
    policy = params.get("policy")
    if not isinstance(policy, str):
        details["replica_policy"] = "the default key policy (this account only)"
        return severity
    grants = replica_grants(policy, key_account)
    details["replica_policy_sha256"] = key_policies.digest(policy)
    if not grants:
        details["replica_policy"] = "grants no other account"
        return severity
    details["replica_policy"] = "grants " + ", ".join(grants)
    return Severity.HIGH


def _native(envelope: KMSEventModel, raw_ref: str | None) -> Incident:
    kind = NATIVE_EVENTS[envelope.detail_type]
    key_id = str(envelope.detail.get("key-id") or "")
    arns = tuple(r for r in envelope.resources or [] if ":key/" in r)
    if not arns and not key_id:
        raise EventError(f"{envelope.detail_type} event names no key")
    severity = Severity.HIGH if kind in _HIGH else Severity.MEDIUM if kind in _MEDIUM else Severity.LOW
    return Incident(
        id=f"kms-{kind}-{key_id or arns[0]}-{envelope.id or ''}".rstrip("-"),
        source=SOURCE,
        type=f"KMS:{kind}",
        title=envelope.detail_type,
        severity=severity,
        score={Severity.HIGH: 8.0, Severity.MEDIUM: 5.0}.get(severity, 2.0),
        account=envelope.account or "",
        region=envelope.region or "",
        resource_kind=ResourceKind.KMS_KEY,
        key_arns=arns,
        details={"key-id": key_id},
        event_id=envelope.id,
        raw_ref=raw_ref,
    )
