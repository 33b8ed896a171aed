"""Reasons not to run an action. A blocked action is reported as skipped, never dropped."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from chalicelib.actions.base import Action, ActionContext
from chalicelib.actions.ec2.common import CLUSTER_TAG, ISOLATED_AT_TAG, PROTECTED_TAG
from chalicelib.actions.ec2.common import instance as cached_instance
from chalicelib.actions.iam.common import (
    SERVICE_LINKED_PATH,
    account_of,
    identity_static_block,
    kind_of,
    name_of,
    same_identity,
    same_principal,
)
from chalicelib.actions.k8s import compute
from chalicelib.functions import FUNCTIONS
from chalicelib.incident import Incident, PrincipalRole, principal_from_arn
from chalicelib.interfaces import CORDONED_AT_ANNOTATION, Target
from chalicelib.settings import Settings

logger = logging.getLogger("eks_responder")

CLUSTER_TAG_FILTER = f"tag:{CLUSTER_TAG}"
IDENTITY_KINDS = {"role", "user", "principal"}
# Where an instance says which node group it belongs to (managed node groups, then any ASG).
NODE_GROUP_TAGS = ("eks:nodegroup-name", "aws:autoscaling:groupName")


def cluster_block(cluster: str | None, protected: tuple[str, ...]) -> str | None:
    if cluster is None:
        return "the finding names no EKS cluster (for an instance: it is not tagged as a worker node)"
    if any(fnmatchcase(cluster, p) for p in protected):
        return f"cluster {cluster} is protected (PROTECTED_CLUSTERS)"
    return None


def _node(ctx: ActionContext, name: str) -> dict[str, Any] | None:
    key = f"node:{name}"
    if key not in ctx.cache:
        ctx.cache[key] = ctx.kube.get_node(name)
    node: dict[str, Any] | None = ctx.cache[key]
    return node


def _label_matches(labels: dict[str, str], selector: str) -> bool:
    key, sep, value = selector.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _recent(stamp: str | None, since: datetime) -> bool:
    try:
        return bool(stamp) and datetime.fromisoformat(str(stamp)) >= since
    except ValueError:
        return False


def _cordoned_nodes(ctx: ActionContext) -> set[str]:
    """The cluster's nodes cordoned by the responder in the last hour (their cordoned-at annotation)."""
    if "cordoned-nodes" not in ctx.cache:
        since = ctx.now - timedelta(hours=1)
        ctx.cache["cordoned-nodes"] = {
            str((node.get("metadata") or {}).get("name"))
            for node in ctx.kube.list_nodes()
            if _recent(((node.get("metadata") or {}).get("annotations") or {}).get(CORDONED_AT_ANNOTATION), since)
        }
    found: set[str] = ctx.cache["cordoned-nodes"]
    return found


def _isolated_instances(ctx: ActionContext) -> set[str]:
    """The cluster's instances isolated by the responder in the last hour (their isolated-at tag)."""
    assert ctx.aws is not None
    if "isolated-instances" not in ctx.cache:
        since = ctx.now - timedelta(hours=1)
        isolated = ctx.aws.describe_instances(
            {CLUSTER_TAG_FILTER: [ctx.incident.cluster or ""], "tag-key": [ISOLATED_AT_TAG]}
        )
        ctx.cache["isolated-instances"] = {
            str(other.get("InstanceId")) for other in isolated if _recent(_tags(other).get(ISOLATED_AT_TAG), since)
        }
    found: set[str] = ctx.cache["isolated-instances"]
    return found


