"""Seeded, realistic VPC Flow Logs for the benchmark and the detector tests.

An EKS VPC (10.0.0.0/16): nodes with three ENIs each (as the VPC CNI attaches them), pods on
their secondary addresses, a NAT gateway. Every connection is logged in both directions on each
private ENI it touches. Normal traffic: pod to pod and pod to service (most of it), HTTPS to the
internet, DNS and NTP, internet scanners rejected at the edge, servers on high ports answering
clients (the classic port-scan false positive), NODATA/SKIPDATA records. Planted on top: flows to
threat-listed addresses and CIDRs, mining-pool connections, SSH/RDP accepted from the internet,
an external and an internal port scan, a pod sweeping internal addresses, and pods sending
gigabytes out. `Truth` lists them.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ACCOUNT = "123456789012"
V5_FIELDS = [
    "version", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "start", "end", "type", "packets", "bytes",
    "account-id", "vpc-id", "subnet-id", "instance-id", "interface-id", "region", "az-id", "sublocation-type",
    "sublocation-id", "action", "tcp-flags", "pkt-srcaddr", "pkt-dstaddr", "pkt-src-aws-service", "pkt-dst-aws-service",
    "traffic-path", "flow-direction", "log-status",
]  # fmt: skip
V2_FIELDS = [
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes",
    "start", "end", "action", "log-status",
]  # fmt: skip
START = 1_764_320_000


@dataclass
class Truth:
    threat: set[str] = field(default_factory=set)  # our addresses that talked to the threat list
    mining: set[str] = field(default_factory=set)
    admin: set[str] = field(default_factory=set)
    scanners: set[str] = field(default_factory=set)
    sweepers: set[str] = field(default_factory=set)  # pods probing many internal addresses (east-west)
    egress: set[str] = field(default_factory=set)


@dataclass
class Node:
    instance: str
    enis: list[str]
    address: str
    pods: list[str]
    subnet: str


@dataclass
class Topology:
    nodes: list[Node]
    nat_eni: str
    nat_address: str
    pod_eni: dict[str, str]  # pod address -> ENI
    node_of: dict[str, Node]


def topology(rng: random.Random, nodes: int = 60, pods_per_node: int = 35) -> Topology:
    found: list[Node] = []
    pod_eni: dict[str, str] = {}
    node_of: dict[str, Node] = {}
    for n in range(nodes):
        subnet = n % 3
        enis = [f"eni-{rng.getrandbits(68):017x}" for _ in range(3)]
        address = f"10.0.{subnet * 32 + n // 3}.{10 + n % 200}"
        pods = []
        for p in range(pods_per_node):
            pod = f"10.0.{100 + subnet * 40 + n // 3}.{(n % 3) * 80 + p + 1}"
            pods.append(pod)
            pod_eni[pod] = enis[p % 3]
        node = Node(f"i-{rng.getrandbits(68):017x}", enis, address, pods, f"subnet-{subnet:017x}")
        found.append(node)
        node_of[address] = node
        for pod in pods:
            node_of[pod] = node
    return Topology(found, f"eni-{rng.getrandbits(68):017x}", "10.0.250.10", pod_eni, node_of)


def _public(rng: random.Random) -> str:
    while True:
        first = rng.choice((3, 13, 18, 34, 35, 44, 52, 54, 99, 104, 142, 151, 172, 185, 203))
        if first == 172:
            return f"172.{rng.randint(64, 250)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def threat_list(rng: random.Random, ips: int = 50_000, cidrs: int = 5_000) -> tuple[list[str], list[str]]:
    """Single addresses and CIDRs in 45.0.0.0/8 and 91.0.0.0/8, which normal traffic never uses."""
    singles = [f"{rng.choice((45, 91))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
               for _ in range(ips)]  # fmt: skip
    nets = []
    for _ in range(cidrs):
        length = rng.choice((16, 20, 24, 24, 24, 28, 32))
        base = (rng.choice((45, 91)) << 24) | rng.getrandbits(24)
        base &= ~((1 << (32 - length)) - 1) & 0xFFFFFFFF
        nets.append(f"{base >> 24}.{(base >> 16) & 255}.{(base >> 8) & 255}.{base & 255}/{length}")
    return singles, nets


class _Writer:
    def __init__(self, fields: list[str], rng: random.Random) -> None:
        self.fields = fields
        self.rng = rng
        self.lines: list[str] = []
        self.v5 = len(fields) > len(V2_FIELDS)

    def record(self, eni: str, src: str, dst: str, sport: int, dport: int, proto: int, nbytes: int,
               action: str = "ACCEPT", instance: str = "-", direction: str = "ingress") -> None:  # fmt: skip
        start = START + self.rng.randint(0, 540)
        packets = max(1, nbytes // 900)
        if not self.v5:
            self.lines.append(f"2 {ACCOUNT} {eni} {src} {dst} {sport} {dport} {proto} {packets} {nbytes} "
                              f"{start} {start + 60} {action} OK")  # fmt: skip
            return
        flags = 19 if proto == 6 else 0
        self.lines.append(
            f"5 {src} {dst} {sport} {dport} {proto} {start} {start + 60} IPv4 {packets} {nbytes} {ACCOUNT} "
            f"vpc-0a1b2c3d4e5f60718 subnet-0123456789abcdef0 {instance} {eni} us-east-1 use1-az1 - - {action} "
            f"{flags} {src} {dst} - - {'8' if direction == 'egress' else '-'} {direction} OK"
        )

    def both(self, eni: str, client: str, server: str, cport: int, sport: int, proto: int, nbytes: int,
             instance: str = "-", action: str = "ACCEPT") -> None:  # fmt: skip
        self.record(eni, client, server, cport, sport, proto, max(40, nbytes // 8), action, instance, "egress")
        if action == "ACCEPT":
            self.record(eni, server, client, sport, cport, proto, nbytes, action, instance, "ingress")


def _normal(w: _Writer, topo: Topology, rng: random.Random, count: int) -> None:
    pods = list(topo.pod_eni)
    publics = [_public(rng) for _ in range(1500)]
    scanners = [_public(rng) for _ in range(12000)]
    while len(w.lines) < count:
        roll = rng.random()
        client = rng.choice(pods)
        node = topo.node_of[client]
        eni = topo.pod_eni[client]
        # Linux clients pick ports in 32768-60999; some stacks and NAT devices use lower ones.
        ephemeral = rng.randint(32768, 60999) if rng.random() < 0.9 else rng.randint(1024, 32767)
        if roll < 0.62:
            server = rng.choice(pods)
            port = rng.choice((8080, 8080, 443, 5432, 6379, 9090, 3000, 50051, 8443, 10250))
            w.both(eni, client, server, ephemeral, port, 6, rng.randint(200, 400_000), node.instance)
            w.both(topo.pod_eni[server], client, server, ephemeral, port, 6, rng.randint(200, 400_000),
                   topo.node_of[server].instance)  # fmt: skip
        elif roll < 0.80:
            remote = rng.choice(publics)
            size = rng.randint(500, 2_000_000)
            w.both(eni, client, remote, ephemeral, rng.choice((443, 443, 443, 80)), 6, size, node.instance)
            w.both(topo.nat_eni, client, remote, ephemeral, 443, 6, size)
        elif roll < 0.90:
            w.both(eni, client, "10.0.0.2", ephemeral, 53, 17, rng.randint(80, 600), node.instance)
        elif roll < 0.97:
            server = rng.choice(pods)
            w.record(topo.pod_eni[server], server, client, rng.choice((50051, 9200, 27017, 8443)),
                     ephemeral, 6, rng.randint(60, 900), "ACCEPT", topo.node_of[server].instance)  # fmt: skip
        elif roll < 0.988:
            target = rng.choice(topo.nodes)
            w.record(target.enis[0], rng.choice(scanners), target.address, rng.randint(1024, 65535),
                     rng.choice((22, 23, 80, 443, 445, 3389, 8080)), 6, 40, "REJECT", target.instance)  # fmt: skip
        elif roll < 0.999:
            a, b = rng.sample(topo.nodes, 2)
            w.both(a.enis[0], a.address, b.address, ephemeral, 10250, 6, rng.randint(500, 50_000), a.instance)
        elif w.v5:
            vpc = "vpc-0a1b2c3d4e5f60718 subnet-0123456789abcdef0"
            w.lines.append(f"5 - - - - - {START} {START + 60} - - - {ACCOUNT} {vpc} - {eni} us-east-1 use1-az1 "
                           "- - - - - - - - - - NODATA")  # fmt: skip
        else:
            w.lines.append(f"2 {ACCOUNT} {eni} - - - - - - - {START} {START + 60} - NODATA")


def _planted(w: _Writer, topo: Topology, rng: random.Random, threats: tuple[list[str], list[str]]) -> Truth:
    truth = Truth()
    pods = list(topo.pod_eni)
    singles, nets = threats
    for i in range(70):
        pod = rng.choice(pods)
        if i < 40:
            remote = rng.choice(singles)
        else:
            base, _, length = rng.choice(nets).partition("/")
            octets = [int(o) for o in base.split(".")]
            span = (1 << (32 - int(length))) - 1
            value = ((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) + rng.randint(0, span)
            remote = f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
        w.both(topo.pod_eni[pod], pod, remote, rng.randint(32768, 60999), 443, 6, 5000, topo.node_of[pod].instance)
        truth.threat.add(pod)
    for _ in range(24):
        pod = rng.choice(pods)
        w.both(topo.pod_eni[pod], pod, _public(rng), rng.randint(32768, 60999),
               rng.choice((3333, 4444, 5555, 7777, 14444, 45700)), 6, 90_000, topo.node_of[pod].instance)  # fmt: skip
        truth.mining.add(pod)
    for _ in range(6):
        node = rng.choice(topo.nodes)
        w.both(node.enis[0], _public(rng), node.address, rng.randint(32768, 60999), rng.choice((22, 3389)), 6,
               30_000, node.instance)  # fmt: skip
        truth.admin.add(node.address)
    outside, target = _public(rng), rng.choice(topo.nodes)
    for port in rng.sample(range(1, 30000), 1000):
        w.record(target.enis[0], outside, target.address, 51515, port, 6, 44, "REJECT", target.instance)
    truth.scanners.add(outside)
    inside = rng.choice(pods)
    victim = rng.choice(pods)
    for port in rng.sample(range(1, 20000), 300):
        w.record(topo.pod_eni[inside], inside, victim, 40404, port, 6, 60, "ACCEPT", topo.node_of[inside].instance)
    truth.scanners.add(inside)
    sweeper = rng.choice(pods)  # lateral movement: bare SYNs to the kubelet port of 150 addresses
    for probed in rng.sample([p for p in pods if p != sweeper], 150):
        w.record(topo.pod_eni[sweeper], sweeper, probed, 40500, 10250, 6, 44, "ACCEPT", topo.node_of[sweeper].instance)
    truth.sweepers.add(sweeper)
    for _ in range(5):
        pod = rng.choice(pods)
        remote = _public(rng)
        for _ in range(40):
            w.record(topo.pod_eni[pod], pod, remote, rng.randint(32768, 60999), 443, 6, 80_000_000, "ACCEPT",
                     topo.node_of[pod].instance, "egress")  # fmt: skip
        truth.egress.add(pod)
    return truth


def generate(records: int, seed: int = 7, *, v5: bool = False, threats: tuple[list[str], list[str]] | None = None
             ) -> tuple[list[str], Truth, tuple[list[str], list[str]], Topology]:  # fmt: skip
    """(lines with the header first, truth, threat list, topology)."""
    rng = random.Random(seed)
    topo = topology(rng)
    threats = threats or threat_list(rng)
    fields = V5_FIELDS if v5 else V2_FIELDS
    writer = _Writer(fields, rng)
    truth = _planted(writer, topo, rng, threats)
    planted = writer.lines
    writer.lines = []
    _normal(writer, topo, rng, records - len(planted))
    normal = writer.lines
    at = sorted(rng.randint(0, len(normal)) for _ in planted)  # spread through the file
    lines: list[str] = []
    previous = 0
    for position, line in zip(at, planted, strict=True):
        lines.extend(normal[previous:position])
        lines.append(line)
        previous = position
    lines.extend(normal[previous:])
    return [" ".join(fields), *lines], truth, threats, topo


def write_gzip(path: Path, lines: list[str], level: int = 6) -> Path:
    with gzip.open(path, "wt", compresslevel=level, newline="\n") as out:
        out.write("\n".join(lines))
        out.write("\n")
    return path


def chunks(lines: list[str], size: int) -> Iterator[list[str]]:
    for at in range(0, len(lines), size):
        yield lines[at : at + size]
