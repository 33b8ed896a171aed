"""Faults between the responder and the real local servers: retried, then reported, never half-told.

A proxy on loopback (tests/integration/faults.py) answers in place of the Kubernetes API server or
the AWS endpoint: errors, throttling, stalls, dropped connections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from chalicelib.executors.aws import AwsConnector
from chalicelib.executors.kube import ClusterConnector
from chalicelib.incident import ResourceKind
from chalicelib.interfaces import INVESTIGATION_LABEL
from chalicelib.response.execute import Responder
from chalicelib.response.report import Mode
from chalicelib.settings import Settings
from devstack.stack import LocalStack
from tests.integration.conftest import Cluster, incident, rules_with
from tests.integration.faults import FaultProxy, ec2_accepted, ec2_error

pytestmark = pytest.mark.integration


@pytest.fixture
def kube_proxy(local_stack: LocalStack) -> Iterator[FaultProxy]:
    serving = local_stack.ca_file.parent
    proxy = FaultProxy(local_stack.apiserver_url, cert=serving / "apiserver.crt", key=serving / "apiserver.key")
    yield proxy
    proxy.close()


def _through(proxy: FaultProxy, local_stack: LocalStack, tmp_path: Path, rules: Any, **settings: Any) -> Responder:
    config = json.loads(local_stack.responder_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = proxy.url
    path = tmp_path / "through-proxy.kubeconfig"
    path.write_text(json.dumps(config))
    current = Settings(kubeconfig=path, **settings)
    connector = ClusterConnector(kubeconfig=path, aws_session=lambda: None, region="us-east-1", timeout=1.0)
    return Responder(rules, current, connector)


def _label_through(proxy: FaultProxy, local_stack: LocalStack, tmp_path: Path, namespace: str, pod: str) -> Any:
    """`k8s:label-pod` on the pod, live, through the proxy: the step's result."""
    responder = _through(proxy, local_stack, tmp_path, rules_with("k8s:label-pod"))
    try:
        (result,) = responder.handle(incident(namespace=namespace, pods=(pod,)), Mode.LIVE).actions
    finally:
        responder.close()
    return result


def _labels(admin: Client, namespace: str, name: str) -> dict[str, str]:
    return dict(admin.get(Pod, name, namespace=namespace).metadata.labels or {})


def test_kubernetes_errors_are_retried_with_backoff(
    cluster: Cluster, admin: Client, kube_proxy: FaultProxy, local_stack: LocalStack, tmp_path: Path
) -> None:
    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    kube_proxy.inject("status", times=2, status=503)
    kube_proxy.inject("reset", times=1, methods=("PATCH",))
    result = _label_through(kube_proxy, local_stack, tmp_path, cluster.namespace, pod)
    assert result.status.value == "succeeded", result.detail
    assert _labels(admin, cluster.namespace, pod)[INVESTIGATION_LABEL] == "true"
    assert sum(f.hits for f in kube_proxy.faults) == 3  # two 503s and a dropped PATCH, each retried


def test_a_server_asking_to_wait_is_waited_for_and_not_past_the_deadline(
    cluster: Cluster, admin: Client, kube_proxy: FaultProxy, local_stack: LocalStack, tmp_path: Path
) -> None:
    from chalicelib.invocation import LocalContext, invocation

    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    kube_proxy.inject("status", times=2, status=429, methods=("PATCH",), headers={"Retry-After": "1"})
    result = _label_through(kube_proxy, local_stack, tmp_path, cluster.namespace, pod)
    assert result.status.value == "succeeded", result.detail
    patches = [t for r, t in zip(kube_proxy.requests, kube_proxy.times, strict=True) if r.startswith("PATCH")]
    assert len(patches) == 3
    assert patches[1] - patches[0] >= 0.95  # the second second of Retry-After, not 0.1-0.2 s of backoff
    assert patches[2] - patches[1] >= 0.95

    # With 15.8 s left of the invocation (15 s are kept to record and tell), the first try goes, and
    # nobody waits a second for the next: the step fails now.
    kube_proxy.faults.clear()
    kube_proxy.inject("status", times=-1, status=429, methods=("PATCH",), headers={"Retry-After": "1"})
    other = cluster.pod("api-2", "node-a")
    with invocation(LocalContext(timeout_seconds=15.8)):
        late = _label_through(kube_proxy, local_stack, tmp_path, cluster.namespace, other)
    assert late.status.value == "failed"
    assert "429" in late.detail
    assert sum(f.hits for f in kube_proxy.faults) == 1  # one try: no time to wait for another