def static_block(  # noqa: PLR0911
    action: Action, target: Target, settings: Settings, incident_account: str = ""
) -> str | None:
    """The checks that need nothing but the target's name."""
    if target.skip_reason:
        return target.skip_reason
    if target.kind in IDENTITY_KINDS:
        return identity_static_block(target, settings, incident_account) if target.resolved else None
    if target.kind == "key":
        return None  # see key_static_block and key_block
    if target.kind == "instance":
        if target.resolved and any(fnmatchcase(target.name, p) for p in settings.protected_instances):
            return f"instance {target.name} is protected (PROTECTED_INSTANCES)"
        return None
    if target.kind == "image":
        if any(fnmatchcase(target.name, p) for p in settings.protected_images):
            return f"image {target.name} is protected (PROTECTED_IMAGES); it is never blocked"
        return None
    if target.kind == "pod":
        if action.disrupts_workload and target.namespace in settings.all_protected_namespaces:
            return f"namespace {target.namespace} is protected (PROTECTED_NAMESPACES); {action.name} never runs there"
        return None
    if target.resolved and any(fnmatchcase(target.name, p) for p in settings.protected_nodes):
        return f"node {target.name} is protected (PROTECTED_NODES)"
    return None


def platform_block(action: Action, incident: Incident, settings: Settings) -> str | None:
    """A finding about a pod of a protected namespace is alerted on and its evidence kept, but the
    node it runs on is not disrupted: the platform's own workloads (CNI, DNS, the agents) run there."""
    if action.disrupts_node and incident.namespace and incident.namespace in settings.all_protected_namespaces:
        return (
            f"the finding is about protected namespace {incident.namespace}: alert and evidence only, "
            f"{action.name} never disrupts the platform's nodes for it"
        )
    return None


def block(action: Action, target: Target, ctx: ActionContext) -> str | None:  # noqa: PLR0911 - one branch per kind
    settings = ctx.settings
    static = static_block(action, target, settings, ctx.incident.account) or platform_block(
        action, ctx.incident, settings
    )
    if static or target.kind in {"pod", "binding", "cluster"}:
        return static
    if target.kind == "image":
        return image_block(target, ctx)
    if target.kind in IDENTITY_KINDS:
        return identity_block(target, ctx)
    if target.kind == "key":
        return key_block(target, ctx)
    if target.kind == "instance":
        return compute_block(action, target, ctx) or instance_block(action, target, ctx)
    node = _node(ctx, target.name)
    labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    for selector in settings.protected_node_labels:
        if _label_matches(labels, selector):
            return f"node {target.name} is protected by label {selector} (PROTECTED_NODE_LABELS)"
    if action.counts_against_node_cap and node is not None:
        already = ((node.get("metadata") or {}).get("annotations") or {}).get(CORDONED_AT_ANNOTATION)
        if not already:
            cap = settings.max_nodes_cordoned_per_hour
            if _shared_caps(ctx):
                return _lease(ctx, "node", target.name, cap, "cordoned", "MAX_NODES_CORDONED_PER_HOUR")
            count = len(_cordoned_nodes(ctx) - {target.name})
            if count >= cap:
                return (
                    f"blast-radius cap reached: {count} node(s) of cluster {ctx.incident.cluster} cordoned "
                    f"in the last hour (MAX_NODES_CORDONED_PER_HOUR={cap})"
                )
    return None


_ECR_DIGEST = re.compile(
    r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([a-z0-9._/-]{2,256})@(sha256:[a-f0-9]{64})$"
)


def image_block(target: Target, ctx: ActionContext) -> str | None:
    """A digest is blocked in every registry, so it is judged by where its content lives: never
    blocked when a protected repository (PROTECTED_IMAGES) or an accepted risk's repository of the
    same registry holds it too, and not blocked when that cannot be looked up."""
    match = _ECR_DIGEST.match(target.name)
    if match is None:
        return None  # no ECR digest: only the reference as written is blocked, judged by name above
    registry, region, _, digest = match.groups()
    host = target.name.split("/", 1)[0]
    settings, cve = ctx.settings, ctx.incident.details.get("cve")
    risks = [r for r in ctx.accepted_risks if cve and r.cve == cve and ctx.now.date() <= r.expires]

    def why(repository: str) -> str | None:
        reference = f"{host}/{repository}@{digest}"
        if any(fnmatchcase(reference, p) for p in settings.protected_images):
            return f"protected repository {repository} (PROTECTED_IMAGES)"
        risk = next((r for r in risks if any(fnmatchcase(repository, g) for g in r.repositories)), None)
        return f"repository {repository}, where {cve} is an accepted risk ({risk.reason})" if risk else None

    if not settings.protected_images and not risks:
        return None
    key = f"image-places#{registry}#{region}#{digest}"
    if key not in ctx.cache:
        if ctx.images is None:
            return f"NOT BLOCKED: where {digest} lives in registry {registry} cannot be looked up (no AWS access)"
        try:
            ctx.cache[key] = ctx.images.holding(region, registry, digest, lambda name: why(name) is not None)
        except Exception as exc:  # noqa: BLE001 - any failure means the content's places are unknown
            return (f"NOT BLOCKED: where {digest} lives in registry {registry} could not be read "
                    f"({type(exc).__name__}: {str(exc)[:160]}); a protected image may hold it")  # fmt: skip
    places = [w for w in map(why, ctx.cache[key]) if w]
    if places:
        more = f" and {len(places) - 1} more" if len(places) > 1 else ""
        return f"NOT BLOCKED: digest {digest} is also in {places[0]}{more}; blocking it would block that image too"
    return None


