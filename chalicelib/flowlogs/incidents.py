"""Flow-log findings become incidents: one per detector, account, region and address per hour.

The id covers the hour, so a connection that goes on for an hour, seen in six S3 objects or a
hundred CloudWatch Logs batches, is one incident (and one message) with the incident ledger. It
names the account and region (and, once attribution finds the interface, its VPC), because private
addresses repeat: a decoy flow from 10.0.1.5 in one account must never make the real miner at
10.0.1.5 in another a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chalicelib.flowlogs.detect import Finding
from chalicelib.incident import Incident, ResourceKind, Severity

# (type, severity, title) per detector; the type's tactic part is what the finding suggests.
KINDS = {
    "threat-list": ("CommandAndControl:FlowLogs/ThreatListConnection", Severity.HIGH,
                    "{address} exchanged traffic with {n} threat-listed address(es)"),
    "mining-pool": ("Impact:FlowLogs/MiningPoolConnection", Severity.HIGH,
                    "{address} connected to {n} address(es) on mining-pool ports"),
    "admin-from-internet": ("InitialAccess:FlowLogs/AdminPortFromInternet", Severity.MEDIUM,
                            "{address} accepted SSH/RDP from {n} internet address(es)"),
    "port-scan": ("Discovery:FlowLogs/PortScan", Severity.HIGH,
                  "{address} probed {ports} ports on {n} address(es)"),
    "port-scan-from-internet": ("Recon:FlowLogs/PortScanFromInternet", Severity.MEDIUM,
                                "{address} (internet) probed {ports} ports on our addresses"),
    "address-sweep": ("Discovery:FlowLogs/InternalAddressSweep", Severity.HIGH,
                      "{address} probed {records} internal addresses on {ports} port(s) (east-west)"),
    "address-sweep-capped": ("Discovery:FlowLogs/InternalAddressSweep", Severity.HIGH,
                             "{address} probed at least {records} internal addresses on {ports} port(s) (east-west)"),
    "forbidden-destination": ("LateralMovement:FlowLogs/ForbiddenDestination", Severity.HIGH,
                              "{address} connected to {n} address(es) it must never reach"),
    "egress-volume": ("Exfiltration:FlowLogs/EgressVolume", Severity.MEDIUM,
                      "{address} sent {gb:.1f} GB to {n} internet address(es)"),
}  # fmt: skip
TOP = 10
SHOWN_PORTS = 30
# What a detection says about its remote addresses, for `ec2:block-ip` (which denies them subnet-wide).
# Strong: the remote itself is on a threat list. Heuristic: only a port says so (a partner API on 8888,
# an administrator's SSH client): a human decides. Anything else names no suspect remote at all (a
# scan's remotes are its victims, an egress volume's or a forbidden destination's are ours to reach).
REMOTE_EVIDENCE = {"threat-list": "strong", "mining-pool": "heuristic", "admin-from-internet": "heuristic"}


@dataclass(frozen=True)
class Batch:
    """Where the records came from: for the incident and for the alert."""

    account: str
    region: str
    origin: str  # s3://bucket/key or the CloudWatch Logs group and stream
    at: datetime  # when the batch was read: incidents are per hour
    # A file replayed by an operator: its capture times are history, so whoever holds an address now
    # is who it is attributed to (a delivery is judged by who held it when the flows were captured).
    replay: bool = False

    def __post_init__(self) -> None:
        # From the payload's `owner` or the object's key, so hostile: an account or region that is
        # not one is unknown (""), never a name a message, a link or a spoke role is built from.
        from chalicelib import identifiers

        if not identifiers.ACCOUNT.match(self.account):
            object.__setattr__(self, "account", "")
        if not identifiers.REGION.match(self.region):
            object.__setattr__(self, "region", "")


def incident_id(kind: str, account: str, region: str, address: str, hour: str, vpc: str = "") -> str:
    where = "-".join(part for part in (account or "unknown-account", region or "unknown-region", vpc) if part)
    return f"flowlogs-{kind}-{where}-{address}-{hour}"


def to_incident(finding: Finding, batch: Batch) -> Incident:
    kind = finding.detector
    if kind == "port-scan" and finding.remote:
        kind = "port-scan-from-internet"
    type_, severity, title = KINDS[kind]
    if kind == "address-sweep" and finding.capped:
        title = KINDS["address-sweep-capped"][2]
    remotes = sorted(finding.remotes)
    text = title.format(address=finding.address, n=len(remotes), ports=len(finding.ports), gb=finding.bytes / 1e9,
                        records=finding.records)  # fmt: skip
    flows = [str(flow) for flow in finding.flows[:TOP]]
    details = {
        "detector": finding.detector,
        "kind": kind,
        "hour": batch.at.strftime("%Y%m%dT%H"),
        "address": finding.address,
        "remote": "yes" if finding.remote else "no",
        "records": str(finding.records),
        "bytes": str(finding.bytes),
        "interfaces": ",".join(sorted(finding.interfaces)),
        "remote_addresses": ",".join(remotes[:20]),
        "top_flows": "\n".join(flows),
        "origin": batch.origin,
    }
    if batch.replay:
        details["replay"] = "a replayed file: attributed to whoever holds each address now, not when it was captured"
    elif finding.first and finding.last >= finding.first:  # when the flows were captured: who had the address then
        details["flows_between"] = f"{finding.first}-{finding.last}"
    if finding.ports:
        shown = sorted(finding.ports)
        more = "…" if len(shown) > SHOWN_PORTS else ""
        details["ports"] = f"{len(shown)} distinct: " + ",".join(map(str, shown[:SHOWN_PORTS])) + more
    # What `ec2:block-ip` may deny: only remotes ours sent data to over accepted TCP (a completed
    # handshake). An address seen only as a packet's source may be forged (anyone can write
    # 8.8.8.8 there), so it is reported, never blocked: an internet scanner is never blocked.
    evidence = REMOTE_EVIDENCE.get(finding.detector)
    remote_ips = () if finding.remote or evidence is None else tuple(sorted(finding.established))
    unproven = [r for r in remotes if r not in finding.established] if not finding.remote else [finding.address]
    if unproven:
        details["not_established"] = ",".join(unproven[:20])
    if evidence is None:
        details["remote_evidence"] = f"none: a {finding.detector} detection names no remote to block"
    elif remote_ips:
        details["remote_evidence"] = evidence
    hour = batch.at.strftime("%Y%m%dT%H")
    return Incident(
        id=incident_id(kind, batch.account, batch.region, finding.address, hour),
        source="flowlogs",
        type=type_,
        title=text,
        severity=severity,
        score={Severity.HIGH: 7.0, Severity.MEDIUM: 5.0}.get(severity, 2.0),
        account=batch.account,
        region=batch.region,
        resource_kind=ResourceKind.OTHER,  # until attribution finds the pod or node
        remote_ips=remote_ips,
        details=details,
        count=finding.records,
        raw_ref=batch.origin,
    )
