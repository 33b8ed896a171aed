"""eks:restrict-public-endpoint: the cluster's public API endpoint answers only the listed ranges."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.incident import Incident
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked

_CLUSTER = "arn:aws:eks:{region}:{account}:cluster/*"
OPEN = "0.0.0.0/0"


def exposure(config: dict[str, Any] | None) -> str:
    """How a cluster's endpoint is reachable, in a few words, for reports."""
    if config is None:
        return "not an EKS cluster of this account"
    if not config.get("endpointPublicAccess"):
        return "private endpoint only"
    cidrs = list(config.get("publicAccessCidrs") or [OPEN])
    private = "on" if config.get("endpointPrivateAccess") else "off"
    return f"public endpoint open to {', '.join(cidrs)} (private access {private})"


class RestrictPublicEndpoint(Action):
    """Restrict the cluster's public API endpoint to `PUBLIC_ENDPOINT_CIDRS` (your operators', CI's
    and this responder's egress ranges), as AWS advises when an anonymous or known-bad caller
    reached it. Always waits for a human: a wrong range cuts the cluster's operators off. The
    ranges it had are recorded, and a release puts them back. Without `PUBLIC_ENDPOINT_CIDRS`
    nothing is changed and the result says what the endpoint is open to.

    Example::

        - action: eks:restrict-public-endpoint
          approval: required
    """

    name = "eks:restrict-public-endpoint"
    contains = True
    target_kind = "cluster"
    uses_identity = True
    summary = "restrict the cluster's public API endpoint to PUBLIC_ENDPOINT_CIDRS (always approved by a human)"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("eks:DescribeCluster", "eks:UpdateClusterConfig"), (_CLUSTER,)),
    )
    release_iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("eks:DescribeCluster", "eks:UpdateClusterConfig"), (_CLUSTER,)),
    )
    releases = "puts back the public access ranges the endpoint had"
    keeps = "connections refused meanwhile are not replayed"

    def held_for(self, incident: Incident) -> str | None:
        return "restricting a cluster's public endpoint can cut off its operators, CI and this responder"

    def describe(self, target: Target, params: Params) -> str:
        return f"restrict the public API endpoint of cluster {target} to PUBLIC_ENDPOINT_CIDRS"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert ctx.identity is not None
        config = ctx.identity.cluster_endpoint(target.name)
        now = exposure(config)
        if config is None or not config.get("endpointPublicAccess"):
            return Outcome(Status.SKIPPED, f"cluster {target}: {now}; nothing to restrict")
        wanted = list(ctx.settings.public_endpoint_cidrs)
        had = list(config.get("publicAccessCidrs") or [OPEN])
        if not wanted:
            why = "set PUBLIC_ENDPOINT_CIDRS to the ranges that must keep access (operators, CI, this responder)"
            return Outcome(Status.SKIPPED, f"NOT RESTRICTED: cluster {target} has a {now}; {why}")
        if sorted(had) == sorted(wanted):
            return Outcome(Status.SKIPPED, f"cluster {target}: public endpoint already limited to {', '.join(wanted)}")
        ctx.identity.set_public_access_cidrs(target.name, wanted)
        verb = "would restrict" if ctx.dry_run else "restricted"
        claim = f"{verb} the public endpoint of cluster {target} from {', '.join(had)} to {', '.join(wanted)}"
        prior = {"publicAccessCidrs": had, "set": wanted}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        # The update is asynchronous: EKS accepts it, then applies it; the report says which it saw.
        reported = ctx.identity.cluster_endpoint(target.name) or {}
        cidrs = sorted(reported.get("publicAccessCidrs") or [OPEN])
        if cidrs == sorted(wanted):
            return checked(claim, None, prior)
        requested = f"requested that the public endpoint of cluster {target} allow only {', '.join(wanted)}"
        return Outcome(Status.SUCCEEDED, f"{requested}; EKS applies it asynchronously and still reports "
                                         f"{', '.join(cidrs)} (not yet read back)", prior)  # fmt: skip

    reads_back = "the cluster's public access ranges, as EKS reports them after the update"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        assert ctx.identity is not None
        had = [str(c) for c in prior.get("publicAccessCidrs") or []]
        config = ctx.identity.cluster_endpoint(target.name)
        if not had or config is None or not config.get("endpointPublicAccess"):
            return Outcome(Status.SKIPPED, f"cluster {target}: {exposure(config)}; nothing to put back")
        now = sorted(config.get("publicAccessCidrs") or [OPEN])
        if now != sorted(str(c) for c in prior.get("set") or []) and not force:
            return Outcome(Status.SKIPPED, f"cluster {target}: the ranges changed since ({', '.join(now)}): "
                                           "left as they are (force to put back the old ones)")  # fmt: skip
        ctx.identity.set_public_access_cidrs(target.name, had)
        return Outcome(Status.SUCCEEDED, f"public endpoint of cluster {target} open again to {', '.join(had)}")
