"""Blast-radius caps hold when many findings arrive at once: leases in DynamoDB (moto)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node

from chalicelib.incident import ResourceKind
from chalicelib.response.report import Mode, Report
from tests.integration.conftest import Cluster, create_incidents_table, incident, rules_with

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"
CAP = 3
BURST = 100


def _table(aws_session: Any) -> None:
    create_incidents_table(aws_session, TABLE)


def test_a_burst_of_findings_for_different_nodes_cordons_at_most_the_cap(
    cluster: Cluster, admin: Client, make_responder: Any, aws_session: Any
) -> None:
    # GIVEN 100 nodes and a cap of 3 cordons per hour, shared through the incident table
    _table(aws_session)
    for index in range(BURST):
        cluster.node(f"node-{index:03}", f"i-{index:04x}")
    responders = [
        make_responder(rules_with("k8s:cordon-node"), max_nodes_cordoned_per_hour=CAP, incidents_table=TABLE)
        for _ in range(10)
    ]
    findings = [incident(instance_ids=(f"i-{index:04x}",), kind=ResourceKind.NODE) for index in range(BURST)]

    # WHEN 100 findings, one per node, are handled concurrently (ten containers at a time)
    def handle(index: int) -> Report:
        report: Report = responders[index % len(responders)].handle(findings[index], Mode.LIVE)
        return report

    with ThreadPoolExecutor(max_workers=len(responders)) as pool:
        reports = list(pool.map(handle, range(BURST)))

    # THEN at most the cap is cordoned, the rest say why, and the cap is announced once
    statuses = [r.actions[0].status.value for r in reports]
    assert statuses.count("succeeded") == CAP
    assert statuses.count("skipped") == BURST - CAP
    assert all(
        "blast-radius cap reached: 3 node(s)" in r.actions[0].detail
        for r in reports
        if r.actions[0].status.value == "skipped"
    )
    cordoned = [n.metadata.name for n in admin.list(Node) if n.spec.unschedulable]
    assert len(cordoned) == CAP
    told = [note for r in reports for note in r.notes if note.startswith("CAP REACHED")]
    assert len(told) == 1
