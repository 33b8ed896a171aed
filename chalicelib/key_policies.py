"""The history of a protected key's policy: which versions were in force when, and which to trust.

The scheduled snapshot records each policy it sees with the time it first saw it. A policy
written by someone who is not a key administrator (a tampering `PutKeyPolicy` the responder
handled, even in a dry run or when the restore failed) is marked distrusted and is never a
restore target, whenever the snapshot happens to see it. A restore puts back the newest trusted
version that was already in force before the tampering call's `eventTime`, so a snapshot taken
between the attacker's call and its processing cannot turn the attacker's policy into the
"last known good" one.

Pure functions over the stored record; executors.kms reads and writes it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

MAX_VERSIONS = 100  # per key; the oldest are dropped first


def key_id(arn_or_id: str) -> str:
    """The key's id, from its ARN or the id itself (what every KMS call takes)."""
    return arn_or_id.rsplit("/", 1)[-1]


def digest(policy: str) -> str:
    """SHA-256 of the policy's canonical JSON: the same document written with other spacing or
    key order is the same version."""
    try:
        canonical = json.dumps(json.loads(policy), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):  # the caller's text, nested beyond reading: its bytes are its digest
        canonical = policy
    return hashlib.sha256(canonical.encode()).hexdigest()


def empty() -> dict[str, Any]:
    return {"versions": [], "distrusted": {}}


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """Read a record in any stored shape (the first releases kept one policy and its time)."""
    if "versions" in record:
        return {"versions": list(record["versions"]), "distrusted": dict(record.get("distrusted") or {})}
    if "policy" in record:
        seen = str(record.get("stored_at") or "")
        version = {
            "sha256": digest(str(record["policy"])),
            "policy": record["policy"],
            "first_seen": seen,
            "last_seen": seen,
        }
        return {"versions": [version], "distrusted": {}}
    return empty()


def observe(record: dict[str, Any], policy: str, now: datetime) -> bool:
    """The snapshot saw `policy` in force at `now`: a new version when it differs from the latest."""
    sha = digest(policy)
    versions: list[dict[str, Any]] = record["versions"]
    if versions and versions[-1]["sha256"] == sha:
        versions[-1]["last_seen"] = now.isoformat()
        return False
    versions.append({"sha256": sha, "policy": policy, "first_seen": now.isoformat(), "last_seen": now.isoformat()})
    del versions[:-MAX_VERSIONS]
    return True


def distrust(record: dict[str, Any], sha: str, written_by: str, written_at: str, now: datetime) -> None:
    """A policy written by someone who is not a key administrator: never a restore target."""
    record["distrusted"].setdefault(
        sha, {"written_by": written_by, "written_at": written_at, "marked_at": now.isoformat()}
    )


def good_before(record: dict[str, Any], when: datetime | None) -> dict[str, Any] | None:
    """The newest trusted version first seen before `when` (any time when None)."""
    distrusted = record["distrusted"]
    found = None
    for version in record["versions"]:
        if version["sha256"] in distrusted:
            continue
        if when is not None and not _before(version["first_seen"], when):
            continue
        found = version
    return found


def _before(stamp: str, when: datetime) -> bool:
    try:
        seen = datetime.fromisoformat(stamp)
    except ValueError:
        return False
    if seen.tzinfo is None or when.tzinfo is None:
        return seen.replace(tzinfo=None) < when.replace(tzinfo=None)
    return seen < when


def event_time(text: str) -> datetime | None:
    """A CloudTrail `eventTime` (`2026-11-28T09:00:00Z`), or None when absent or malformed."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
