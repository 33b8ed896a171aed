"""Evidence stores: an S3 prefix in AWS (Object Lock applies when the bucket has it), a folder locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.interfaces import IAMStatement

# HeadObject needs s3:GetObject, and answers 404 (not 403) for a missing key only with ListBucket.
IAM_S3: tuple[IAMStatement, ...] = (
    IAMStatement(("s3:GetObject", "s3:PutObject"), ("arn:aws:s3:::{evidence_bucket}/*",)),
    IAMStatement(("s3:ListBucket",), ("arn:aws:s3:::{evidence_bucket}",)),
)


class FolderEvidence:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root.resolve()):
            raise ValueError(f"evidence key {key!r} leaves the evidence folder")
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def location(self, key: str) -> str:
        return str(self._path(key))

    def read(self, key: str, limit: int) -> bytes | None:
        path = self._path(key)
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            return handle.read(limit)

    def presign(self, key: str, method: str, seconds: int) -> str | None:
        return None  # a node cannot upload into a local folder


class S3Evidence:
    def __init__(self, s3_client: Any, bucket: str, prefix: str, presigner: Any = None) -> None:
        self._s3 = s3_client
        self._presigner = presigner or s3_client  # virtual-hosted, regional URLs in AWS (wiring)
        self._bucket = bucket
        self._prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self._bucket, Key=self._key(key))
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def put(self, key: str, data: bytes, content_type: str) -> str:
        self._s3.put_object(Bucket=self._bucket, Key=self._key(key), Body=data, ContentType=content_type)
        return self.location(key)

    def location(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._key(key)}"

    def read(self, key: str, limit: int) -> bytes | None:
        """At most `limit` bytes of an object (None when there is none): small records only."""
        try:
            found = self._s3.get_object(Bucket=self._bucket, Key=self._key(key))
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        with found["Body"] as body:  # the first `limit` bytes; the rest is never read
            data: bytes = body.read(limit)
        return data

    def presign(self, key: str, method: str, seconds: int) -> str | None:
        """A URL that lets its holder GET or PUT this one key for `seconds` (signed, no call made)."""
        operation = {"GET": "get_object", "PUT": "put_object"}[method]
        url: str = self._presigner.generate_presigned_url(
            operation, Params={"Bucket": self._bucket, "Key": self._key(key)}, ExpiresIn=seconds
        )
        return url


def evidence_bucket_problems(s3: Any, bucket: str) -> list[str]:
    """What keeps an existing bucket from holding evidence: Object Lock in COMPLIANCE mode, TLS only,
    no deletes, no lock changes. An empty list: it will do."""
    problems = []
    try:
        rule = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"].get("Rule") or {}
        retention = rule.get("DefaultRetention") or {}
        if retention.get("Mode") != "COMPLIANCE":
            problems.append(f"Object Lock default retention is {retention.get('Mode') or 'not set'}, not COMPLIANCE")
    except Exception:  # noqa: BLE001 - no lock configuration at all
        problems.append("Object Lock is not enabled")
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except Exception:  # noqa: BLE001 - no policy
        policy = {"Statement": []}
    denied = {a for st in policy.get("Statement", []) if st.get("Effect") == "Deny"
              for a in ([st["Action"]] if isinstance(st.get("Action"), str) else st.get("Action", []))}  # fmt: skip
    tls = any(
        st.get("Effect") == "Deny" and (st.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for st in policy.get("Statement", [])
    )
    if not tls:
        problems.append("its bucket policy does not deny requests without TLS")
    if not {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= denied:
        problems.append("its bucket policy does not deny deleting objects")
    if "s3:PutBucketObjectLockConfiguration" not in denied:
        problems.append("its bucket policy does not deny changing the Object Lock configuration")
    return problems
