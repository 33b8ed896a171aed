"""Flow logs: every sample format parses, detectors find what was planted and nothing else."""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import zlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.entry import flow_logs as batch
from chalicelib.errors import EventError
from chalicelib.flowlogs.addresses import PUBLIC, THREAT, Classifier, Ranges, parse_networks
from chalicelib.flowlogs.detect import DetectorSettings, Scanner
from chalicelib.flowlogs.fields import DEFAULT, header_layout, parse_format
from chalicelib.flowlogs.incidents import Batch, to_incident
from chalicelib.flowlogs.reader import ReadError, gzip_blocks, logs_payload, with_layout
from chalicelib.incident import ResourceKind
from chalicelib.policy.loader import load_rules
from chalicelib.policy.matcher import decide
from chalicelib.settings import DEFAULT_RULES_FILE
from devstack import flowgen
from tests.conftest import SAMPLES

FLOWS = SAMPLES / "flowlogs"
AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
BATCH = Batch("123456789012", "us-east-1", "test", AT)
THREATS = Ranges(["45.10.0.0/16", "91.200.1.7", "2001:db8:bad::/48"])


def _scanner(threats: Ranges = THREATS, **settings: Any) -> Scanner:
    return Scanner(Classifier(threats), DetectorSettings(**settings))


def scan_lines(lines: Iterable[bytes], layout: Any, scanner: Scanner, block: int = 5_000) -> None:
    """Records one by one, joined into blocks as a delivery would bring them."""
    batch_: list[bytes] = []
    for line in lines:
        batch_.append(line)
        if len(batch_) >= block:
            scanner.scan(b"\n".join(batch_), layout)
            batch_ = []
    if batch_:
        scanner.scan(b"\n".join(batch_), layout)


def _scan_file(path: Path, layout: Any = None, scanner: Scanner | None = None) -> Scanner:
    scanner = scanner or _scanner()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        for found, block in with_layout(iter([stream.read()]), layout):
            scanner.scan(block, found)
    return scanner


# -- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "records", "skipped"),
    [
        ("v2_default_accept_reject.log", 2, 0),
        ("v2_default_icmp_sg_nacl.log", 2, 0),
        ("v2_default_ipv6.log", 1, 0),
        ("v2_default_nodata_skipdata.log", 2, 2),
    ],
)
def test_default_format_samples_parse(name: str, records: int, skipped: int) -> None:
    scanner = _scan_file(FLOWS / name)
    assert (scanner.records, scanner.skipped, scanner.malformed) == (records, skipped, 0)


@pytest.mark.parametrize("log", sorted(p for p in FLOWS.glob("v[35]_*.log") if "with-header" not in p.name))
def test_custom_format_samples_parse_with_their_format_string(log: Path) -> None:
    layout = parse_format((log.parent / log.name.replace(".log", ".format.txt")).read_text())
    scanner = _scan_file(log, layout)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert scanner.records == len(lines)
    assert scanner.malformed == 0


@pytest.mark.parametrize("sample", sorted(FLOWS.glob("v[35]_*.log")), ids=lambda p: p.name)
def test_a_header_line_gives_the_layout(sample: Path, tmp_path: Path) -> None:
    # As S3 delivers a custom format: the field names on the first line, then the records.
    fields = parse_format((sample.parent / sample.name.replace(".log", ".format.txt")).read_text()).fields
    log = tmp_path / sample.name
    log.write_text(" ".join(fields) + "\n" + sample.read_text())
    header, *records = [line for line in log.read_bytes().splitlines() if line.strip()]
    assert header_layout(header) is not None
    assert header_layout(records[0]) is None
    assert _scan_file(log).records == len(records)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="${}ab-9Z \n\u00e9", max_size=40))
def test_names_are_read_as_the_documented_patterns_read_them(text: str) -> None:
    """The format's `${name}` tokens and a header's names, read without `re` (the scanner's process
    does not import it): the same as the patterns they replace."""
    import re

    from chalicelib.flowlogs import fields

    assert fields._tokens(text) == re.findall(r"\$\{([a-z0-9-]+)\}", text)
    for word in [*text.split(), text, "a" * 64, "a" * 65]:
        assert fields._is_name(word) == bool(re.fullmatch(r"[a-z][a-z0-9-]{0,63}", word))


def test_the_format_string_and_header_forms_agree_and_unknown_fields_are_named() -> None:
    assert parse_format("${version} ${srcaddr} ${dstaddr}") == parse_format("version srcaddr dstaddr")
    assert DEFAULT.fields[3:5] == ("srcaddr", "dstaddr")
    with pytest.raises(EventError, match="bogus"):
        parse_format("${srcaddr} ${dstaddr} ${bogus}")
    with pytest.raises(EventError, match="srcaddr and dstaddr"):
        parse_format("${version} ${bytes}")


def test_a_nat_gateway_layout_without_ports_still_checks_the_threat_list() -> None:
    layout = parse_format((FLOWS / "v3_custom_nat_gateway.format.txt").read_text())
    scanner = _scanner(Ranges(["203.0.113.5"]))
    _scan_file(FLOWS / "v3_custom_nat_gateway.log", layout, scanner)
    found = {(f.detector, f.address) for f in scanner.findings()}
    # The instance behind the NAT gateway, and the NAT gateway's own address.
    assert found == {("threat-list", "10.0.1.5"), ("threat-list", "10.0.0.220")}


def test_short_and_non_numeric_records_are_counted_and_the_rest_scanned() -> None:
    scanner = _scanner()
    good = b"2 1 eni-1 10.0.0.5 91.200.1.7 40000 443 6 3 300 1 2 ACCEPT OK"
    garbled = b"2 1 eni-1 10.0.0.6 8.8.8.8 4 5 6 3 lots 1 2 ACCEPT OK"
    scanner.scan(b"\n".join([good, b"2 1 eni-1 10.0.0.5", garbled, good]), DEFAULT)
    assert (scanner.records, scanner.malformed) == (3, 2)
    (finding,) = scanner.findings()
    assert finding.records == 2


