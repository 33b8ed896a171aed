"""Which RBAC bindings are dangerous: pure rules shared by target lookup and the delete action."""

from __future__ import annotations

from typing import Any

ANONYMOUS_SUBJECTS = {("User", "system:anonymous"), ("Group", "system:unauthenticated")}


def is_system_binding(binding: dict[str, Any]) -> bool:
    meta = binding.get("metadata") or {}
    labels = meta.get("labels") or {}
    return (
        str(meta.get("name", "")).startswith("system:") or labels.get("kubernetes.io/bootstrapping") == "rbac-defaults"
    )


ANONYMOUS = "anonymous"
DEFAULT_ADMIN = "default-admin"


def grant_kind(binding: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, why) when the binding is dangerous: anonymous access, or cluster-admin to a default SA."""
    subjects = binding.get("subjects") or []
    for subject in subjects:
        if (subject.get("kind"), subject.get("name")) in ANONYMOUS_SUBJECTS:
            return ANONYMOUS, f"grants {(binding.get('roleRef') or {}).get('name')} to {subject.get('name')}"
    if (binding.get("roleRef") or {}).get("name") == "cluster-admin":
        for subject in subjects:
            if subject.get("kind") == "ServiceAccount" and subject.get("name") == "default":
                return DEFAULT_ADMIN, f"grants cluster-admin to service account {subject.get('namespace')}/default"
    return None


def dangerous_grant(binding: dict[str, Any]) -> str | None:
    found = grant_kind(binding)
    return found[1] if found else None