@pytest.mark.parametrize(("kind", "words"), [("status", "injected 503"), ("stall", "timed out")])
def test_a_kubernetes_api_that_stays_down_fails_the_step_with_the_reason(
    kind: str, words: str, cluster: Cluster, admin: Client, kube_proxy: FaultProxy, local_stack: LocalStack,
    tmp_path: Path,
) -> None:  # fmt: skip
    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    fault = kube_proxy.inject(kind, times=-1, methods=("PATCH",))
    responder = _through(kube_proxy, local_stack, tmp_path, rules_with("k8s:label-pod", "k8s:label-node"))
    try:
        report = responder.handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    finally:
        responder.close()
    statuses = [(r.action, r.status.value) for r in report.actions]
    assert statuses == [("k8s:label-pod", "failed"), ("k8s:label-node", "failed")]
    assert all(words in r.detail.lower() for r in report.actions), [r.detail for r in report.actions]
    assert fault.hits == 6  # three attempts per step, no more
    assert INVESTIGATION_LABEL not in _labels(admin, cluster.namespace, pod)


@pytest.fixture
def aws_proxy(local_stack: LocalStack) -> Iterator[FaultProxy]:
    proxy = FaultProxy(local_stack.moto_url)
    yield proxy
    proxy.close()


def _ec2_responder(proxy: FaultProxy, aws_session: Any, monkeypatch: pytest.MonkeyPatch) -> Responder:
    from botocore.config import Config

    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    session = boto3.session.Session(region_name="us-east-1")
    session._session.set_default_client_config(Config(retries={"mode": "standard", "total_max_attempts": 3}))
    rules = rules_with("ec2:protect-instance")
    return Responder(rules, Settings(), None, aws=AwsConnector(lambda: session))


def _instance(ec2: Any, shutdown: str = "stop") -> str:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "eks:cluster-name", "Value": "local"}]}]
    made = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=tags,
                             InstanceInitiatedShutdownBehavior=shutdown)  # fmt: skip
    return str(made["Instances"][0]["InstanceId"])