# -- addresses -----------------------------------------------------------------------------------


def test_addresses_are_classified_once_with_cidrs_and_ipv6() -> None:
    classifier = Classifier(THREATS)
    assert classifier.classify(b"45.10.200.3") == PUBLIC | THREAT
    assert classifier.classify(b"45.11.0.1") == PUBLIC
    assert classifier.classify(b"10.0.0.1") == 0
    assert classifier.classify(b"100.64.3.2") == 0  # shared address space (EKS custom networking)
    assert classifier.classify(b"2001:db8:bad:1::5") == PUBLIC | THREAT
    assert classifier.classify(b"fd00::1") == 0
    assert classifier.memo[b"45.10.200.3"] == PUBLIC | THREAT
    assert classifier.classify(b"8.8.8.8") == PUBLIC
    assert classifier.classify(b"172.20.1.1") == 0


def test_threat_lists_merge_overlaps_and_name_a_bad_line() -> None:
    ranges = parse_networks("# feed\n10.9.0.0/16\n10.9.4.0/24  # inside\n1.2.3.4\n\n", "feed.txt")
    assert ranges.size == 2
    assert ranges.contains(32, (10 << 24) | (9 << 16) | (4 << 8) | 7)
    with pytest.raises(EventError, match=r"feed.txt:2: .*not-an-ip"):
        parse_networks("1.2.3.4\nnot-an-ip\n", "feed.txt")


def test_a_plain_feed_parses_to_the_same_ranges_as_line_by_line() -> None:
    from chalicelib.flowlogs.addresses import _parse_lines, _plain_list

    rng = random.Random(5)
    hosts = [f"45.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}" for _ in range(3000)]
    nets = ["45.1.0.0/16", "45.2.3.0/24", "2001:db8:bad::/48", "2001:db8:bad:1::7", "45.3.255.255"]
    feed = "\n".join(hosts + nets) + "\n"
    fast, slow = _plain_list(feed), _parse_lines(feed, "feed.txt")
    assert fast is not None
    assert (fast._starts, fast._ends) == (slow._starts, slow._ends)
    assert fast.contains(32, (45 << 24) | (1 << 16) | 77)
    assert not fast.contains(32, (46 << 24) | 1)
    # Not a plain list, so the line-by-line parse decides (and names the line): a bad or
    # non-canonical address, two entries on one line.
    for bad in ("1.2.3.4\n01.2.3.4\n", "1.2.3.4\n1.2.3\n", "1.2.3.4 5.6.7.8\n"):
        assert _plain_list(bad) is None
        with pytest.raises(EventError, match=r"feed.txt:\d+: "):
            parse_networks(bad, "feed.txt")


# -- detectors on generated traffic ----------------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    found = {}
    for kind in ("v2", "v5"):
        lines, truth, threats, _ = flowgen.generate(40_000, seed=11, v5=kind == "v5")
        scanner = _scanner(Ranges(threats[0] + threats[1]))
        stream = io.BytesIO(gzip.compress(("\n".join(lines) + "\n").encode()))
        for layout, block in with_layout(gzip_blocks(stream, chunk=8192), None):
            scanner.scan(block, layout)
        found[kind] = (scanner, truth, len(lines) - 1)
    return found


@pytest.mark.parametrize("kind", ["v2", "v5"])
def test_every_planted_flow_is_found_and_nothing_else(generated: dict[str, Any], kind: str) -> None:
    scanner, truth, records = generated[kind]
    found = scanner.findings()
    detectors = ("threat-list", "mining-pool", "admin-from-internet", "port-scan", "address-sweep", "egress-volume")
    by = {d: {f.address for f in found if f.detector == d} for d in detectors}
    assert {f.detector for f in found} <= set(by)
    assert by["threat-list"] == truth.threat
    assert by["mining-pool"] == truth.mining
    assert by["admin-from-internet"] == truth.admin
    assert by["port-scan"] == truth.scanners  # servers answering on high ports are not scanners
    assert by["address-sweep"] == truth.sweepers  # clients' small requests to many servers are not sweeps
    assert by["egress-volume"] == truth.egress
    assert scanner.records == records  # the header is not a record
    assert scanner.skipped > 0
    assert scanner.malformed == 0


def test_a_port_scan_keeps_its_ports_and_later_flows(generated: dict[str, Any]) -> None:
    scanner, truth, _ = generated["v2"]
    scans = [f for f in scanner.findings() if f.detector == "port-scan"]
    outside = next(f for f in scans if f.remote)
    assert len(outside.ports) == 1000
    assert outside.address in truth.scanners
    inside = next(f for f in scans if not f.remote)
    assert len(inside.ports) >= 300  # the planted sweep, and the pod's own DNS


def test_detectors_switch_off_and_thresholds_apply() -> None:
    lines, _, threats, _ = flowgen.generate(20_000, seed=3)
    only_scans = _scanner(Ranges(threats[0] + threats[1]), enabled=frozenset({"port-scan"}), scan_min_ports=500)
    scan_lines((line.encode() for line in lines[1:]), DEFAULT, only_scans)
    found = only_scans.findings()
    assert [(f.detector, len(f.ports)) for f in found] == [("port-scan", 1000)]  # the 300-port scan is below 500


def test_one_source_many_hits_is_one_incident_with_its_top_flows() -> None:
    scanner = _scanner()
    records = [f"2 1 eni-1 10.0.3.4 45.10.{i}.9 {40000 + i} 443 6 3 {1000 * i} 1 2 ACCEPT OK" for i in range(1, 30)]
    scan_lines((r.encode() for r in records), DEFAULT, scanner)
    (finding,) = scanner.findings()
    incident = to_incident(finding, BATCH)
    assert incident.id == "flowlogs-threat-list-123456789012-us-east-1-10.0.3.4-20261128T09"
    assert incident.type == "CommandAndControl:FlowLogs/ThreatListConnection"
    assert len(incident.remote_ips) == 29
    top = incident.details["top_flows"].splitlines()
    assert len(top) == 10
    assert top[0] == "10.0.3.4:40029 -> 45.10.29.9:443 29000 B ACCEPT (eni-1)"
    rules = load_rules(DEFAULT_RULES_FILE)
    assert decide(incident, rules).rule.name == "flow-not-attributed"  # not looked up yet: reported only


