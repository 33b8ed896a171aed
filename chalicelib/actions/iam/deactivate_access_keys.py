"""iam:deactivate-access-keys: mark an IAM user's access key inactive (never delete it)."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.actions.base import Action, ActionContext, IAMStatement, Outcome, Params, Status, Target
from chalicelib.actions.iam.common import identity, name_of


class DeactivateAccessKeysParams(Params):
    all_keys: bool = False  # every key of the user, not only the one the finding names


class DeactivateAccessKeys(Action):
    """Set the finding's access key (or, with `all_keys`, every key) of the IAM user inactive.
    Keys are never deleted: reactivating one is the undo.

    Example::

        - action: iam:deactivate-access-keys
          params: {all_keys: false}
    """

    name = "iam:deactivate-access-keys"
    target_kind = "user"
    summary = "set the IAM user's access key(s) inactive; never delete"
    params_model = DeactivateAccessKeysParams
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("iam:ListAccessKeys", "iam:UpdateAccessKey"), ("arn:aws:iam::{account}:user/*",)),
    )

    def describe(self, target: Target, params: Params) -> str:
        assert isinstance(params, DeactivateAccessKeysParams)
        which = "every access key" if params.all_keys else f"access key {target.attributes.get('access_key_id') or '?'}"
        return f"set {which} of IAM user {target} inactive"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert isinstance(params, DeactivateAccessKeysParams)
        api = identity(ctx)
        user = name_of(target.name)
        keys = api.access_keys(user)
        named = target.attributes.get("access_key_id")
        chosen = keys if params.all_keys else [k for k in keys if k["AccessKeyId"] == named]
        if not chosen:
            return Outcome(Status.SKIPPED, f"user {user} has no access key {named or ''}".rstrip())
        active = [k for k in chosen if k.get("Status") == "Active"]
        if not active:
            return Outcome(Status.SKIPPED, f"access key(s) of user {user} already inactive")
        for key in active:
            api.set_access_key_status(user, str(key["AccessKeyId"]), "Inactive")
        ids = ", ".join(str(k["AccessKeyId"]) for k in active)
        return Outcome(
            Status.SUCCEEDED, f"user {user}: deactivated {ids}", {"user": user, "were_active": ids.split(", ")}
        )
