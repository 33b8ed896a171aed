"""Addresses are blocked only on evidence a forged packet cannot make: our side sent data to
them over accepted TCP, so the handshake completed."""

from __future__ import annotations

import pytest

from chalicelib.flowlogs.detect import Flow
from chalicelib.flowlogs.fields import DEFAULT, parse_format
from chalicelib.flowlogs.incidents import to_incident
from chalicelib.policy.loader import load_rules
from chalicelib.settings import DEFAULT_RULES_FILE
from tests.unit.test_flowlogs import BATCH, _scanner, scan_lines

NODE = "10.0.3.4"
THREAT = "45.10.1.9"  # in the test threat list
RESOLVER = "8.8.8.8"


def _line(src: str, dst: str, sport: int, dport: int, packets: int, size: int, action: str = "ACCEPT",
          protocol: int = 6) -> bytes:  # fmt: skip
    return f"2 1 eni-1 {src} {dst} {sport} {dport} {protocol} {packets} {size} 1 2 {action} OK".encode()


def _incidents(lines: list[bytes], layout: object = DEFAULT) -> dict[str, object]:
    scanner = _scanner()
    scan_lines(lines, layout, scanner)
    return {f.detector: to_incident(f, BATCH) for f in scanner.findings()}


def test_forged_ssh_from_a_resolver_is_reported_never_blocked() -> None:
    # SYNs "from" 8.8.8.8 are accepted by a security group open to the world; our SYN-ACKs go to
    # the real 8.8.8.8, which never completes the handshake: no data ever leaves our side.
    forged = [_line(RESOLVER, NODE, 1024 + i, 22, 1, 60) for i in range(150)]
    answers = [_line(NODE, RESOLVER, 22, 1024 + i, 6, 6 * 60) for i in range(150)]
    rejected = [_line(RESOLVER, NODE, 1024 + i, 3389, 1, 60, "REJECT") for i in range(150)]
    incident = _incidents(forged + answers + rejected)["admin-from-internet"]
    assert incident.remote_ips == ()  # type: ignore[attr-defined]
    assert incident.details["not_established"] == RESOLVER  # type: ignore[attr-defined]


def test_an_established_ssh_session_from_the_internet_can_be_blocked() -> None:
    session = [_line("198.51.100.7", NODE, 50123, 22, 40, 3000), _line(NODE, "198.51.100.7", 22, 50123, 38, 9000)]
    incident = _incidents(session)["admin-from-internet"]
    assert incident.remote_ips == ("198.51.100.7",)  # type: ignore[attr-defined]
    assert "not_established" not in incident.details  # type: ignore[attr-defined]


def test_forged_packets_from_a_threat_listed_address_give_nothing_to_block() -> None:
    # Rejected or not, a packet whose source says THREAT proves nothing about THREAT.
    forged = [_line(THREAT, NODE, 443, 40000 + i, 1, 1400) for i in range(5)]
    incident = _incidents(forged)["threat-list"]
    assert incident.remote_ips == ()  # type: ignore[attr-defined]


def test_our_pod_sending_data_to_a_threat_or_a_pool_is_blockable() -> None:
    lines = [_line(NODE, THREAT, 40000, 443, 10, 4000), _line(NODE, "81.2.69.77", 43610, 3333, 48, 9120)]
    found = _incidents(lines)
    assert found["threat-list"].remote_ips == (THREAT,)  # type: ignore[attr-defined]
    assert found["mining-pool"].remote_ips == ("81.2.69.77",)  # type: ignore[attr-defined]


def test_udp_answers_prove_nothing() -> None:
    # A UDP service answers whoever the request claims to be: a forged source gets our data.
    lines = [_line(THREAT, NODE, 53, 40000, 1, 80, protocol=17), _line(NODE, THREAT, 40000, 53, 5, 5000, protocol=17)]
    assert _incidents(lines)["threat-list"].remote_ips == ()  # type: ignore[attr-defined]


def test_an_internet_scanner_is_never_blocked_by_a_rule_that_would() -> None:
    probes = [_line("203.0.113.9", NODE, 40000, port, 1, 44, "REJECT") for port in range(1, 200)]
    incident = _incidents(probes)["port-scan"]
    assert incident.remote_ips == ()  # type: ignore[attr-defined]
    assert incident.details["not_established"] == "203.0.113.9"  # type: ignore[attr-defined]


