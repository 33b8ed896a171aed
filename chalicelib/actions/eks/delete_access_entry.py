"""eks:delete-access-entry: remove an IAM principal's access to the cluster (access entry or aws-auth)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.iam.common import account_of, identity, name_of
from chalicelib.interfaces import IAMStatement, Outcome, RBACRule, Status, Target, checked

AWS_AUTH = ("kube-system", "aws-auth")


class DeleteAccessEntryParams(Params, frozen=True):
    # auto: the access entry if there is one, else the aws-auth mapping.
    mode: Literal["auto", "access-entry", "aws-auth"] = "auto"


def _same_principal(mapped: str, arn: str) -> bool:
    # aws-auth may name a role with its path; an assumed-role ARN resolves to the role without it.
    return mapped == arn or (account_of(mapped) == account_of(arn) and name_of(mapped) == name_of(arn))


class DeleteAccessEntry(Action):
    """Remove the principal's EKS access entry (its access policies are recorded), or, for a
    cluster that still maps IAM identities in the `aws-auth` ConfigMap, remove its lines there
    (kept in the result for undo).

    Example::

        - action: eks:delete-access-entry
          params: {mode: auto}
    """

    name = "eks:delete-access-entry"
    contains = True
    keeps = (
        "the deleted access entry (or aws-auth mapping) is saved in the result for a human to recreate: "
        "granting cluster access is never the responder's"
    )
    target_kind = "principal"
    summary = "remove the IAM principal's EKS access entry, or its aws-auth mapping"
    params_model = DeleteAccessEntryParams
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(
            ("eks:DeleteAccessEntry", "eks:DescribeAccessEntry", "eks:ListAssociatedAccessPolicies"),
            ("arn:aws:eks:{region}:{account}:access-entry/*",),
        ),
    )
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "configmaps", ("get", "patch"), ("aws-auth",)),)

    def describe(self, target: Target, params: Params) -> str:
        return f"remove the EKS access entry (or aws-auth mapping) of {target}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert isinstance(params, DeleteAccessEntryParams)
        cluster = ctx.incident.cluster or ""
        if params.mode != "aws-auth":
            entry = identity(ctx).access_entry(cluster, target.name)
            if entry is not None:
                identity(ctx).delete_access_entry(cluster, target.name)
                claim, prior = f"deleted the access entry of {target} in {cluster}", {"access_entry": entry}
                if ctx.dry_run:
                    return Outcome(Status.SUCCEEDED, claim, prior)
                left = identity(ctx).access_entry(cluster, target.name)
                return checked(claim, None if left is None else "the access entry still exists", prior)
            if params.mode == "access-entry":
                return Outcome(Status.SKIPPED, f"{target} has no access entry in {cluster}")
        return self._aws_auth(ctx, target)

    def _aws_auth(self, ctx: ActionContext, target: Target) -> Outcome:
        import yaml  # only a cluster that still maps identities in aws-auth needs it: not every cold start

        config = ctx.kube.get_config_map(*AWS_AUTH)
        if config is None:
            return Outcome(Status.SKIPPED, f"{target} has no access entry and the cluster has no aws-auth ConfigMap")
        data: dict[str, str] = dict(config.get("data") or {})
        removed: dict[str, list[dict[str, Any]]] = {}
        updated: dict[str, str | None] = {}
        for key, field in (("mapRoles", "rolearn"), ("mapUsers", "userarn")):
            text = data.get(key) or ""
            entries = yaml.safe_load(text or "[]") or []
            gone = [i for i, e in enumerate(entries) if _same_principal(str(e.get(field, "")), target.name)]
            if not gone:
                continue
            try:
                updated[key] = without_items(text, gone)
            except ValueError as exc:
                return Outcome(
                    Status.FAILED,
                    f"aws-auth {key}: {target}'s mapping cannot be taken out leaving every other line as it is "
                    f"({exc}): remove it by hand",
                )
            removed[key] = [entries[i] for i in gone]
        if not removed:
            return Outcome(Status.SKIPPED, f"{target} has no access entry and no aws-auth mapping")
        version = str((config.get("metadata") or {}).get("resourceVersion", ""))
        ctx.kube.replace_config_map_data(*AWS_AUTH, updated, version)
        lines = sum(len(v) for v in removed.values())
        claim, prior = f"removed {lines} aws-auth mapping(s) of {target}", {"aws_auth_removed": removed}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        after = dict((ctx.kube.get_config_map(*AWS_AUTH) or {}).get("data") or {})
        left = [k for k, field in (("mapRoles", "rolearn"), ("mapUsers", "userarn"))
                if any(_same_principal(str(e.get(field, "")), target.name)
                       for e in yaml.safe_load(after.get(k) or "[]") or [])]  # fmt: skip
        return checked(claim, f"still mapped in {', '.join(left)}" if left else None, prior)

    reads_back = "the access entry (no longer found), or the aws-auth ConfigMap (the mapping gone)"


def without_items(text: str, indexes: list[int]) -> str | None:
    """The YAML block list `text` with the items at `indexes` taken out and every other line kept as
    it was, byte for byte (the responder's bounds admit only removals); None when no item is left
    (the key goes). ValueError when the text is no block list of mappings (flow style, say)."""
    import yaml

    node = yaml.compose(text)
    if not isinstance(node, yaml.SequenceNode) or node.flow_style or not node.value:
        raise ValueError("it is not a block list")
    if not all(isinstance(item, yaml.MappingNode) and not item.flow_style for item in node.value):
        raise ValueError("it is not a block list of mappings")
    lines = text.splitlines(keepends=True)
    # An item runs from the line of its "- " to the line before the next item's (comments with it).
    starts = [item.start_mark.line for item in node.value] + [len(lines)]
    dropped = {line for i in indexes for line in range(starts[i], starts[i + 1])}
    if len(indexes) == len(node.value):
        return None
    kept = "".join(line for number, line in enumerate(lines) if number not in dropped)
    # What is left must say exactly what it said of the other entries (an anchor defined in a removed
    # entry and used by a kept one, say, would not).
    entries = yaml.safe_load(text)
    try:
        same = yaml.safe_load(kept) == [e for i, e in enumerate(entries) if i not in set(indexes)]
    except yaml.YAMLError:
        same = False
    if not same:
        raise ValueError("the other entries would not read the same")
    return kept