# -- inputs ----------------------------------------------------------------------------------------


def test_a_truncated_object_is_scanned_up_to_the_damage_and_says_so() -> None:
    lines, _, threats, _ = flowgen.generate(30_000, seed=5)
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    scanner = _scanner(Ranges(threats[0] + threats[1]))
    delivery = batch.scan_object(io.BytesIO(whole[: len(whole) // 2]), "x.log.gz", None, scanner, BATCH)
    assert delivery.error is not None
    assert "ends early" in delivery.error
    assert 5_000 < delivery.records < 30_000


def test_a_corrupt_object_gives_a_clear_error() -> None:
    data = bytearray(gzip.compress(b"\n".join([b"version srcaddr dstaddr"] + [b"2 10.0.0.1 10.0.0.2"] * 50_000)))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    delivery = batch.scan_object(io.BytesIO(bytes(data)), "x.log.gz", None, _scanner(), BATCH)
    assert delivery.error is not None
    assert "corrupt gzip data" in delivery.error
    with pytest.raises(ReadError, match="empty"):
        list(gzip_blocks(io.BytesIO(b"")))


def test_a_decompression_bomb_in_an_object_is_refused_in_bounded_memory() -> None:
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))  # 20 MB of one line, 20 KB compressed
    delivery = batch.scan_object(io.BytesIO(bomb), "x.log.gz", None, _scanner(), BATCH)
    assert delivery.error is not None
    assert "a line longer than 65536 bytes" in delivery.error


def test_a_block_is_bounded_however_well_the_object_compresses() -> None:
    """Each block is inflated to at most BLOCK bytes (then scanned while it is in the core's cache),
    whatever one compressed chunk holds: one read of highly repetitive records (or of a hostile
    object) never expands a whole chunk at once. The lines come out whole, in order, across members."""
    from chalicelib.flowlogs import reader

    lines = [b"2 123456789012 eni-1 10.0.0.1 10.0.0.2 443 40000 6 1 40 1 2 ACCEPT OK"] * 60_000
    text = b"\n".join(lines) + b"\n"
    members = gzip.compress(text[: len(text) // 2]) + gzip.compress(text[len(text) // 2 :])
    blocks = list(gzip_blocks(io.BytesIO(members), chunk=1 << 16))
    assert max(len(b) for b in blocks) <= reader.BLOCK + reader.MAX_LINE
    assert len(blocks) > len(text) // reader.BLOCK
    assert b"\n".join(blocks) + b"\n" == text


def test_an_object_that_expands_beyond_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.flowlogs import reader

    monkeypatch.setattr(reader, "MAX_EXPANDED", 1_000_000)
    lines = b"2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 0 60 ACCEPT OK\n" * 40_000
    delivery = batch.scan_object(io.BytesIO(gzip.compress(lines)), "x.log.gz", None, _scanner(), BATCH)
    assert delivery.error is not None
    assert "expands beyond 1000000 bytes" in delivery.error


def test_a_cloudwatch_logs_bomb_is_refused() -> None:
    import base64

    bomb = base64.b64encode(gzip.compress(b" " * (40 * 1024 * 1024))).decode()
    with pytest.raises(EventError, match="expands beyond"):
        logs_payload({"awslogs": {"data": bomb}})


def _payload(messages: list[str], kind: str = "DATA_MESSAGE") -> dict[str, Any]:
    body = {"messageType": kind, "owner": "123456789012", "logGroup": "/vpc/flow", "logStream": "eni-1-all",
            "subscriptionFilters": ["f"], "logEvents": [{"id": str(i), "timestamp": 0, "message": m}
                                                         for i, m in enumerate(messages)]}  # fmt: skip
    data = gzip.compress(json.dumps(body).encode())
    return {"awslogs": {"data": base64.b64encode(data).decode()}}


def test_a_cloudwatch_logs_payload_is_decoded_and_scanned() -> None:
    messages = [f"2 123456789012 eni-1 10.0.0.8 198.51.100.{i} 40000 3333 6 3 300 1 2 ACCEPT OK" for i in range(3)]
    delivery = batch.scan_payload(_payload(messages), None, _scanner(), AT)
    assert delivery.origin == "logs:/vpc/flow/eni-1-all"
    (incident,) = delivery.incidents
    assert incident.type == "Impact:FlowLogs/MiningPoolConnection"
    assert incident.account == "123456789012"
    assert batch.scan_payload(_payload([], "CONTROL_MESSAGE"), None, _scanner(), AT).records == 0


def test_the_generic_sample_payload_decodes_and_its_lines_are_not_records() -> None:
    sample = json.loads((FLOWS / "cwlogs_subscription_lambda_event.generic-not-flowlogs.json").read_text())
    assert logs_payload(sample).log_group == "testLogGroup"
    delivery = batch.scan_payload(sample, None, _scanner(), AT)
    assert (delivery.records, delivery.malformed, delivery.incidents) == (0, 2, [])


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"awslogs": {"data": "not base64!"}},
        {"awslogs": {"data": base64.b64encode(b"plain").decode()}},
        {"awslogs": {"data": base64.b64encode(zlib.compress(b"[1]")).decode()}},
    ],
)
def test_a_bad_payload_is_a_clear_error(event: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        logs_payload(event)


def test_the_alert_shows_the_top_flows_as_text() -> None:
    from chalicelib.notifiers import slack_message
    from chalicelib.response.execute import Responder
    from chalicelib.response.report import Mode
    from chalicelib.settings import Settings

    scanner = _scanner()
    records = [
        b"2 1 eni-1 10.0.3.4 45.10.1.9 40000 443 6 3 1200 1 2 ACCEPT OK",
        b"2 1 eni-`<!here>` 10.0.3.4 45.10.1.9 1 2 6 3 9 1 2 ACCEPT OK",
    ]
    scan_lines(iter(records), DEFAULT, scanner)
    (finding,) = scanner.findings()
    incident = to_incident(finding, BATCH)
    report = Responder(load_rules(DEFAULT_RULES_FILE), Settings()).handle(incident, Mode.PLAN).to_dict()
    text = json.dumps(slack_message.build(report))
    assert "10.0.3.4:40000 -&gt; 45.10.1.9:443 1200 B ACCEPT (eni-1)" in text
    assert "<!here>" not in text
    assert "eni-'&lt;!here&gt;'" in text
    assert "*From* `test`" in text


def test_a_bad_threat_list_is_told_for_each_delivery_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.entry import wiring

    bad = tmp_path / "threats.txt"
    bad.write_text("1.2.3.4\nnot-an-address\n")
    monkeypatch.setenv("THREAT_LIST", str(bad))
    wiring.reset()
    try:
        result = wiring.handle_flow_log_payload(_payload(["2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 ACCEPT OK"]))
    finally:
        wiring.reset()
    assert result["event_id"] == "cloudwatch-logs-payload"
    assert f"{bad}:2" in result["error"]


def test_a_flood_of_probing_sources_is_counted_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.flowlogs import detect

    monkeypatch.setattr(detect, "MAX_PROBING_SOURCES", 50)
    scanner = _scanner()
    probes = [f"2 1 eni-1 8.8.{i // 250}.{i % 250} 10.0.0.5 50000 22 6 1 40 1 2 REJECT OK".encode() for i in range(80)]
    scan_lines(iter(probes), DEFAULT, scanner)
    assert scanner.untracked == 30
    assert scanner.findings() == []


def test_a_packaged_threat_list_is_found_from_the_project_root(tmp_path: Path) -> None:
    from chalicelib.executors.flow_sources import read_threat_list

    assert read_threat_list("chalicelib/policy/rules.yaml", None).startswith("#")  # a file that ships, read by path
    listed = tmp_path / "list.txt"
    listed.write_text("1.2.3.4\n")
    assert read_threat_list(str(listed), None) == "1.2.3.4\n"


def test_an_s3_client_is_made_only_for_a_list_in_s3(tmp_path: Path) -> None:
    from chalicelib.executors.flow_sources import read_threat_list

    made = []

    class Body:
        def read(self, _: int) -> bytes:
            return b"5.6.7.8\n"

    class S3:
        def get_object(self, **_: str) -> dict[str, Body]:
            return {"Body": Body()}

    def client() -> S3:
        made.append(1)
        return S3()

    listed = tmp_path / "list.txt"
    listed.write_text("1.2.3.4\n")
    assert read_threat_list(str(listed), client) == "1.2.3.4\n"
    assert made == []  # a file: no AWS session (a sixth of a second of every replay)
    assert read_threat_list("s3://threats/list.txt", client) == "5.6.7.8\n"
    assert made == [1]


def test_a_delivery_counts_its_records_in_metrics(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chalicelib.response.execute import Responder
    from chalicelib.response.report import Mode
    from chalicelib.settings import Settings

    monkeypatch.setenv("EKS_RESPONDER_METRICS", "on")
    records = ["2 1 eni-1 10.0.0.8 81.2.69.77 40000 3333 6 3 300 1 2 ACCEPT OK", "2 1 eni-1 - - - - - - - 1 2 - NODATA"]
    delivery = batch.scan_payload(_payload(records), None, _scanner(), AT)
    intake = batch.Intake(Responder(load_rules(DEFAULT_RULES_FILE), Settings()), Mode.PLAN, lambda account: None)
    batch.respond(delivery, intake)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    values = {m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: m for m in lines}
    assert values["FlowRecords"]["FlowRecords"] == [2.0]
    assert values["FlowRecordsNoData"]["FlowRecordsNoData"] == [1.0]
    assert values["FlowFindings"]["FlowFindings"] == [1.0]


def test_a_pool_port_is_mining_only_when_ours_is_the_client() -> None:
    records = [
        b"2 1 eni-1 10.0.1.5 198.51.100.7 40000 3333 6 3 300 1 2 ACCEPT OK",  # ours to a pool
        b"2 1 eni-1 198.51.100.7 10.0.1.5 3333 40000 6 3 300 1 2 ACCEPT OK",  # the pool's answer
        b"2 1 eni-2 203.0.113.9 10.0.2.6 4444 443 6 1 40 1 2 REJECT OK",  # a scanner's source port, rejected
        b"2 1 eni-2 203.0.113.9 10.0.2.6 4444 443 6 5 900 1 2 ACCEPT OK",  # a client of our HTTPS server
        b"2 1 eni-2 10.0.2.6 203.0.113.9 443 4444 6 5 9000 1 2 ACCEPT OK",  # and our server's answer
    ]
    scanner = _scanner()
    scan_lines(iter(records), DEFAULT, scanner)
    found = scanner.findings()
    assert [(f.detector, f.address) for f in found] == [("mining-pool", "10.0.1.5")]
    assert found[0].records == 2


def test_internal_cidrs_make_an_ipv6_vpcs_addresses_ours() -> None:
    from chalicelib.flowlogs.addresses import parse_networks

    # An IPv6 cluster's pods have global addresses: without the VPC's block they are not "ours".
    records = [b"2 1 eni-1 2600:1f18:abc:1::5 2a01:4f8::77 40000 3333 6 3 300 1 2 ACCEPT OK"]
    plain = _scanner()
    scan_lines(iter(records), DEFAULT, plain)
    assert plain.findings() == []
    vpc = Scanner(Classifier(THREATS, parse_networks("2600:1f18:abc::/56", "FLOW_INTERNAL_CIDRS")))
    scan_lines(iter(records), DEFAULT, vpc)
    assert [(f.detector, f.address) for f in vpc.findings()] == [("mining-pool", "2600:1f18:abc:1::5")]


def test_both_s3_event_shapes_name_their_objects() -> None:

    sample = json.loads((FLOWS / "s3_event_notification.generic-not-flowlogs.json").read_text())
    ((bucket, key, _, region),) = batch.s3_objects(sample)
    assert (bucket, region) == (sample["Records"][0]["s3"]["bucket"]["name"], sample["Records"][0]["awsRegion"])
    s3 = {"bucket": {"name": "b"}, "object": {"key": "AWSLogs/1/a+b%3D.log.gz"}}  # notifications URL-encode keys
    encoded = {"Records": [{"awsRegion": "eu-west-1", "s3": s3}]}
    assert batch.s3_objects(encoded) == [("b", "AWSLogs/1/a b=.log.gz", "", "eu-west-1")]
    bridge = {"source": "aws.s3", "account": "1", "region": "us-east-1",
              "detail": {"bucket": {"name": "b"}, "object": {"key": "k.log.gz"}}}  # fmt: skip
    assert batch.s3_objects(bridge) == [("b", "k.log.gz", "1", "us-east-1")]
    assert key


@pytest.mark.parametrize(
    ("key", "origin"),
    [
        ("AWSLogs/111122223333/vpcflowlogs/eu-west-1/2026/12/01/x.log.gz", ("111122223333", "eu-west-1")),
        ("team/AWSLogs/111122223333/vpcflowlogs/eu-west-1/x.log.gz", ("111122223333", "eu-west-1")),
        (
            "AWSLogs/aws-account-id=111122223333/aws-service=vpcflowlogs/aws-region=eu-west-1/year=2026/x.log.gz",
            ("111122223333", "eu-west-1"),
        ),
        ("logs/x.log.gz", ("", "")),
        ("AWSLogs/111122223333.log.gz", ("", "")),
    ],
)
def test_an_s3_key_names_the_account_and_region_that_logged_it(key: str, origin: tuple[str, str]) -> None:

    assert batch.origin_of(key) == origin


# -- lateral movement ------------------------------------------------------------------------------


def _v2(src: str, dst: str, sport: int, dport: int, packets: int, size: int, action: str = "ACCEPT") -> bytes:
    return f"2 123456789012 eni-0a1 {src} {dst} {sport} {dport} 6 {packets} {size} 1 61 {action} OK".encode()


def test_a_pod_sweeping_many_internal_addresses_is_found_and_a_scraper_is_not() -> None:
    scanner = _scanner(sweep_min_addresses=64)
    probes = [_v2("10.0.5.9", f"10.0.{i // 250}.{i % 250 + 1}", 41000 + i, 10250, 1, 44) for i in range(80)]
    # a metrics scraper: small requests to as many addresses, but whole exchanges (more packets)
    scrapes = [_v2("10.0.7.7", f"10.0.{i // 250}.{i % 250 + 1}", 42000 + i, 9100, 6, 420) for i in range(200)]
    # a handful of SYNs is not a sweep
    few = [_v2("10.0.8.8", f"10.0.3.{i}", 43000 + i, 443, 2, 120) for i in range(1, 20)]
    scan_lines([*probes, *scrapes, *few], DEFAULT, scanner)
    (sweep,) = scanner.findings()
    assert (sweep.detector, sweep.address, sweep.records, sweep.ports) == ("address-sweep", "10.0.5.9", 80, {10250})
    incident = to_incident(sweep, BATCH)
    assert incident.type == "Discovery:FlowLogs/InternalAddressSweep"
    assert incident.title == "10.0.5.9 probed 80 internal addresses on 1 port(s) (east-west)"
    assert incident.remote_ips == ()  # internal addresses are never denied in a network ACL
    attributed = replace(incident, resource_kind=ResourceKind.POD)
    assert decide(attributed, load_rules(DEFAULT_RULES_FILE)).rule.name == "flow-pod-contacts-threats"


def test_a_connection_to_a_forbidden_destination_is_found() -> None:
    from chalicelib.flowlogs.addresses import parse_forbidden

    forbidden = parse_forbidden(["10.0.0.16/28:10250", "192.168.100.0/24"], "test")
    scanner = Scanner(Classifier(THREATS, forbidden=forbidden.ranges), DetectorSettings(forbidden=forbidden))
    scan_lines(
        [
            _v2("10.0.5.9", "10.0.0.20", 41000, 10250, 8, 2400),  # the kubelet of a control-plane range: forbidden
            _v2("10.0.5.9", "10.0.0.20", 41001, 443, 8, 2400),  # another port of it: allowed
            _v2("10.0.5.9", "192.168.100.4", 41002, 5432, 8, 2400),  # any port of a forbidden range
            _v2("10.0.5.10", "192.168.100.4", 41003, 5432, 1, 40, "REJECT"),  # refused: nothing reached
        ],
        DEFAULT,
        scanner,
    )
    (found,) = scanner.findings()
    assert (found.detector, found.address, found.remotes, found.ports) == (
        "forbidden-destination", "10.0.5.9", {"10.0.0.20", "192.168.100.4"}, {10250, 5432})  # fmt: skip
    assert to_incident(found, BATCH).type == "LateralMovement:FlowLogs/ForbiddenDestination"


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "10.0.0.0/24:0", "10.0.0.0/24:80-20", "nowhere:80"])
def test_a_bad_forbidden_destination_is_named(entry: str) -> None:
    from chalicelib.flowlogs.addresses import parse_forbidden

    with pytest.raises(EventError, match="FLOW_FORBIDDEN_DESTINATIONS"):
        parse_forbidden([entry], "FLOW_FORBIDDEN_DESTINATIONS")


