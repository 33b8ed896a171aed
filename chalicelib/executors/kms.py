"""The KMS executor, the key registry (which keys matter) and the last-known-good policy store.

KMS has no dry run for these calls: in dry-run mode reads happen and writes are not sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from chalicelib import key_policies
from chalicelib.executors import dry_run
from chalicelib.interfaces import IAMStatement
from chalicelib.key_policies import key_id

# Reading what makes a key protected, and keeping its policy.
IAM: tuple[IAMStatement, ...] = (
    IAMStatement(
        ("kms:DescribeKey", "kms:GetKeyPolicy", "kms:ListResourceTags"), ("arn:aws:kms:{region}:{account}:key/*",)
    ),
    IAMStatement(("kms:ListKeys", "ec2:DescribeVolumes")),
)


class KMSGateway:
    """Calls name keys by id: the keys are in this account and region, and some endpoints
    (moto among them) handle ARNs in fewer calls than AWS does."""

    def __init__(self, kms: Any, *, dry_run: bool) -> None:
        self._kms = kms
        self.dry_run = dry_run

    def describe_key(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._kms.describe_key(KeyId=key_id(key))["KeyMetadata"])
        except self._kms.exceptions.NotFoundException:
            return None

    def cancel_key_deletion(self, key: str) -> None:
        if self.dry_run:
            dry_run.not_sent("kms:CancelKeyDeletion")
            return
        self._kms.cancel_key_deletion(KeyId=key_id(key))

    def enable_key(self, key: str) -> None:
        if self.dry_run:
            dry_run.not_sent("kms:EnableKey")
            return
        self._kms.enable_key(KeyId=key_id(key))

    def rotation_enabled(self, key: str) -> bool:
        return bool(self._kms.get_key_rotation_status(KeyId=key_id(key))["KeyRotationEnabled"])

    def enable_key_rotation(self, key: str) -> None:
        if self.dry_run:
            dry_run.not_sent("kms:EnableKeyRotation")
            return
        self._kms.enable_key_rotation(KeyId=key_id(key))

    def key_policy(self, key: str) -> str:
        return str(self._kms.get_key_policy(KeyId=key_id(key), PolicyName="default")["Policy"])

    def put_key_policy(self, key: str, policy: str) -> None:
        if self.dry_run:
            dry_run.not_sent("kms:PutKeyPolicy")
            return
        self._kms.put_key_policy(KeyId=key_id(key), PolicyName="default", Policy=policy)

    def grants(self, key: str) -> list[dict[str, Any]]:
        pages = self._kms.get_paginator("list_grants").paginate(KeyId=key_id(key))
        return [dict(g) for page in pages for g in page.get("Grants", [])]

    def revoke_grant(self, key: str, grant_id: str) -> None:
        if self.dry_run:
            dry_run.not_sent("kms:RevokeGrant")
            return
        self._kms.revoke_grant(KeyId=key_id(key), GrantId=grant_id)

    def tags(self, key: str) -> dict[str, str]:
        found = self._kms.list_resource_tags(KeyId=key_id(key)).get("Tags", [])
        return {t["TagKey"]: t["TagValue"] for t in found}

    def key_arns(self) -> list[str]:
        pages = self._kms.get_paginator("list_keys").paginate()
        return [str(k["KeyArn"]) for page in pages for k in page.get("Keys", [])]


class KeyRegistry:
    """Which keys the responder protects: listed, tagged, EKS secrets keys, node volume keys."""

    def __init__(
        self,
        kms: KMSGateway,
        *,
        listed: tuple[str, ...],
        tag: str | None,
        clusters: tuple[str, ...],
        eks: Any = None,
        ec2: Any = None,
    ) -> None:
        self._kms = kms
        self._listed = listed
        self._tag = tag
        self._clusters = clusters
        self._eks = eks
        self._ec2 = ec2
        self._cluster_keys: dict[str, str] | None = None

    def why_protected(self, arn: str) -> str | None:
        ident = key_id(arn)
        if any(fnmatchcase(arn, p) or fnmatchcase(ident, p) for p in self._listed):
            return "listed in PROTECTED_KEYS"
        if self._tag:
            name, _, value = self._tag.partition("=")
            tags = self._kms.tags(arn)
            if name in tags and (not value or tags[name] == value):
                return f"tagged {self._tag}"
        return self._cluster_key_ids().get(ident)

    def _cluster_key_ids(self) -> dict[str, str]:
        if self._cluster_keys is None:
            found: dict[str, str] = {}
            for cluster in self._clusters:
                if self._eks is not None:
                    config = self._eks.describe_cluster(name=cluster)["cluster"].get("encryptionConfig") or []
                    for entry in config:
                        arn = (entry.get("provider") or {}).get("keyArn")
                        if arn:
                            found[key_id(arn)] = f"encrypts the Kubernetes secrets of cluster {cluster}"
                if self._ec2 is not None:
                    for volume_key in self._node_volume_keys(cluster):
                        found.setdefault(key_id(volume_key), f"encrypts node volumes of cluster {cluster}")
            self._cluster_keys = found
        return self._cluster_keys

    def _node_volume_keys(self, cluster: str) -> set[str]:
        filters = [{"Name": "tag:eks:cluster-name", "Values": [cluster]}]
        pages = self._ec2.get_paginator("describe_volumes").paginate(Filters=filters)
        return {str(v["KmsKeyId"]) for page in pages for v in page.get("Volumes", []) if v.get("KmsKeyId")}

    def protected_keys(self) -> list[str]:
        """Every protected key that exists (for the scheduled policy snapshot)."""
        return [arn for arn in self._kms.key_arns() if self.why_protected(arn)]


class PolicyStore:
    """Each protected key's policy history (see chalicelib.key_policies):
    `<prefix>/key-policies/<key-id>.json` in S3, or a folder."""

    def __init__(
        self, *, s3: Any = None, bucket: str | None = None, prefix: str = "", folder: Path | None = None
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._folder = folder

    def _key(self, ident: str) -> str:
        return "/".join(p for p in (self._prefix, "key-policies", f"{ident}.json") if p)

    def read(self, ident: str) -> dict[str, Any]:
        if self._folder is not None:
            path = self._folder / self._key(ident)
            return key_policies.upgrade(json.loads(path.read_text())) if path.exists() else key_policies.empty()
        assert self._s3 is not None
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=self._key(ident))["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            return key_policies.empty()
        return key_policies.upgrade(json.loads(body))

    def write(self, ident: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=1)
        if self._folder is not None:
            path = self._folder / self._key(ident)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert self._s3 is not None
        self._s3.put_object(Bucket=self._bucket, Key=self._key(ident), Body=text.encode())

    def observe(self, ident: str, policy: str, now: datetime | None = None) -> None:
        record = self.read(ident)
        key_policies.observe(record, policy, now or datetime.now(UTC))
        self.write(ident, record)

    def distrust(self, ident: str, sha: str, written_by: str, written_at: str) -> None:
        record = self.read(ident)
        if sha not in record["distrusted"]:
            key_policies.distrust(record, sha, written_by, written_at, datetime.now(UTC))
            self.write(ident, record)

    def good_before(self, ident: str, when: datetime | None) -> dict[str, Any] | None:
        return key_policies.good_before(self.read(ident), when)


def snapshot_policies(registry: KeyRegistry, kms: KMSGateway, store: PolicyStore) -> list[str]:
    """Record the current policy of every protected key; returns the key ids seen."""
    stored = []
    for arn in registry.protected_keys():
        store.observe(key_id(arn), kms.key_policy(arn))
        stored.append(key_id(arn))
    return stored


class KMSConnector:
    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session
        self._clients: dict[str, Any] = {}

    def gateway(self, region: str, *, dry_run: bool) -> KMSGateway:
        if region not in self._clients:
            self._clients[region] = self._session().client("kms", region_name=region)
        return KMSGateway(self._clients[region], dry_run=dry_run)


class Keys:
    """What the KMS actions see: the gateway's calls, plus protection and the policy store."""

    def __init__(self, gateway: KMSGateway, registry: KeyRegistry, store: PolicyStore | None) -> None:
        self.gateway = gateway
        self.dry_run = gateway.dry_run
        self._registry = registry
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    def why_protected(self, arn: str) -> str | None:
        return self._registry.why_protected(arn)

    def good_policy_before(self, ident: str, when: datetime | None) -> dict[str, Any] | None:
        return self._store.good_before(ident, when) if self._store else None

    def distrust_policy(self, ident: str, sha: str, written_by: str, written_at: str) -> bool:
        """Mark a tampering policy as never to be restored; False when there is no store."""
        if self._store is None:
            return False
        self._store.distrust(ident, sha, written_by, written_at)
        return True