def test_without_a_packets_field_nothing_is_proven() -> None:
    layout = parse_format("${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} "
                          "${protocol} ${bytes} ${start} ${end} ${action} ${log-status}")  # fmt: skip
    line = f"2 1 eni-1 {NODE} {THREAT} 40000 443 6 4000 1 2 ACCEPT OK".encode()
    assert _incidents([line], layout)["threat-list"].remote_ips == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("protocol", "packets", "size", "action", "carried"),
    [
        ("6", 6, 360, "ACCEPT", False),  # SYN-ACK retransmissions
        ("6", 1, 100, "ACCEPT", False),  # the largest bare TCP packet (IPv6, full options)
        ("6", 1, 101, "ACCEPT", True),
        ("6", 10, 5000, "REJECT", False),
        ("17", 10, 5000, "ACCEPT", False),
        ("6", 0, 5000, "ACCEPT", False),  # "-": no packet count
    ],
)
def test_what_counts_as_data(protocol: str, packets: int, size: int, action: str, carried: bool) -> None:
    flow = Flow("eni-1", NODE, THREAT, "40000", "443", size, action, protocol, packets)
    assert flow.carried_data is carried


def test_the_rules_that_block_addresses_get_only_established_ones() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    blocking = [r.name for r in rules.rules if any(a.action == "ec2:block-ip" for a in r.actions)]
    assert "flow-scan-from-internet" not in blocking


def test_block_ip_says_why_a_forgeable_address_was_left_alone() -> None:
    from datetime import UTC, datetime

    from chalicelib.actions.base import ActionContext, NoParams
    from chalicelib.actions.ec2.block_ip import BlockIP
    from chalicelib.interfaces import Status, Target
    from chalicelib.settings import Settings

    forged = [_line(RESOLVER, NODE, 1024, 22, 1, 60)]
    incident = _incidents(forged)["admin-from-internet"]
    ctx = ActionContext(incident, Settings(), None, datetime.now(UTC), False)  # type: ignore[arg-type]
    outcome = BlockIP().run(ctx, Target("instance", "i-0abc"), NoParams())
    assert outcome.status is Status.SKIPPED
    assert "8.8.8.8 only as packet sources, which can be forged" in outcome.detail


def test_a_deliverys_account_and_region_are_checked_before_anything_uses_them() -> None:
    from datetime import UTC, datetime

    from chalicelib.flowlogs.incidents import Batch

    hostile = Batch("x/../<!channel>", "us-east-1|<http://evil.example>", "logs:g/s", datetime.now(UTC))
    assert (hostile.account, hostile.region) == ("", "")
    fine = Batch("123456789012", "us-east-1", "logs:g/s", datetime.now(UTC))
    assert (fine.account, fine.region) == ("123456789012", "us-east-1")


# --- what gets blocked is graded by the evidence about that remote


def test_a_port_scan_never_names_the_api_its_scanner_also_talked_to() -> None:
    """A pod that probes 120 ports and talks to an unrelated API: the scan is the finding, the API
    is no suspect, so nothing is denied for the subnet."""
    probes = [_line(NODE, "10.0.9.9", 40000 + i, 1000 + i, 1, 40, "REJECT") for i in range(120)]
    api = [_line(NODE, "52.94.1.10", 41000, 443, 10, 4000), _line("52.94.1.10", NODE, 443, 41000, 12, 9000)]
    found = _incidents(probes + api)
    incident = found["port-scan"]
    assert incident.remote_ips == ()  # type: ignore[attr-defined]
    assert incident.details["remote_evidence"].startswith("none: a port-scan detection")  # type: ignore[attr-defined]


def test_a_mining_port_alone_is_a_heuristic_a_threat_list_entry_is_strong() -> None:
    from chalicelib.actions.ec2.block_ip import BlockIP

    partner = [_line(NODE, "52.94.1.20", 41000, 8888, 10, 4000), _line("52.94.1.20", NODE, 8888, 41000, 12, 9000)]
    c2 = [_line(NODE, THREAT, 41001, 443, 10, 4000), _line(THREAT, NODE, 443, 41001, 12, 9000)]
    found = _incidents(partner + c2)
    pool, listed = found["mining-pool"], found["threat-list"]
    assert pool.details["remote_evidence"] == "heuristic"  # type: ignore[attr-defined]
    assert listed.details["remote_evidence"] == "strong"  # type: ignore[attr-defined]
    assert "a human decides" in (BlockIP().held_for(pool) or "")  # type: ignore[arg-type]
    assert BlockIP().held_for(listed) is None  # type: ignore[arg-type]


