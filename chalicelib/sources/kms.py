"""KMS events: CloudTrail "AWS API Call via CloudTrail" records for KMS, and native KMS events.

Formats: the KMS developer guide's CloudTrail examples and "Monitoring with EventBridge".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
from chalicelib.sources.envelope import describe_validation

SOURCE = "kms"
API_CALL = "AWS API Call via CloudTrail"
NATIVE_EVENTS = {
    "KMS CMK Deletion": "CMKDeletion",
    "KMS Imported Key Material Expiration": "ImportedKeyMaterialExpiration",
    "KMS CMK Rotation": "CMKRotation",
}

# What each call does to a key, as far as the responder cares.
_HIGH = {"ScheduleKeyDeletion", "DisableKey", "PutKeyPolicy", "DeleteImportedKeyMaterial", "CMKDeletion"}
_MEDIUM = {"CreateGrant", "DisableKeyRotation", "UpdatePrimaryRegion", "ImportedKeyMaterialExpiration",
           "ReplicateKey", "UpdateAlias", "DeleteAlias"}  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, strict=True, allow_inf_nan=False)


class SessionIssuerModel(_Model):
    type: str | None = None
    arn: str | None = None


class SessionContextModel(_Model):
    session_issuer: SessionIssuerModel | None = Field(None, alias="sessionIssuer")


class UserIdentityModel(_Model):
    type: str | None = None
    arn: str | None = None
    account_id: str | None = Field(None, alias="accountId")
    invoked_by: str | None = Field(None, alias="invokedBy")
    session_context: SessionContextModel | None = Field(None, alias="sessionContext")


class ResourceRefModel(_Model):
    arn: str | None = Field(None, alias="ARN")
    type: str | None = None


class CloudTrailRecordModel(_Model):
    """The `detail` of an "AWS API Call via CloudTrail" event (one CloudTrail record)."""

    event_id: str = Field(alias="eventID", min_length=1)
    event_name: str = Field(alias="eventName", min_length=1)
    event_source: str = Field(alias="eventSource")
    event_time: str | None = Field(None, alias="eventTime")
    aws_region: str = Field(alias="awsRegion")
    recipient_account_id: str | None = Field(None, alias="recipientAccountId")
    user_identity: UserIdentityModel | None = Field(None, alias="userIdentity")
    request_parameters: dict[str, Any] | None = Field(None, alias="requestParameters")
    response_elements: dict[str, Any] | None = Field(None, alias="responseElements")
    resources: list[ResourceRefModel] | None = None
    error_code: str | None = Field(None, alias="errorCode")
    error_message: str | None = Field(None, alias="errorMessage")
    read_only: bool | None = Field(None, alias="readOnly")


class KMSEventModel(_Model):
    id: str | None = None
    source: str
    detail_type: str = Field(alias="detail-type")
    account: str | None = None
    region: str | None = None
    resources: list[str] | None = None
    detail: dict[str, Any]


def to_incident(event: dict[str, Any], raw_ref: str | None = None) -> Incident:
    try:
        envelope = KMSEventModel.model_validate(event)
    except ValidationError as exc:
        raise EventError(f"not a valid KMS event: {describe_validation(exc)}") from None
    if envelope.detail_type in NATIVE_EVENTS:
        return _native(envelope, raw_ref)
    if envelope.detail_type != API_CALL:
        raise EventError(f"unsupported KMS event detail-type {envelope.detail_type!r}")
    try:
        record = CloudTrailRecordModel.model_validate(envelope.detail)
    except ValidationError as exc:
        raise EventError(f"not a valid CloudTrail record: {describe_validation(exc)}") from None
    if record.event_source != "kms.amazonaws.com":
        raise EventError(f"not a KMS call: eventSource={record.event_source!r}")
    return _api_call(envelope, record, raw_ref)


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