def test_aws_throttling_is_retried_and_a_lasting_error_fails_the_step(
    aws_session: Any, aws_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = aws_session.client("ec2")  # the test's own view of moto, not through the proxy
    target, other = _instance(ec2), _instance(ec2)
    found = incident(instance_ids=(target,), kind=ResourceKind.NODE, type_="CryptoCurrency:EC2/BitcoinTool.B!DNS")
    throttled = aws_proxy.inject(
        "status", times=2, status=503, methods=("POST",), body=ec2_error("RequestLimitExceeded")
    )
    report = _ec2_responder(aws_proxy, aws_session, monkeypatch).handle(found, Mode.LIVE)
    (result,) = report.actions
    assert result.status.value == "succeeded", result.detail
    assert throttled.hits == 2
    assert ec2.describe_instance_attribute(InstanceId=target, Attribute="disableApiTermination")[
        "DisableApiTermination"]["Value"] is True  # fmt: skip

    down = aws_proxy.inject("status", times=-1, status=503, methods=("POST",), body=ec2_error("Unavailable"))
    again = type(found)(**{**found.__dict__, "id": "another", "instance_ids": (other,)})
    (failed,) = _ec2_responder(aws_proxy, aws_session, monkeypatch).handle(again, Mode.LIVE).actions
    assert failed.status.value == "failed"
    assert "Unavailable" in failed.detail
    assert "reached max retries: 2" in failed.detail  # botocore's standard mode: three attempts per call
    assert down.hits % 3 == 0
    assert ec2.describe_instance_attribute(InstanceId=other, Attribute="disableApiTermination")[
        "DisableApiTermination"]["Value"] is False  # fmt: skip


def test_a_write_the_endpoint_accepts_but_does_not_make_fails_its_step_on_read_back(
    aws_session: Any, aws_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint answers "done" to the shutdown-behaviour change and keeps "terminate": the step
    says what it read back, fails, and keeps its prior state for the release."""
    ec2 = aws_session.client("ec2")
    target = _instance(ec2, "terminate")
    found = incident(instance_ids=(target,), kind=ResourceKind.NODE, type_="CryptoCurrency:EC2/BitcoinTool.B!DNS")
    ignored = aws_proxy.inject("status", status=200, methods=("POST",), body=ec2_accepted("ModifyInstanceAttribute"),
                               when=b"&Value=stop", content_type="text/xml")  # fmt: skip
    (result,) = _ec2_responder(aws_proxy, aws_session, monkeypatch).handle(found, Mode.LIVE).actions
    assert ignored.hits == 1
    assert result.status.value == "failed", result.detail
    assert "shutdown behaviour stop" in result.detail
    assert result.detail.endswith("read back shutdown behaviour terminate")
    assert result.prior == {"disableApiTermination": False, "instanceInitiatedShutdownBehavior": "terminate",
                            "auto_scaling_group": None, "protected_from_scale_in": False}  # fmt: skip

    aws_proxy.faults.clear()
    other = _instance(ec2, "terminate")
    again = type(found)(**{**found.__dict__, "id": "another", "instance_ids": (other,)})
    (held,) = _ec2_responder(aws_proxy, aws_session, monkeypatch).handle(again, Mode.LIVE).actions
    assert held.status.value == "succeeded", held.detail
    assert held.detail.endswith("(read back)")


def test_a_step_an_earlier_delivery_did_is_reported_and_never_run_again(
    cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    target = f"{cluster.namespace}/{pod}"
    earlier = {"action": "k8s:label-pod", "target": target, "status": "succeeded", "detail": "labelled pod",
               "prior": {"labels": {}}, "at": "2026-12-07T08:00:00Z"}  # fmt: skip
    responder = make_responder(rules_with("k8s:label-pod", "k8s:capture-pod"))
    report = responder.handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE,
                              {("k8s:label-pod", target): earlier})  # fmt: skip
    label, capture = report.actions
    assert label.status.value == "succeeded"
    assert label.detail == "done by an earlier delivery of this incident (2026-12-07T08:00:00Z): labelled pod"
    assert label.prior == {"labels": {}}  # what a release puts back
    assert INVESTIGATION_LABEL not in _labels(admin, cluster.namespace, pod)  # not run again
    assert capture.action == "k8s:capture-pod"


def test_no_aws_request_and_no_step_starts_past_the_deadline(
    aws_session: Any, cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    """Botocore's own retries would outlive the function: every attempt checks the time left first,
    and a step that cannot start is recorded as not done (a passing fault: delivered again)."""
    from chalicelib.entry import wiring
    from chalicelib.executors import faults
    from chalicelib.invocation import DeadlineError, LocalContext, invocation

    wiring.reset()
    sts = wiring.aws_session().client("sts")
    assert sts.get_caller_identity()["Account"]  # outside an invocation: no deadline
    with invocation(LocalContext(timeout_seconds=5)), pytest.raises(DeadlineError, match="not started: deadline"):
        sts.get_caller_identity()
    assert faults.transient(DeadlineError("x"))

    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    with invocation(LocalContext(timeout_seconds=5)):
        (step,) = make_responder(rules_with("k8s:label-pod")).handle(
            incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE).actions  # fmt: skip
    assert (step.status.value, step.transient) == ("failed", True)
    assert "not started: deadline" in step.detail  # resolving the targets is the first request
    assert INVESTIGATION_LABEL not in _labels(admin, cluster.namespace, pod)