class _Subnet:
    """One subnet's network ACL, holding `taken` deny entries of earlier incidents."""

    def __init__(self, taken: int) -> None:
        self.entries = [{"RuleNumber": n, "Egress": eg, "RuleAction": "deny", "CidrBlock": f"81.2.70.{n}/32"}
                        for n in range(1, taken // 2 + 1) for eg in (False, True)]  # fmt: skip
        self.entries += [{"RuleNumber": 100, "Egress": eg, "RuleAction": "allow", "CidrBlock": "0.0.0.0/0"}
                         for eg in (False, True)]  # fmt: skip

    def describe_instance(self, instance_id: str) -> dict[str, str]:
        return {"InstanceId": instance_id, "SubnetId": "subnet-1", "VpcId": "vpc-1"}

    def nat_gateway_addresses(self, vpc_id: str) -> set[str]:
        return set()

    def aws_service_ranges(self) -> dict[str, list[str]]:
        return {}

    def network_acl_of(self, subnet: str) -> dict[str, object]:
        return {"NetworkAclId": "acl-1", "Entries": list(self.entries)}

    def add_acl_deny(self, acl: str, number: int, cidr: str, *, egress: bool) -> None:
        self.entries.append({"RuleNumber": number, "Egress": egress, "RuleAction": "deny", "CidrBlock": cidr})


@pytest.mark.parametrize(("evidence", "added"), [("heuristic", False), ("strong", True)])
def test_a_heuristic_never_takes_the_last_slots_of_the_deny_budget(evidence: str, added: bool) -> None:
    """Ten decoy "pool" connections (approved or not) can never leave a threat-listed C2 found
    afterwards without its deny: the last quarter of MAX_ACL_DENIES_PER_SUBNET is kept for strong
    evidence."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from chalicelib.actions.base import ActionContext, NoParams
    from chalicelib.actions.ec2.block_ip import BlockIP
    from chalicelib.interfaces import Target
    from chalicelib.settings import Settings

    subnet = _Subnet(taken=14)  # of 20: 6 left, 5 of them the strong evidence's own
    found = replace(_incidents([_line(NODE, THREAT, 41001, 443, 10, 4000)])["threat-list"],
                    details={"remote_evidence": evidence}, remote_ips=("81.2.69.9",))  # fmt: skip
    ctx = ActionContext(found, Settings(), None, datetime.now(UTC), False, aws=subnet)  # type: ignore[arg-type]
    outcome = BlockIP().run(ctx, Target("instance", "i-0aaaaaaaaaaaaaaaa"), NoParams())
    assert ("81.2.69.9/32" in str(subnet.entries)) is added, outcome.detail
    if not added:
        assert "of which heuristic evidence may use 15" in outcome.detail
    else:
        assert "(on the threat list, and ours exchanged data with it)" in outcome.detail


def test_the_block_says_a_scan_names_no_remote_to_block() -> None:
    from datetime import UTC, datetime

    from chalicelib.actions.base import ActionContext, NoParams
    from chalicelib.actions.ec2.block_ip import BlockIP
    from chalicelib.interfaces import Target
    from chalicelib.settings import Settings

    probes = [_line(NODE, "10.0.9.9", 40000 + i, 1000 + i, 1, 40, "REJECT") for i in range(120)]
    incident = _incidents(probes)["port-scan"]
    ctx = ActionContext(incident, Settings(), None, datetime.now(UTC), False)  # type: ignore[arg-type]
    outcome = BlockIP().run(ctx, Target("instance", "i-0aaaaaaaaaaaaaaaa"), NoParams())
    assert outcome.detail == "nothing to block: a port-scan detection names no remote to block"


def test_a_deny_made_while_the_table_throttles_keeps_what_undoes_it() -> None:
    """The shared record cannot be written (throttled): the deny is in place, the step says so, and
    its prior state still removes what it added."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from chalicelib.actions.base import ActionContext, NoParams
    from chalicelib.actions.ec2.block_ip import BlockIP
    from chalicelib.interfaces import Target
    from chalicelib.settings import Settings

    class Throttled:
        def hold(self, *_: object, **__: object) -> None:
            raise RuntimeError("ProvisionedThroughputExceededException")

    subnet = _Subnet(taken=0)
    found = replace(_incidents([_line(NODE, THREAT, 41001, 443, 10, 4000)])["threat-list"],
                    details={"remote_evidence": "strong"}, remote_ips=("81.2.69.9",))  # fmt: skip
    ctx = ActionContext(found, Settings(), None, datetime.now(UTC), False, aws=subnet, caps=Throttled())  # type: ignore[arg-type]
    outcome = BlockIP().run(ctx, Target("instance", "i-0aaaaaaaaaaaaaaaa"), NoParams())
    assert outcome.status.value == "succeeded", outcome.detail
    assert "not recorded as shared (RuntimeError)" in outcome.detail
    assert outcome.prior is not None
    assert "held" not in outcome.prior
    assert [e["CidrBlock"] for e in outcome.prior["entries_added"]] == ["81.2.69.9/32", "81.2.69.9/32"]