def _shared_caps(ctx: ActionContext) -> bool:
    # A dry run takes no real slot: it counts what it can see, as a plan would.
    return ctx.caps is not None and not ctx.dry_run


def _scope(ctx: ActionContext) -> str:
    incident = ctx.incident
    return f"{incident.account}#{incident.region}#{incident.cluster}"


def _lease(ctx: ActionContext, kind: str, target: str, cap: int, verb: str, setting: str) -> str | None:
    """Take one of the cap's slots for `target`, atomically across invocations; the reason when none is free."""
    assert ctx.caps is not None
    scope = _scope(ctx)
    index = ctx.caps.reserve(kind, scope, cap, target, ctx.incident.id, ctx.now)
    reason = (
        f"blast-radius cap reached: {cap} {kind}(s) of cluster {ctx.incident.cluster} {verb} "
        f"in the last hour ({setting}={cap})"
    )
    if index is not None:
        # Leased first, counted after: of any burst, the last to count sees every lease taken before it.
        # The cluster's markers count too, so leases lost with a table never let more through.
        marked = _cordoned_nodes(ctx) if kind == "node" else _isolated_instances(ctx)
        counted = (ctx.caps.holders(kind, scope, cap, ctx.now) | marked) - {target}
        if len(counted) < cap:
            ctx.cache.setdefault("leases", {})[(kind, target)] = (scope, index)
            return None
        ctx.caps.release(kind, scope, index, target)
        reason += f", counting the cluster's own markers ({len(marked - {target})} marked)"
    if ctx.caps.first_to_reach(kind, scope, ctx.now):
        ctx.notes.append(
            f"CAP REACHED: {reason}; further {kind}s are held for the rest of the hour (told once per hour)"
        )
    return reason


def settle(ctx: ActionContext, action: Action, target: Target, succeeded: bool) -> None:
    """After an action that counts against a cap: count it, or give its slot back when it did nothing."""
    kind = "node" if action.counts_against_node_cap else "instance" if action.counts_against_instance_cap else None
    if kind is None:
        return
    marked = "cordoned-nodes" if kind == "node" else "isolated-instances"
    if succeeded:
        if marked in ctx.cache:  # counted from here on (only once listed: a partial set would undercount)
            ctx.cache[marked].add(target.name)
        # An instance counts once, however many of its actions count (isolation, out of service).
        ctx.cache.setdefault("out-of-service", set()).add(target.name)
        return
    if kind == "instance" and target.name in ctx.cache.get("out-of-service", set()):
        return  # another of its actions took it out of service: the slot stays taken
    lease = ctx.cache.get("leases", {}).pop((kind, target.name), None)
    if lease is not None and ctx.caps is not None:
        ctx.caps.release(kind, lease[0], lease[1], target.name)


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags") or []}


