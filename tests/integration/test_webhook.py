"""The signed webhook: a receiver on loopback checks each request as docs/integrations/webhook.md says."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.notifiers import webhook
from chalicelib.notifiers.base import notify
from devstack import stand_ins
from tests import reports
from tests.integration.outputs import built, secret

pytestmark = pytest.mark.integration
KEY = "whsec-local-0123456789"


@pytest.fixture
def receiver() -> Iterator[stand_ins.StandIn]:
    server = stand_ins.receiver(KEY)
    yield server
    server.close()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json",
                                                                               **headers})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_each_report_arrives_signed_and_as_the_schema_says(receiver: stand_ins.StandIn, aws_session: Any) -> None:
    env = {"WEBHOOK_URL": f"{receiver.url}/hooks/eks", "WEBHOOK_SIGNING_SECRET": secret(aws_session, KEY)}
    (notifier,) = built(env, aws_session)
    for report in (reports.live(), reports.released(), reports.rejected()):
        (delivery,) = notify(report, [notifier])
        assert delivery.delivered, delivery.error
    assert receiver.refused == []
    kinds = [r.json["detail"]["kind"] for r in receiver.received]
    assert kinds == ["incident", "release", "rejected"]
    assert receiver.received[0].json["detail-type"] == "EKS Responder Incident"


def test_a_forged_tampered_or_replayed_request_is_refused(receiver: stand_ins.StandIn) -> None:
    url = f"{receiver.url}/hooks/eks"
    body = webhook.body(reports.live())
    now = time.time()
    good = webhook.headers(KEY.encode(), body, now)
    assert _post(url, body, webhook.headers(b"guessed", body, now)) == 401
    assert _post(url, body.replace(b"contained", b"released"), good) == 401
    assert _post(url, body, webhook.headers(KEY.encode(), body, now - 600)) == 401
    assert _post(url, body, good) == 200
    assert _post(url, body, good) == 200
    assert len(receiver.received) == 2
    assert json.loads(receiver.received[1].body) == {**json.loads(body)}
    assert len({r.headers[webhook.DELIVERY_HEADER.lower()] for r in receiver.received}) == 1
