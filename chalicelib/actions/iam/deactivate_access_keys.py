"""iam:deactivate-access-keys: mark an IAM user's access key inactive (never delete it)."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.iam.common import identity, name_of
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked


class DeactivateAccessKeysParams(Params, frozen=True):
    all_keys: bool = False  # every key of the user, not only the one the finding names


class DeactivateAccessKeys(Action):
    """Set the finding's access key (or, with `all_keys`, every key) of the IAM user inactive.
    Keys are never deleted: reactivating one is the undo.

    Example::

        - action: iam:deactivate-access-keys
          params: {all_keys: false}
    """

    name = "iam:deactivate-access-keys"
    contains = True
    target_kind = "user"
    summary = "set the IAM user's access key(s) inactive; never delete"
    params_model = DeactivateAccessKeysParams
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("iam:ListAccessKeys", "iam:UpdateAccessKey"), ("arn:aws:iam::{account}:user/*",)),
    )

    releases = "sets the keys it deactivated active again"
    keeps = "keys deleted or rotated since; only keys it deactivated are touched"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        api = identity(ctx)
        user = str(prior.get("user") or name_of(target.name))
        were = set(prior.get("were_active") or [])
        keys = {str(k["AccessKeyId"]): k for k in api.access_keys(user)}
        back = sorted(k for k in were if k in keys and keys[k].get("Status") != "Active")
        for key in back:
            api.set_access_key_status(user, key, "Active")
        gone = sorted(were - set(keys))
        said = f"user {user}: reactivated {', '.join(back) or 'nothing'}" + (
            f"; deleted since: {', '.join(gone)}" if gone else ""
        )
        return Outcome(Status.SUCCEEDED if back else Status.SKIPPED, said)

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
        claim, prior = f"user {user}: deactivated {ids}", {"user": user, "were_active": ids.split(", ")}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        still = [str(k["AccessKeyId"]) for k in api.access_keys(user)
                 if k["AccessKeyId"] in prior["were_active"] and k.get("Status") == "Active"]  # fmt: skip
        return checked(claim, f"{', '.join(still)} still active" if still else None, prior)

    reads_back = "the user's access keys (each one it deactivated is Inactive)"