def compute_block(action: Action, target: Target, ctx: ActionContext) -> str | None:
    """A step that cannot work on what runs the node: said, not attempted. The node's labels are
    written by whoever controls the node (a compromised kubelet too), so a claim that would spare
    the instance is believed only when EC2 confirms it: a managed instance (`Operator.Managed`), a
    Windows platform. A claim EC2 contradicts is said, and the step runs."""
    claims_auto = target.attributes.get("compute") == compute.AUTO and action.refused_by_managed_instances
    claims_os = action.not_on.get(target.attributes.get("os", ""))
    if not (claims_auto or claims_os) or ctx.aws is None:
        return None
    described = cached_instance(ctx, target)
    if described is None:
        return None  # the action reports the instance gone
    if claims_auto:
        if (described.get("Operator") or {}).get("Managed") is True:
            return (f"not possible: {target} is an EKS Auto Mode node, and its EC2 managed instance refuses "
                    f"{action.refused_by_managed_instances}; it is contained through Kubernetes instead (cordon, "
                    "pod isolation, do-not-disrupt)")  # fmt: skip
        _contradicted(ctx, f"node of instance {target} is labelled EKS Auto Mode, but EC2 says the instance is "
                           "not a managed instance: its steps run as on any node")  # fmt: skip
    if target.attributes.get("os") == compute.WINDOWS and str(described.get("Platform", "")).lower() != "windows":
        _contradicted(ctx, f"node of instance {target} says it runs Windows, but EC2 says the instance does not: "
                           "its steps run as on any node")  # fmt: skip
        return None
    return f"not possible: {claims_os}" if claims_os else None


def _contradicted(ctx: ActionContext, said: str) -> None:
    if said not in ctx.notes:
        logger.warning("node claim contradicted by EC2", extra={"incident_id": ctx.incident.id, "said": said})
        ctx.notes.append(said)


def instance_block(action: Action, target: Target, ctx: ActionContext) -> str | None:
    if ctx.aws is None:
        return "no AWS access configured"
    instance = cached_instance(ctx, target)
    if instance is None:
        return None  # the action reports the instance gone
    tags = _tags(instance)
    if tags.get(PROTECTED_TAG, "").lower() == "true":
        return f"instance {target.name} is protected by its tag {PROTECTED_TAG}=true"
    if not action.counts_against_instance_cap or ISOLATED_AT_TAG in tags:
        return None
    capped = _instance_cap(ctx, target)
    if capped:
        return capped
    last = _last_ready_node(ctx, target, tags)
    if last:
        settle(ctx, action, target, succeeded=False)  # the slot just taken goes back
    return last


def _instance_cap(ctx: ActionContext, target: Target) -> str | None:
    assert ctx.aws is not None
    if _shared_caps(ctx):
        cap = ctx.settings.max_instances_isolated_per_hour
        return _lease(ctx, "instance", target.name, cap, "isolated", "MAX_INSTANCES_ISOLATED_PER_HOUR")
    count = len(_isolated_instances(ctx) - {target.name})
    cap = ctx.settings.max_instances_isolated_per_hour
    if count >= cap:
        return (
            f"blast-radius cap reached: {count} instance(s) of cluster {ctx.incident.cluster} isolated "
            f"in the last hour (MAX_INSTANCES_ISOLATED_PER_HOUR={cap})"
        )
    return None


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _last_ready_node(ctx: ActionContext, target: Target, tags: dict[str, str]) -> str | None:
    """Never isolate the last Ready node of a node group: that would take the group's workloads down."""
    assert ctx.aws is not None
    key = next((k for k in NODE_GROUP_TAGS if tags.get(k)), None)
    if key is None:
        return None
    group = tags[key]
    peers = [
        i
        for i in ctx.aws.describe_instances({f"tag:{key}": [group], "instance-state-name": ["running"]})
        if i.get("InstanceId") != target.name and ISOLATED_AT_TAG not in _tags(i)
    ]
    ready_instances = {
        (n.get("spec") or {}).get("providerID", "").rsplit("/", 1)[-1] for n in ctx.kube.list_nodes() if _ready(n)
    }
    if not any(p.get("InstanceId") in ready_instances for p in peers):
        return (
            f"instance {target.name} runs the last Ready node of node group {group}; "
            "isolating it would take the group down"
        )
    return None


