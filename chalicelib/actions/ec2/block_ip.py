"""ec2:block-ip: deny the finding's remote address in the network ACL of the node's subnet."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.ec2.common import aws, instance, missing
from chalicelib.interfaces import EC2API, IAMStatement, Outcome, Status, Target

if TYPE_CHECKING:
    from chalicelib.incident import Incident

# Network ACL rules are evaluated from the lowest number up; ours must come before the allows.
_LOWEST_RULE = 1


def _cidr(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _first_allow(entries: list[dict[str, Any]], *, egress: bool) -> int:
    allows = [
        int(e["RuleNumber"]) for e in entries if bool(e.get("Egress")) == egress and e.get("RuleAction") == "allow"
    ]
    return min(allows) if allows else 32767


def denied(entries: list[dict[str, Any]], cidr: str, *, egress: bool) -> bool:
    """A deny for `cidr` that takes effect: ACL rules are read in order, so one numbered after an
    allow rule decides nothing, whatever its name or action says."""
    ceiling = _first_allow(entries, egress=egress)
    return any(
        bool(e.get("Egress")) == egress
        and e.get("RuleAction") == "deny"
        and cidr in {e.get("CidrBlock"), e.get("Ipv6CidrBlock")}
        and int(e["RuleNumber"]) < ceiling
        for e in entries
    )


def free_rule_number(entries: list[dict[str, Any]], *, egress: bool) -> int | None:
    """The first unused rule number below every allow rule in that direction, or None."""
    mine = [e for e in entries if bool(e.get("Egress")) == egress]
    used = {int(e["RuleNumber"]) for e in mine}
    allows = [int(e["RuleNumber"]) for e in mine if e.get("RuleAction") == "allow"]
    ceiling = min(allows) if allows else 32767
    return next((n for n in range(_LOWEST_RULE, ceiling) if n not in used), None)


class BlockIP(Action):
    """Add deny entries (inbound and outbound) for each public remote address the finding names.

    Network ACLs are stateless, so, unlike a security group change, this also cuts connections
    that were already established. Private and reserved addresses are never blocked.

    Example::

        - action: ec2:block-ip
    """

    name = "ec2:block-ip"
    contains = True
    target_kind = "instance"
    summary = "deny the finding's remote address in the network ACL of the node's subnet"
    disrupts_node = True  # the whole subnet's network ACL
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(
            (
                "ec2:DescribeInstances",
                "ec2:DescribeNatGateways",
                "ec2:DescribeNetworkAcls",
                "ec2:DescribeManagedPrefixLists",
            )
        ),
        # AWS owns the managed lists: their ARNs name no account an ARN pattern could scope (read-only).
        IAMStatement(("ec2:GetManagedPrefixListEntries",)),
        # Delete: strong evidence evicts heuristic denies when the budget is full (and puts them back).
        IAMStatement(
            ("ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAclEntry"),
            ("arn:aws:ec2:{region}:{account}:network-acl/*",),
        ),
    )

    release_iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DeleteNetworkAclEntry",), ("arn:aws:ec2:{region}:{account}:network-acl/*",)),
    )
    reads_back = "the network ACL entries (each address denied, before any allow)"
    releases = (
        "removes the deny entries it added (only those: same rule number, address and action), unless "
        "another incident still relies on them: then the last one released removes them"
    )
    keeps = "entries someone changed since (unless forced); connections cut meanwhile stay cut"

    def describe(self, target: Target, params: Params) -> str:
        return f"deny remote address(es) of the finding in the network ACL of instance {target}'s subnet"

    def held_for(self, incident: Incident) -> str | None:
        if incident.details.get("remote_evidence") == "heuristic":
            return (f"{', '.join(incident.remote_ips) or 'the remote'} is suspected by a port heuristic only "
                    f"({incident.details.get('detector', 'flow logs')}): a human decides before it is denied for the "
                    "whole subnet")  # fmt: skip
        return None

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        held = [str(e) for e in prior.get("held") or []]
        if not held or ctx.caps is None:
            return _release(aws(ctx), prior, force=force)
        # Shared with other incidents: only the last holder removes a deny, whoever added it.
        kept, last = [], []
        own = {_effect_of(str(prior.get("network_acl")), e): e for e in prior.get("entries_added") or []}
        for effect in held:
            remaining, made = ctx.caps.let_go(effect, ctx.incident.id)
            if remaining:
                kept.append(f"{_effect_label(effect)} (still relied on by incident {', '.join(remaining)})")
            elif made and made.get("evicted_by"):
                kept.append(
                    f"{_effect_label(effect)} (evicted before by incident {made['evicted_by']}: nothing to remove)"
                )
            elif made or effect in own:
                last.append(made or own[effect])
        said = f"; kept {'; '.join(kept)}" if kept else ""
        if not last:
            outcome = Outcome(Status.SUCCEEDED, f"this incident no longer holds its denies{said}")
        else:
            removed = _release(aws(ctx), {"network_acl": prior.get("network_acl"), "entries_added": last}, force=force)
            outcome = Outcome(removed.status, f"{removed.detail}{said}")
        back = _put_back(ctx.caps, aws(ctx), str(prior.get("network_acl")), prior.get("evicted") or [], ctx.incident.id)
        return Outcome(outcome.status, f"{outcome.detail}{back}") if back else outcome

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:  # noqa: PLR0911 - one return per outcome
        addresses, spared, nothing = _blockable(ctx)
        if nothing is not None:
            return nothing
        ec2 = aws(ctx)
        found = instance(ctx, target)
        if found is None:
            return missing(target)
        addresses, kept = _not_the_platform(ec2, str(found.get("VpcId") or ""), addresses)
        if not addresses:
            return Outcome(Status.SKIPPED, f"never blocked: {'; '.join(kept)}")
        acl = ec2.network_acl_of(str(found["SubnetId"]))
        if acl is None:
            return Outcome(Status.FAILED, f"no network ACL found for subnet {found['SubnetId']}")
        entries, evicted, full = _room(ctx, ec2, acl, addresses)
        if full is not None:
            return full
        added: list[dict[str, Any]] = []
        for address in addresses:
            cidr = _cidr(address)
            for egress in (False, True):
                if denied(entries, cidr, egress=egress):
                    continue
                number = free_rule_number(entries, egress=egress)
                if number is None:
                    return Outcome(
                        Status.FAILED, f"no free rule number before the allow rules of {acl['NetworkAclId']}"
                    )
                ec2.add_acl_deny(str(acl["NetworkAclId"]), number, cidr, egress=egress)
                entry = {"RuleNumber": number, "Egress": egress, "RuleAction": "deny", "CidrBlock": cidr}
                entries.append(entry)
                added.append(entry)
        prior: dict[str, Any] = {"network_acl": acl["NetworkAclId"], "entries_added": added}
        if evicted:
            prior["evicted"] = evicted
        problem = None if ctx.dry_run else _verify(ec2, str(found["SubnetId"]), addresses)
        if problem:
            return Outcome(Status.FAILED, f"block does not hold in {acl['NetworkAclId']}: {problem}", prior)
        unshared = _recorded(ctx, str(acl["NetworkAclId"]), addresses, added, prior)
        if not added:
            if prior.get("held"):
                return Outcome(Status.SUCCEEDED, f"{', '.join(addresses)} already denied in {acl['NetworkAclId']}; "
                                                 "this incident relies on those denies too (kept until the last "
                                                 "incident that does is released)", prior)  # fmt: skip
            return Outcome(Status.SKIPPED, f"{', '.join(addresses)} already denied in {acl['NetworkAclId']}")
        kept = [*(f"{a} (NEVER_BLOCK)" for a in spared), *kept]
        text = _denied_text(ctx.incident, str(acl["NetworkAclId"]), added, kept, evicted)
        return Outcome(Status.SUCCEEDED, text + unshared, prior)


def _denied_text(
    incident: Incident, acl: str, added: list[dict[str, Any]], kept: list[str], evicted: list[dict[str, Any]]
) -> str:
    listed = ", ".join(f"#{e['RuleNumber']} {'out' if e['Egress'] else 'in'} {e['CidrBlock']}" for e in added)
    also = f"; never blocked: {'; '.join(kept)}" if kept else ""
    if evicted:
        also += "; to make room, evicted the heuristic deny of " + ", ".join(
            f"{item['cidr']} (incident {', '.join(item['holders'])})" for item in evicted
        )
    return f"denied in {acl}{_why_blocked(incident)}: {listed}; verified{also}"


def _blockable(ctx: ActionContext) -> tuple[list[str], list[str], Outcome | None]:
    """(the public remotes to deny, those NEVER_BLOCK spares, or why there is nothing to block)."""
    spared = [a for a in ctx.incident.remote_ips if _is_public(a) and _listed(a, ctx.settings.never_block)]
    addresses = [a for a in ctx.incident.remote_ips if _is_public(a) and a not in spared]
    if addresses:
        return addresses, spared, None
    named = ", ".join(ctx.incident.remote_ips)
    if spared:
        return [], spared, Outcome(Status.SKIPPED, f"never blocked (NEVER_BLOCK, e.g. public DNS resolvers): {named}")
    why = f"only private or reserved addresses ({named})" if named else "no remote address"
    forgeable = ctx.incident.details.get("not_established")
    evidence = ctx.incident.details.get("remote_evidence", "")
    if evidence.startswith("none:") and not named:
        return [], [], Outcome(Status.SKIPPED, f"nothing to block: {evidence.removeprefix('none: ')}")
    if forgeable and not named:
        why = f"no address ours sent data to; {forgeable} only as packet sources, which can be forged"
    return [], [], Outcome(Status.SKIPPED, f"the finding names {why}; nothing to block")


def _recorded(
    ctx: ActionContext, acl: str, addresses: list[str], added: list[dict[str, Any]], prior: dict[str, Any]
) -> str:
    """Record the incident as a holder of its denies (prior gains `held`); "" or, when the table could
    not be written, what that means: the denies are in place, and a release removes what this added."""
    if ctx.caps is None or ctx.dry_run:
        return ""
    grade = ctx.incident.details.get("remote_evidence") or "strong"
    try:
        prior["held"] = _hold(ctx.caps, acl, addresses, added, ctx.incident.id, grade)
    except Exception as exc:  # noqa: BLE001 - the denies are in place: keep what undoes them
        return f"; not recorded as shared ({type(exc).__name__}): a release removes what this step added"
    return ""


def _hold(
    caps: Any, acl: str, addresses: list[str], added: list[dict[str, Any]], incident: str, evidence: str
) -> list[str]:
    """Record this incident as a holder of each deny it relies on (made by it or not); the entries it
    made go with their record, so whichever holder is released last can remove them."""
    effects = []
    for address in addresses:
        for egress in (False, True):
            cidr = _cidr(address)
            effect = _effect_of(acl, {"CidrBlock": cidr, "Egress": egress})
            made = next((e for e in added if e["CidrBlock"] == cidr and e["Egress"] == egress), None)
            caps.hold(effect, incident, {**made, "evidence": evidence} if made else None)
            effects.append(effect)
    return effects


def _room(
    ctx: ActionContext, ec2: EC2API, acl: dict[str, Any], addresses: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Outcome | None]:
    """(the ACL's entries, what was evicted to make room, or why there is no room). The budget is
    spent by confidence: a heuristic never takes the last quarter (a threat-listed C2 found after
    ten decoy "pool" connections still gets its deny), and strong evidence evicts heuristic denies
    when the cap is reached (recorded, and put back when it is released)."""
    entries: list[dict[str, Any]] = list(acl.get("Entries", []))

    def ours() -> list[dict[str, Any]]:
        return [e for e in entries if e.get("RuleAction") == "deny" and int(e["RuleNumber"]) < _first_allow(
            entries, egress=bool(e.get("Egress")))]  # fmt: skip

    cap = ctx.settings.max_acl_denies_per_subnet
    weak = ctx.incident.details.get("remote_evidence") == "heuristic"
    budget = cap - max(2, cap // 4) if weak else cap
    needed = sum(not denied(entries, _cidr(a), egress=eg) for a in addresses for eg in (False, True))
    evicted: list[dict[str, Any]] = []
    if needed and len(ours()) + needed > budget and not weak and ctx.caps is not None and not ctx.dry_run:
        evicted = _evict(ctx.caps, ec2, str(acl["NetworkAclId"]), ours(), len(ours()) + needed - budget, ctx.incident)
        gone = {(e["RuleNumber"], e["Egress"]) for item in evicted for e in item["entries"]}
        entries = [e for e in entries if (int(e["RuleNumber"]), bool(e.get("Egress"))) not in gone]
    if needed and len(ours()) + needed > budget:
        kept_for = f", of which heuristic evidence may use {budget}" if weak else ""
        return (
            entries,
            evicted,
            Outcome(
                Status.SKIPPED,
                f"blast-radius cap: {acl['NetworkAclId']} already has {len(ours())} deny entries before its allow "
                f"rules (MAX_ACL_DENIES_PER_SUBNET={cap}{kept_for}); {', '.join(addresses)} not added",
            ),
        )
    return entries, evicted, None


def _evict(
    caps: Any, ec2: EC2API, acl: str, ours: list[dict[str, Any]], wanted: int, by: Incident
) -> list[dict[str, Any]]:
    """Remove heuristic denies (whole addresses, both directions) until `wanted` slots are free; each
    eviction is recorded on its holds (so its incidents' releases leave it alone) and returned."""
    evicted: list[dict[str, Any]] = []
    freed = 0
    for cidr in dict.fromkeys(str(e.get("CidrBlock")) for e in ours if e.get("CidrBlock")):
        if freed >= wanted:
            break
        entries = [e for e in ours if e.get("CidrBlock") == cidr]
        records = [(_effect_of(acl, {"CidrBlock": cidr, "Egress": bool(e.get("Egress"))}), e) for e in entries]
        held = [(effect, *caps.held_by(effect)) for effect, _ in records]
        if not held or not all(made and made.get("evidence") == "heuristic" and holders for _, holders, made in held):
            continue
        for (effect, entry), (_, _, made) in zip(records, held, strict=True):
            ec2.remove_acl_entry(acl, int(entry["RuleNumber"]), egress=bool(entry.get("Egress")))
            caps.remade(effect, {"evicted_by": by.id, "entry": made})
        holders = sorted({h for _, hs, _ in held for h in hs})
        slots = [{"RuleNumber": int(e["RuleNumber"]), "Egress": bool(e.get("Egress"))} for e in entries]
        evicted.append({"cidr": cidr, "holders": holders, "effects": [e for e, _ in records], "entries": slots})
        freed += len(entries)
    return evicted


def _put_back(caps: Any, ec2: EC2API, acl: str, evicted: list[dict[str, Any]], me: str) -> str:
    """Released, the stronger incident puts back the heuristic denies it evicted that are still held."""
    back = []
    for item in evicted:
        for effect in item.get("effects") or []:
            holders, made = caps.held_by(effect)
            if not holders or not made or made.get("evicted_by") != me:
                continue
            entry = dict(made["entry"])
            entries = list((ec2.network_acl_by_id(acl) or {}).get("Entries", []))
            number = free_rule_number(entries, egress=bool(entry["Egress"]))
            if number is None:
                continue
            ec2.add_acl_deny(acl, number, str(entry["CidrBlock"]), egress=bool(entry["Egress"]))
            caps.remade(effect, {**entry, "RuleNumber": number})
            back.append(f"#{number} {'out' if entry['Egress'] else 'in'} {entry['CidrBlock']}")
    return f"; put back the heuristic denies it had evicted: {', '.join(back)}" if back else ""


def _effect_of(acl: str, entry: dict[str, Any]) -> str:
    return f"acl-deny#{acl}#{entry['CidrBlock']}#{'out' if entry['Egress'] else 'in'}"


def _effect_label(effect: str) -> str:
    _, acl, cidr, direction = effect.split("#", 3)
    return f"{direction} {cidr} in {acl}"


def _why_blocked(incident: Incident) -> str:
    evidence = incident.details.get("remote_evidence")
    if evidence == "strong":
        return " (on the threat list, and ours exchanged data with it)"
    if evidence == "heuristic":
        return " (a port heuristic, approved by a human)"
    return ""


def _release(ec2: EC2API, prior: dict[str, Any], *, force: bool) -> Outcome:
    acl = str(prior.get("network_acl") or "")
    added = list(prior.get("entries_added") or [])
    if not acl or not added:
        return Outcome(Status.SKIPPED, "no network ACL entry was added")
    entries = list((ec2.network_acl_by_id(acl) or {}).get("Entries", []))
    removed, changed = [], []
    for entry in added:
        egress = bool(entry.get("Egress"))
        now = next((e for e in entries if int(e["RuleNumber"]) == int(entry["RuleNumber"])
                    and bool(e.get("Egress")) == egress), None)  # fmt: skip
        if now is None:
            continue
        if now.get("CidrBlock") != entry.get("CidrBlock") or now.get("RuleAction") != "deny":
            changed.append(f"#{entry['RuleNumber']} {'out' if egress else 'in'} now {now.get('CidrBlock')}")
            if not force:
                continue
        ec2.remove_acl_entry(acl, int(entry["RuleNumber"]), egress=egress)
        removed.append(f"#{entry['RuleNumber']} {'out' if egress else 'in'} {entry.get('CidrBlock')}")
    if changed and not force:
        kept = "; ".join(changed)
        detail = f"{acl}: rule(s) changed since the block ({kept}), not removed (force removes them anyway)"
        return Outcome(Status.SKIPPED, f"{detail}; removed {', '.join(removed) or 'nothing'}")
    if not removed:
        return Outcome(Status.SKIPPED, f"{acl}: the deny entries are gone already")
    return Outcome(Status.SUCCEEDED, f"{acl}: removed {', '.join(removed)}")


def _not_the_platform(ec2: EC2API, vpc_id: str, addresses: list[str]) -> tuple[list[str], list[str]]:
    """The addresses left once the VPC's own NAT gateways (denying them cuts every private subnet
    off the internet) and AWS service ranges (S3, DynamoDB, CloudFront, ...: the region's
    AWS-managed prefix lists) are taken out, and what was taken out and why."""
    kept: list[str] = []
    nat = ec2.nat_gateway_addresses(vpc_id)
    kept += [f"{a} (this VPC's NAT gateway)" for a in addresses if a in nat]
    remaining = [a for a in addresses if a not in nat]
    ranges = ec2.aws_service_ranges() if remaining else {}
    services = {a: name for name, cidrs in ranges.items() for a in remaining if _listed(a, tuple(cidrs))}
    kept += [f"{a} (AWS service address, prefix list {name})" for a, name in sorted(services.items())]
    return [a for a in remaining if a not in services], kept


def _verify(ec2: EC2API, subnet: str, addresses: list[str]) -> str | None:
    """Read the ACL back: every address denied both ways before the allow rules, or what is not."""
    entries = list((ec2.network_acl_of(subnet) or {}).get("Entries", []))
    missed = [
        f"{cidr} {'out' if egress else 'in'}"
        for cidr in map(_cidr, addresses)
        for egress in (False, True)
        if not denied(entries, cidr, egress=egress)
    ]
    return f"{', '.join(missed)} not denied before the allow rules" if missed else None


def _listed(address: str, cidrs: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    for cidr in cidrs:
        try:
            if ip in ipaddress.ip_network(cidr, strict=False):
                return True
        except ValueError:
            continue
    return False


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False
