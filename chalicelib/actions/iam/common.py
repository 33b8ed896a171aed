"""What the identity actions share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.actions.base import ActionContext
from chalicelib.interfaces import IdentityAPI, Outcome, Status, Target

if TYPE_CHECKING:
    from chalicelib.settings import Settings

SERVICE_LINKED_PATH = "/aws-service-role/"


def identity(ctx: ActionContext) -> IdentityAPI:
    if ctx.identity is None:
        raise RuntimeError("no AWS access configured")
    return ctx.identity


def name_of(arn: str) -> str:
    """`name` from arn:aws:iam::123456789012:role/path/name."""
    return arn.rsplit("/", 1)[-1]


def account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""  # noqa: PLR2004


def release_inline_policy(
    api: IdentityAPI, role: str, policy: str, ours: Callable[[dict[str, Any]], bool], previous: Any, *,
    force: bool, said: tuple[str, str],
) -> Outcome:  # fmt: skip
    """Undo an incident's inline deny on a role: put back the document it replaced, or remove it;
    left alone when a later incident has replaced it since (unless forced). `said`: what the
    put-back and the removal report."""
    current = api.role_policy(role, policy)
    if current is None:
        return Outcome(Status.SKIPPED, f"role {role} no longer has {policy}")
    if not ours(current) and not force:
        return Outcome(Status.SKIPPED, f"role {role}: {policy} was replaced by a later incident since; "
                                       "left in place (release that incident, or force)")  # fmt: skip
    if previous:
        api.put_role_policy(role, policy, previous)
        return Outcome(Status.SUCCEEDED, f"role {role}: {said[0]}")
    api.delete_role_policy(role, policy)
    return Outcome(Status.SUCCEEDED, f"role {role}: {said[1]}")


def identity_static_block(target: Target, settings: Settings, incident_account: str) -> str | None:
    arn = target.name
    name = name_of(arn)
    if any(same_principal(arn, p) for p in settings.protected_principals):
        return f"{arn} is protected (PROTECTED_PRINCIPALS)"
    namespace = target.attributes.get("service_account_namespace")
    if namespace and namespace in settings.all_protected_namespaces:
        return (
            f"{arn} is the IAM role of a service account in protected namespace {namespace} (the platform's "
            "own identity, e.g. the VPC CNI): never revoked"
        )
    if any(same_principal(arn, p) for p in settings.kms_admin_principals):
        return f"{arn} is a key administrator (KMS_ADMIN_PRINCIPALS); never revoked"
    if f":role{SERVICE_LINKED_PATH}" in arn or name.startswith("AWSServiceRoleFor"):
        return f"{arn} is an AWS service-linked role; never revoked"
    account = account_of(arn)
    allowed = {incident_account, *settings.allowed_accounts}
    if account and account not in allowed:
        return f"{arn} is in account {account}, not the finding's account or ALLOWED_ACCOUNTS"
    return None


def same_identity(a: str, b: str) -> bool:
    return account_of(a) == account_of(b) and name_of(a) == name_of(b)


def kind_of(arn: str) -> str:
    return "user" if ":user/" in arn else "role" if ":role/" in arn else ""


def same_principal(arn: str, listed: str) -> bool:
    """One IAM identity: same account, kind and name (a name is unique in its account, whatever the
    path, and an assumed-role session is its role). Never a glob."""
    return same_identity(arn, listed) and kind_of(arn) == kind_of(listed) != ""