def _matches(arn: str, patterns: tuple[str, ...]) -> bool:
    """Globs against the ARN or the name, case-insensitively (keys: an alias or id names one)."""
    lowered = (arn.lower(), name_of(arn).lower())
    return any(fnmatchcase(lowered[0], p.lower()) or fnmatchcase(lowered[1], p.lower()) for p in patterns)


def _own_identity(ctx: ActionContext) -> str:
    assert ctx.identity is not None
    own = ctx.cache.get("own-identity")
    if own is None:
        caller = ctx.identity.caller_arn()
        parsed = principal_from_arn(caller, PrincipalRole.CALLER)
        own = ctx.cache["own-identity"] = parsed.arn if parsed and parsed.arn else caller
    return str(own)


def own_roles(ctx: ActionContext) -> list[str]:
    """The responder's own roles, by exact ARN: the stage's function roles in the account it runs in,
    or the spoke role when it acts in a member account. A role merely named like them is not one."""
    me = _own_identity(ctx)
    account, stage = account_of(me), ctx.settings.stage
    if name_of(me) == ctx.settings.spoke_role:
        return [me]
    return [me, *(f"arn:aws:iam::{account}:role/{f.role_name(stage)}" for f in FUNCTIONS)]


def _tagged(tags: Any, key: str) -> bool:
    return any(t.get("Key") == key and str(t.get("Value", "")).lower() == "true" for t in tags or [])


def identity_block(target: Target, ctx: ActionContext) -> str | None:
    if ctx.identity is None:
        return "no AWS access configured"
    if same_identity(_own_identity(ctx), target.name):
        return f"{target.name} is the responder's own identity; never revoked"
    if any(same_principal(target.name, own) for own in own_roles(ctx)):
        return f"{target.name} is one of the responder's own roles (stage {ctx.settings.stage}); never revoked"
    return _looked_up_block(target, ctx)


def _looked_up_block(target: Target, ctx: ActionContext) -> str | None:
    """What IAM says of the target: a service-linked role, or the protection tag."""
    assert ctx.identity is not None
    tag = ctx.settings.protected_principal_tag
    tags: Any = None
    if target.kind == "role" or kind_of(target.name) == "role":
        role = ctx.identity.get_role(name_of(target.name))
        if role and str(role.get("Path", "")).startswith(SERVICE_LINKED_PATH):
            return f"{target.name} is an AWS service-linked role; never revoked"
        tags = (role or {}).get("Tags")
    elif target.kind == "user" or kind_of(target.name) == "user":
        tags = ctx.identity.user_tags(name_of(target.name))
    return f"{target.name} is protected by its tag {tag}=true; never revoked" if _tagged(tags, tag) else None


def _callers(ctx: ActionContext) -> list[str]:
    return [p.arn for p in ctx.incident.principals if p.arn and p.involved_as is PrincipalRole.CALLER]


def key_static_block(target: Target, settings: Settings, callers: list[str]) -> str | None:
    """What a plan can tell about a key without AWS: admin callers, and keys that cannot be protected."""
    admins = [c for c in callers if any(same_principal(c, p) for p in settings.kms_admin_principals)]
    if admins:
        return f"made by a key administrator ({admins[0]}, KMS_ADMIN_PRINCIPALS): alerted, not reversed"
    listed = _matches(target.name, settings.protected_keys)
    if not listed and not settings.protected_key_tag and not settings.clusters:
        return f"key {target.name} is not protected (alert only): list it in PROTECTED_KEYS, tag it or name its cluster"
    return None


def key_block(target: Target, ctx: ActionContext) -> str | None:
    if ctx.keys is None or ctx.identity is None:
        return "no AWS access configured"
    callers = _callers(ctx)
    own = _own_identity(ctx)
    if any(same_identity(own, c) for c in callers):
        return "caused by the responder's own role: ignored, so the responder never fights itself"
    static = key_static_block(target, ctx.settings, callers)
    if static:
        return static
    if ctx.keys.why_protected(target.name) is None:
        return f"key {target.name} is not protected (alert only): list it in PROTECTED_KEYS, tag it or name its cluster"
    return None