def test_a_wide_sweep_is_counted_up_to_a_bound_and_says_so() -> None:
    from chalicelib.flowlogs.detect import sweep_limit

    scanner = _scanner(sweep_min_addresses=10)
    scan_lines([_v2("10.0.5.9", f"10.1.{i // 250}.{i % 250}", 40000 + i, 22, 1, 60) for i in range(500)], DEFAULT,
               scanner)  # fmt: skip
    (sweep,) = scanner.findings()
    assert (sweep.records, sweep.capped) == (sweep_limit(scanner.settings), True) == (50, True)
    assert to_incident(sweep, BATCH).title.startswith("10.0.5.9 probed at least 50 internal addresses")


@pytest.mark.parametrize("compiled", [True, False])
def test_ports_that_are_no_numbers_are_never_counted_as_probed(compiled: bool) -> None:
    """A forged or damaged line's port (`\\xa0`, `x`) passes the byte comparisons of a probe; counted,
    it would stop the whole delivery when the alert lists the ports as numbers."""
    scanner = Scanner(Classifier(THREATS), DetectorSettings(scan_min_ports=3), compiled=compiled)
    ports = [b"\xa0", b"x", b"1_0", b"80", b"443", b"8080"]
    lines = [b"2 1 eni-1 34.9.9.9 10.0.3.4 55555 %s 6 1 60 1 2 REJECT OK" % port for port in ports]
    scanner.scan(b"\n".join(lines), DEFAULT)
    (scan,) = scanner.findings()
    assert (scan.detector, scan.address, scan.ports) == ("port-scan", "34.9.9.9", {80, 443, 8080})


