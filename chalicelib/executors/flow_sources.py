"""Reads what the flow-log path needs from S3: delivered objects and the threat list."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, cast

from chalicelib.errors import ConfigError
from chalicelib.interfaces import IAMStatement

MAX_THREAT_LIST_BYTES = 64 * 1024 * 1024


def open_object(s3: Any, bucket: str, key: str) -> BinaryIO:
    """The object's body as a stream: read in chunks, never whole."""
    return cast("BinaryIO", s3.get_object(Bucket=bucket, Key=key)["Body"])


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ConfigError(f"{uri!r} is not s3://bucket/key")
    return bucket, key


def read_threat_list(location: str, s3: Any) -> str:
    """The list's text, from `s3://bucket/key` or a file (relative: from the project root, as
    chalicelib/...). `s3` is the client, or a callable that makes it: made only for an S3 list
    (a file needs no AWS session, which costs a replay a sixth of a second)."""
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location)
        s3 = s3() if callable(s3) else s3
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_THREAT_LIST_BYTES + 1)
    else:
        path = Path(location)
        if not path.is_absolute():
            path = Path(__file__).resolve().parent.parent.parent / path
        body = path.read_bytes()
    if len(body) > MAX_THREAT_LIST_BYTES:
        raise ConfigError(f"THREAT_LIST {location} is larger than {MAX_THREAT_LIST_BYTES} bytes")
    return bytes(body).decode("utf-8", "replace")


def bucket_permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    """s3:GetObject on the flow-log bucket: `{account}` and `{region}` in its name are the policy's
    own (the hub's bucket in the hub's policy, each member's in its spoke role)."""
    bucket = stage_env.get("FLOW_LOGS_BUCKET")
    return [IAMStatement(("s3:GetObject",), (f"arn:aws:s3:::{bucket}/*",))] if bucket else []


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    """s3:GetObject on the flow-log bucket and on the threat list, when the stage names them."""
    resources = []
    if stage_env.get("FLOW_LOGS_BUCKET"):
        resources.append(f"arn:aws:s3:::{stage_env['FLOW_LOGS_BUCKET']}/*")
    if stage_env.get("THREAT_LIST", "").startswith("s3://"):
        bucket, key = split_s3_uri(stage_env["THREAT_LIST"])
        resources.append(f"arn:aws:s3:::{bucket}/{key}")
    return [IAMStatement(("s3:GetObject",), tuple(resources))] if resources else []
