"""Record every AWS call the integration suite makes, per deployed function.

A `before-parameter-build` hook on every botocore client records service, operation and
parameters while a function's code runs (the function is known from the incident's source, or
from the Lambda path that runs: the key-policy snapshot, a flow-log delivery). For writes whose
policy carries tag conditions, the tags of the resource are read at that moment (with recording
paused), so the proof can evaluate the condition as IAM would.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
import pytest

from chalicelib import functions
from chalicelib.entry import intake, wiring
from chalicelib.response.execute import Responder

FUNCTION: ContextVar[str | None] = ContextVar("function", default=None)
_PAUSED: ContextVar[bool] = ContextVar("paused", default=False)


@dataclass(frozen=True)
class Call:
    function: str
    service: str  # the IAM service prefix (signing name)
    operation: str
    params: dict[str, Any]
    region: str
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # resource id -> its tags, for conditions
    account: str | None = None  # a member account, when the call was made with its spoke role's credentials


RECORDED: list[Call] = []
_ASSUMED: dict[str, str] = {}  # access key id of assumed-role credentials -> the account they act in

# Writes whose policy statements have tag conditions: the tags are read when the call is made.
_TAGGED = {
    ("ec2", "ModifyInstanceAttribute"),
    ("ec2", "CreateTags"),
    ("ec2", "RevokeSecurityGroupEgress"),
    ("ec2", "RevokeSecurityGroupIngress"),
    ("ec2", "AuthorizeSecurityGroupEgress"),
    ("ec2", "AuthorizeSecurityGroupIngress"),
    ("ec2", "DeleteSecurityGroup"),
    ("autoscaling", "SetInstanceProtection"),
    ("autoscaling", "DetachInstances"),
    ("autoscaling", "EnterStandby"),
    ("autoscaling", "ExitStandby"),
    ("ssm", "SendCommand"),
}


@contextlib.contextmanager
def running(function: str) -> Iterator[None]:
    token = FUNCTION.set(function)
    try:
        yield
    finally:
        FUNCTION.reset(token)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Calls made inside are not recorded (a test that uses a resource no stage's policy names)."""
    token = _PAUSED.set(True)
    try:
        yield
    finally:
        _PAUSED.reset(token)


def _as(function: Callable[..., str | None], wrapped: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(wrapped)
    def call(*args: Any, **kwargs: Any) -> Any:
        name = function(*args, **kwargs)
        if name is None or FUNCTION.get() is not None:
            return wrapped(*args, **kwargs)
        with running(name):
            return wrapped(*args, **kwargs)

    return call


def _by_incident(_: Any, incident: Any, *__: Any, **___: Any) -> str | None:
    return functions.for_source(incident.source).name if incident.source else None


def _tags_of(
    service: str, operation: str, params: dict[str, Any], region: str, credentials: Any = None
) -> dict[str, dict[str, str]]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    token = _PAUSED.set(True)
    try:
        keys = {}
        if credentials is not None:  # read the tags in the account the call acted in
            frozen = credentials.get_frozen_credentials()
            keys = {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key,
                    "aws_session_token": frozen.token}  # fmt: skip
        session = boto3.session.Session(region_name=region, **keys)
        if service == "autoscaling":
            client = session.client("autoscaling", endpoint_url=endpoint)
            name = params["AutoScalingGroupName"]
            groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
            return {name: {t["Key"]: t["Value"] for g in groups for t in g.get("Tags", [])}}
        ec2 = session.client("ec2", endpoint_url=endpoint)
        ids = [params[k] for k in ("InstanceId", "GroupId") if k in params] + list(params.get("Resources", []))
        ids += list(params.get("InstanceIds", [])) if service == "ssm" else []
        found = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": ids}])["Tags"] if ids else []
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        for tag in found:
            tags.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag["Value"]
        return tags
    except Exception:  # noqa: BLE001 - a resource gone already: the call is judged without its tags
        return {}
    finally:
        _PAUSED.reset(token)


def _record(params: dict[str, Any], model: Any, context: dict[str, Any], client: Any = None, **_: Any) -> None:
    function = FUNCTION.get()
    if function is None or _PAUSED.get():
        return
    service = model.service_model.signing_name
    region = str(context.get("client_region") or "us-east-1")
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    account = _ASSUMED.get(str(getattr(credentials, "access_key", "") or ""))
    spoke = credentials if account else None
    tags = _tags_of(service, model.name, params, region, spoke) if (service, model.name) in _TAGGED else {}
    RECORDED.append(Call(function, service, model.name, dict(params), region, tags, account))


def _assumed(parsed: dict[str, Any], **_: Any) -> None:
    """Which account assumed-role credentials act in (from the role ARN STS answers with)."""
    key = (parsed.get("Credentials") or {}).get("AccessKeyId")
    arn = str((parsed.get("AssumedRoleUser") or {}).get("Arn") or "")
    if key and arn.startswith("arn:aws:sts::"):
        _ASSUMED[str(key)] = arn.split(":")[4]


def _with_hook(create_client: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(create_client)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", functools.partial(_record, client=client))
        client.meta.events.register("after-call.sts.AssumeRole", _assumed)
        return client

    return create


def install(patch: pytest.MonkeyPatch) -> None:
    """Record from now on (for the whole session)."""
    patch.setattr(botocore.session.Session, "create_client", _with_hook(botocore.session.Session.create_client))
    patch.setattr(Responder, "handle", _as(_by_incident, Responder.handle))
    patch.setattr(Responder, "enrich", _as(_by_incident, Responder.enrich))
    patch.setattr(Responder, "attribution", _as(lambda *_, **__: "on_flow_logs", Responder.attribution))
    patch.setattr(intake, "handle_incident", _as(lambda incident, *_, **__: _by_incident(None, incident),
                                                 intake.handle_incident))  # fmt: skip
    patch.setattr(wiring, "refresh_key_policies", _as(lambda *_, **__: "refresh_key_policies",
                                                      wiring.refresh_key_policies))  # fmt: skip
    patch.setattr(wiring, "handle_capture_status", _as(lambda *_, **__: "on_memory_capture_status",
                                                       wiring.handle_capture_status))  # fmt: skip
    patch.setattr(wiring, "flow_log_objects", _as(lambda *_, **__: "on_flow_log_object", wiring.flow_log_objects))
    patch.setattr(wiring, "handle_flow_log_payload", _as(lambda *_, **__: "on_flow_logs",
                                                         wiring.handle_flow_log_payload))  # fmt: skip