def test_the_same_private_address_in_two_accounts_is_two_incidents() -> None:
    """A decoy flow from 10.0.3.4 in one account never makes the real one in another a duplicate."""
    record = b"2 1 eni-1 10.0.3.4 45.10.1.9 40000 443 6 3 1000 1 2 ACCEPT OK"
    ids = set()
    for account in ("111111111111", "222222222222"):
        scanner = _scanner()
        scan_lines(iter([record]), DEFAULT, scanner)
        (finding,) = scanner.findings()
        ids.add(to_incident(finding, Batch(account, "us-east-1", "test", AT)).id)
    assert ids == {
        "flowlogs-threat-list-111111111111-us-east-1-10.0.3.4-20261128T09",
        "flowlogs-threat-list-222222222222-us-east-1-10.0.3.4-20261128T09",
    }
    scanner = _scanner()
    scan_lines(iter([record]), DEFAULT, scanner)
    (finding,) = scanner.findings()
    assert to_incident(finding, Batch("111111111111", "eu-west-1", "test", AT)).id not in ids


def test_the_vpc_of_the_attributed_interface_joins_the_id() -> None:
    from chalicelib.flowlogs.attribution import Attribution

    class EC2:
        def network_interfaces(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
            return [{"NetworkInterfaceId": "eni-1", "VpcId": vpc, "PrivateIpAddress": "10.0.3.4"}]

    scanner = _scanner()
    scan_lines(iter([b"2 1 eni-1 10.0.3.4 45.10.1.9 40000 443 6 3 1000 1 2 ACCEPT OK"]), DEFAULT, scanner)
    (finding,) = scanner.findings()
    incident = to_incident(finding, BATCH)
    ids = set()
    for vpc in ("vpc-0aaaaaaaaaaaaaaaa", "vpc-0bbbbbbbbbbbbbbbb"):
        found = Attribution(EC2(), None).attribute(incident)  # type: ignore[arg-type]
        assert found.details["vpc"] == vpc
        ids.add(found.id)
    assert ids == {
        "flowlogs-threat-list-123456789012-us-east-1-vpc-0aaaaaaaaaaaaaaaa-10.0.3.4-20261128T09",
        "flowlogs-threat-list-123456789012-us-east-1-vpc-0bbbbbbbbbbbbbbbb-10.0.3.4-20261128T09",
    }


def test_a_payload_of_another_account_than_the_subscriptions_is_refused() -> None:
    """A subscription delivers only its own account's log events: an `owner` naming another
    account is refused (never attributed or acted on there), and said so with the stream's name."""
    from chalicelib.errors import EventError

    payload = _payload(["2 1 eni-1 10.0.0.1 45.10.1.9 40000 443 6 1 1 1 2 ACCEPT OK"])
    owner = json.loads(gzip.decompress(base64.b64decode(payload["awslogs"]["data"])))["owner"]
    with pytest.raises(EventError, match=r"refused: logs:.* says it is account \S+'s, but the subscription is in"):
        batch.scan_payload(payload, None, _scanner(), AT, subscribed_in=lambda: "999999999999")
    assert batch.scan_payload(payload, None, _scanner(), AT, subscribed_in=lambda: owner).records == 1


def test_the_lambda_path_refuses_a_payload_of_another_account_by_the_functions_own_arn() -> None:
    from types import SimpleNamespace

    from chalicelib.entry import wiring

    context = SimpleNamespace(invoked_function_arn="arn:aws:lambda:us-east-1:999999999999:function:f",
                              aws_request_id="r-1", get_remaining_time_in_millis=lambda: 60_000)  # fmt: skip
    assert batch.function_account(context) == "999999999999"
    assert batch.function_account(None) is None
    wiring.reset()
    try:
        result = wiring._flow_log_payload(_payload(["2 1 eni-1 10.0.0.1 45.10.1.9 40000 443 6 1 1 1 2 ACCEPT OK"]),
                                          "999999999999")  # fmt: skip
    finally:
        wiring.reset()
    assert result["event_id"] == "cloudwatch-logs-payload"
    assert "says it is account 123456789012's, but the subscription is in account 999999999999" in result["error"]


def _attributed_with(eni: dict[str, Any], record: bytes) -> Any:
    from chalicelib.flowlogs.attribution import Attribution

    class EC2:
        def network_interfaces(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
            wanted = filters.get("network-interface-id")
            return [] if wanted and wanted != [eni["NetworkInterfaceId"]] else [eni]

        def describe_instance(self, instance_id: str) -> dict[str, Any]:
            raise AssertionError("an instance that did not hold the address is never looked at")

    scanner = _scanner()
    scan_lines(iter([record]), DEFAULT, scanner)
    (finding,) = scanner.findings()
    return Attribution(EC2(), None).attribute(to_incident(finding, BATCH))  # type: ignore[arg-type]


def test_an_address_that_moved_to_another_interface_since_is_reported_not_acted_on() -> None:
    eni = {"NetworkInterfaceId": "eni-0new", "VpcId": "vpc-0aaaaaaaaaaaaaaaa", "PrivateIpAddress": "10.0.3.4",
           "Attachment": {"InstanceId": "i-0bbbbbbbbbbbbbbbb"}}  # fmt: skip
    found = _attributed_with(eni, b"2 1 eni-0old 10.0.3.4 45.10.1.9 40000 443 6 3 1000 1764320000 1764320060 ACCEPT OK")
    assert "now on eni-0new, not on the interface that logged the flows (eni-0old)" in found.details["attribution"]
    assert (found.instance_ids, found.resource_kind.value) == ((), "other")


def test_an_interface_attached_after_the_flows_is_not_their_instance() -> None:
    attached = datetime(2025, 11, 28, 12, 0, tzinfo=UTC)  # the flows: 2025-11-28 08:53
    eni = {"NetworkInterfaceId": "eni-1", "VpcId": "vpc-0aaaaaaaaaaaaaaaa", "PrivateIpAddress": "10.0.3.4",
           "Attachment": {"InstanceId": "i-0bbbbbbbbbbbbbbbb", "AttachTime": attached}}  # fmt: skip
    found = _attributed_with(eni, b"2 1 eni-1 10.0.3.4 45.10.1.9 40000 443 6 3 1000 1764320000 1764320060 ACCEPT OK")
    assert "was attached to i-0bbbbbbbbbbbbbbbb after the flows were captured" in found.details["attribution"]
    assert found.instance_ids == ()


# -- every documented layout: ECS fields, Transit Gateway, fields added later --------------------

OWN = FLOWS / "own"


def test_a_header_with_the_ecs_fields_is_a_layout_and_its_records_are_read_by_name() -> None:
    scanner = _scan_file(OWN / "v7_ecs_fields.with-header-line.log")
    assert (scanner.records, scanner.skipped, scanner.malformed) == (3, 1, 0)  # the header is no record
    found = {(f.detector, f.address) for f in scanner.findings()}
    assert found == {("threat-list", "10.0.3.7"), ("admin-from-internet", "10.0.3.7")}


@pytest.mark.parametrize("name", ["tgw_v6_default.with-header-line.log", "tgw_v6_default.log"])
def test_transit_gateway_records_are_read_in_their_own_layout(name: str) -> None:
    # With the header line S3 writes, and without one (CloudWatch Logs): the default format has
    # every field, the resource type second, so it can only be a transit gateway's.
    scanner = _scan_file(OWN / name)
    assert (scanner.records, scanner.skipped, scanner.malformed) == (3, 0, 0)
    (finding,) = scanner.findings()
    # SSH from the internet that the transit gateway forwarded: it has no security group, so what it
    # recorded it passed on (the packets it dropped are counted apart, and the no-route flow is not one).
    assert (finding.detector, finding.address) == ("admin-from-internet", "10.0.2.15")
    (flow,) = finding.flows
    assert (flow.interface, flow.action) == ("tgw-attach-0123456789abcdef0", "ACCEPT")


def test_a_header_may_name_fields_added_since_but_a_typed_format_may_not() -> None:
    later = header_layout(b"version srcaddr dstaddr srcport dstport bytes action interface-id some-field-of-2027")
    assert later is not None
    assert later.fields[-1] == "some-field-of-2027"
    assert header_layout(b"2 123456789012 eni-1 10.0.0.5 8.8.8.8 1 2 6 3 300 1 2 ACCEPT OK") is None
    with pytest.raises(EventError, match="some-field-of-2027"):
        parse_format("${srcaddr} ${dstaddr} ${some-field-of-2027}")


def test_every_documented_field_says_what_the_detectors_do_with_it() -> None:
    from chalicelib.flowlogs.fields import KNOWN_FIELDS

    page = (Path(__file__).resolve().parents[2] / "docs" / "flow-logs.md").read_text()
    undocumented = sorted(f for f in KNOWN_FIELDS if f"`{f}`" not in page)
    assert not undocumented, undocumented


@pytest.mark.parametrize("kind", ["v2", "v5"])
def test_the_fast_inflate_and_the_standard_librarys_find_the_same(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # ISA-L's inflate where its wheel exists (the Lambda package has it), zlib elsewhere: same findings.

    from chalicelib.flowlogs import reader

    fast = reader._inflate
    assert fast is not reader._zlib_inflated, "the isal wheel is a pinned dependency: it is installed here"
    lines, _, threats, _ = flowgen.generate(20_000, seed=13, v5=kind == "v5")
    data = gzip.compress(("\n".join(lines) + "\n").encode()) * 2  # two members, as concatenated deliveries are
    seen = {}
    for backend in (fast, reader._zlib_inflated):
        monkeypatch.setattr(reader, "_inflate", backend)
        scanner = _scanner(Ranges(threats[0] + threats[1]))
        for layout, block in with_layout(gzip_blocks(io.BytesIO(data), chunk=4096), None):
            scanner.scan(block, layout)
        found = sorted((f.detector, f.address, f.bytes, f.records) for f in scanner.findings())
        seen[backend.__name__] = (scanner.records, scanner.malformed, found)
    assert seen[fast.__name__] == seen["_zlib_inflated"]
    records, _, found = seen["_zlib_inflated"]
    assert records >= 2 * (len(lines) - 2)  # both members read to the end
    assert found


class _FilteringEC2:
    """DescribeNetworkInterfaces as EC2 filters it (by id, by private or IPv6 address), counted."""

    def __init__(self, enis: list[dict[str, Any]]) -> None:
        self.enis, self.calls = enis, 0

    def network_interfaces(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        from chalicelib.flowlogs.attribution import _addresses

        self.calls += 1
        ((name, values),) = filters.items()
        if name == "network-interface-id":
            return [e for e in self.enis if e["NetworkInterfaceId"] in values]
        return [e for e in self.enis if _addresses(e) & set(values)]

    def describe_instance(self, instance_id: str) -> dict[str, Any]:
        return {"InstanceId": instance_id, "Tags": [{"Key": "eks:cluster-name", "Value": "prod"}]}


def test_a_deliverys_interfaces_are_looked_up_together_with_the_same_attributions() -> None:
    from chalicelib.flowlogs.attribution import Attribution

    def eni(n: int, address: str, vpc: str = "vpc-0aaaaaaaaaaaaaaaa") -> dict[str, Any]:
        return {"NetworkInterfaceId": f"eni-{n:017x}", "VpcId": vpc, "PrivateIpAddress": address,
                "Attachment": {"InstanceId": f"i-{n:017x}"}}  # fmt: skip

    # 300 pods' addresses on their own interfaces, one logged by another interface, one held in two VPCs.
    enis = [eni(n, f"10.0.{n // 250}.{n % 250 + 1}") for n in range(300)]
    enis += [eni(900, "10.9.9.9"), eni(901, "10.9.9.9", "vpc-0bbbbbbbbbbbbbbbb")]
    lines = [f"2 1 eni-{n:017x} 10.0.{n // 250}.{n % 250 + 1} 45.10.1.9 40000 443 6 3 1000 1 2 ACCEPT OK".encode()
             for n in range(300)]  # fmt: skip
    lines += [b"2 1 eni-00000000000000fff 10.0.0.7 45.10.1.9 40000 443 6 3 1000 1 2 ACCEPT OK",
              b"2 1 eni-00000000000000ffe 10.9.9.9 45.10.1.9 40000 443 6 3 1000 1 2 ACCEPT OK"]  # fmt: skip
    scanner = _scanner()
    scan_lines(iter(lines), DEFAULT, scanner)
    incidents = [to_incident(f, BATCH) for f in scanner.findings()]
    one_by_one, together = _FilteringEC2(enis), _FilteringEC2(enis)
    alone = [Attribution(one_by_one, None).attribute(i) for i in incidents]  # type: ignore[arg-type]
    batched = Attribution(together, None)  # type: ignore[arg-type]
    batched.prefetch(incidents)
    found = [batched.attribute(i) for i in incidents]
    assert found == alone
    assert [i.details for i in found] == [i.details for i in alone]  # (details are not part of equality)
    assert sum("of cluster prod" in i.details.get("attribution", "") for i in found) >= 300
    assert one_by_one.calls > 300
    assert together.calls == 4  # 302 ids in two calls, the two addresses no logger holds, the shared one


@pytest.mark.parametrize("between", [" ", "\t", "\x1f", "\u00a0", "\u2003"], ids=["space", "tab", "us", "nbsp", "em"])
def test_two_entries_on_one_line_of_a_plain_list_are_named_whatever_separates_them(between: str) -> None:
    # The fast path counts lines only when something can separate entries within one: never skipped.
    with pytest.raises(EventError, match=r"feed:2: not an IP address or CIDR"):
        parse_networks(f"1.2.3.4\n5.6.7.8{between}9.9.9.9\n", "feed")
    assert parse_networks("1.2.3.4\r\n5.6.7.8\v9.9.9.9\f10.1.1.1\n", "feed").size == 4


def test_merged_ranges_hold_exactly_the_addresses_of_their_spans() -> None:
    import random

    rng = random.Random(3)
    for _ in range(200):
        spans = [(bits, first, first + rng.randint(0, 20)) for bits in (32, 128)
                 for first in (rng.randint(0, 200) for _ in range(rng.randint(0, 40)))]  # fmt: skip
        ranges = Ranges.of_spans(spans)
        for bits in (32, 128):
            covered = {v for b, first, last in spans if b == bits for v in range(first, last + 1)}
            assert [v for v in range(-2, 240) if ranges.contains(bits, v)] == sorted(covered)


_ENTRIES = ("45.1.2.3", "45.1.2.3/32", "45.1.0.0/16", "45.1.2.3/08", "0.0.0.0/0", "45.1.2.255/31", "45.1.2.3/33",
            "45.1.2.3/", "01.2.3.4", "45.1.2.256", "45.1.2", "2001:db8::/48", "2001:db8::1", "::ffff:45.1.2.3",
            "not-an-ip", "45.1.2.3/-8", "45.1.2.3/ 8", "4\u0665.1.2.3", "45.1.2.3/\u0668")  # fmt: skip
_BETWEEN = ("\n", "\r\n", " \n", "\t\n", "\n\n", " ", "\x1c", "\v", "\n#x\n")


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_ENTRIES), st.sampled_from(_BETWEEN)), max_size=12))
def test_the_compiled_reader_of_a_plain_list_makes_the_ranges_python_makes(parts: list[tuple[str, str]]) -> None:
    from chalicelib.flowlogs import addresses

    feed = "".join(entry + between for entry, between in parts)
    compiled = addresses._plain_list(feed)
    reader, addresses._ipv4_ranges = addresses._ipv4_ranges, None
    try:
        pure = addresses._plain_list(feed)
    finally:
        addresses._ipv4_ranges = reader
    assert reader is not None
    assert (compiled is None) == (pure is None)
    if compiled is not None and pure is not None:
        assert (compiled._starts, compiled._ends, compiled.size) == (pure._starts, pure._ends, pure.size)
        slow = addresses._parse_lines(feed, "feed.txt")  # what a plain list reads to, line by line
        assert (compiled._starts, compiled._ends) == (slow._starts, slow._ends)
