"""The real local stack for integration tests: started once per session, never skipped."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from chalicelib import actions
from chalicelib.actions.k8s.block_image import IMAGE_BLOCKS, IMAGE_BLOCKS_NAMESPACE, image_blocks_documents
from chalicelib.entry import wiring
from chalicelib.executors.aws import AwsConnector
from chalicelib.executors.caps import CapLeases
from chalicelib.executors.evidence import FolderEvidence
from chalicelib.executors.identity import IdentityConnector
from chalicelib.executors.image_places import ImagePlaces
from chalicelib.executors.kube import ClusterConnector
from chalicelib.executors.plans import PlanStore
from chalicelib.executors.scan_findings import ScanFindingsReader
from chalicelib.generate import bounds
from chalicelib.generate.permissions import RESPONDER_GROUP, cluster_role_documents
from chalicelib.incident import Incident, PodRef, ResourceKind, Severity, WorkloadRef
from chalicelib.policy.loader import load_rules, parse_rules
from chalicelib.policy.model import RulesFile
from chalicelib.response.execute import Responder
from chalicelib.response.plan import Plan
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from devstack import stack as devstack
from devstack.seed import until_established
from tests.conftest import ROOT
from tests.integration import iam_calls

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The IAM proof judges the calls every other test made: it runs last."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/integration/test_iam_proof.py"))


@pytest.fixture(scope="session", autouse=True)
def record_aws_calls() -> Iterator[None]:
    """Every AWS call a function's code makes in this session, for the IAM proof (test_iam_proof)."""
    with pytest.MonkeyPatch.context() as patch:
        iam_calls.install(patch)
        yield


@pytest.fixture(scope="session")
def local_stack() -> Iterator[devstack.LocalStack]:
    with devstack.start() as running:
        admin = Client(KubeConfig.from_file(running.admin_kubeconfig), field_manager="tests")
        with admin:
            # The role a stage gets whose rules reach every action (k8s:delete-pod included): the
            # tests run every action as the responder identity. The committed file, made from the
            # default rules, grants less (tests/unit/test_permissions.py).
            for doc in cluster_role_documents(list(actions.REGISTRY.values())):
                admin.apply(from_dict(doc), force=True)
            # As deployed (deploy/rbac/image-blocks.yaml, responder-bounds.yaml): every live test runs
            # the responder with the server enforcing its bounds, so each write a playbook makes is admitted.
            for doc in image_blocks_documents(Settings().all_protected_namespaces):
                admin.apply(from_dict(doc), force=True)
            enforce_bounds(admin, running.responder_kubeconfig)
        yield running


BOUNDS_PROBE = "eks-responder-bounds-probe"


def bounds_enforced(admin: Client, responder_kubeconfig: Path) -> bool:
    """Whether the server refuses, by the bounds, a write they forbid (a dry-run pod spec change)."""
    from lightkube.resources.core_v1 import Pod

    with contextlib.suppress(ApiError):
        admin.create(from_dict({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": BOUNDS_PROBE, "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": "public.ecr.aws/nginx/nginx:1.27"}]},
        }))  # fmt: skip
    with Client(KubeConfig.from_file(responder_kubeconfig), field_manager="tests") as responder:
        try:
            responder.patch(
                Pod, BOUNDS_PROBE, {"spec": {"activeDeadlineSeconds": 60}}, namespace="default",
                patch_type=PatchType.MERGE, dry_run=True,
            )  # fmt: skip
        except ApiError as exc:
            if bounds.NAME in str(exc.status.message):
                return True
            raise
    return False


def enforce_bounds(admin: Client, responder_kubeconfig: Path, timeout: float = 30.0) -> None:
    """Apply the generated bounds and their binding, then wait until the server enforces them."""
    for doc in bounds.documents(RESPONDER_GROUP):
        admin.apply(from_dict(doc), force=True)
    deadline = time.monotonic() + timeout
    while not bounds_enforced(admin, responder_kubeconfig):
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not enforce {bounds.NAME} within {timeout:.0f} s")
        time.sleep(0.1)  # polling a condition: the policy reaches the admission plugin's informer


@pytest.fixture(scope="session")
def admin(local_stack: devstack.LocalStack) -> Iterator[Client]:
    with Client(KubeConfig.from_file(local_stack.admin_kubeconfig), field_manager="tests") as client:
        yield client


@dataclass
class Cluster:
    """Objects for one test, in a namespace of its own. Nodes are cluster-wide: cleared per test."""

    admin: Client
    namespace: str
    created: list[str] = field(default_factory=list)

    def create(self, obj: dict[str, Any]) -> Any:
        return self.admin.create(from_dict(obj))

    def node(
        self, name: str, instance_id: str | None = None, labels: dict[str, str] | None = None, *, ready: bool = True
    ) -> str:
        spec = {"providerID": f"aws:///us-east-1a/{instance_id}"} if instance_id else {}
        self.create(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
        )
        if ready:  # no kubelet here to report it
            status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}
            self.admin.patch(Node.Status, name, status, patch_type=PatchType.MERGE)
        return name

    def pod(
        self,
        name: str,
        node: str | None = None,
        labels: dict[str, str] | None = None,
        owner: Any = None,
        namespace: str | None = None,
    ) -> str:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace or self.namespace,
            "labels": labels or {"app": name},
        }
        if owner is not None:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": owner.kind,
                    "name": owner.metadata.name,
                    "uid": owner.metadata.uid,
                    "controller": True,
                }
            ]
        spec: dict[str, Any] = {"containers": [{"name": "main", "image": "public.ecr.aws/nginx/nginx:1.27"}]}
        if node:
            spec["nodeName"] = node
        self.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        return name

    def deployment(self, name: str, nodes: list[str]) -> list[str]:
        labels = {"app": name}
        template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main", "image": "nginx"}]}}
        deployment = self.create({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"replicas": len(nodes), "selector": {"matchLabels": labels}, "template": template},
        })  # fmt: skip
        rs_labels = {**labels, "pod-template-hash": "abc123"}
        rs = self.create({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name}-abc123", "namespace": self.namespace, "labels": rs_labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                              "uid": deployment.metadata.uid, "controller": True}]},
            "spec": {"replicas": len(nodes), "selector": {"matchLabels": rs_labels},
                     "template": {**template, "metadata": {"labels": rs_labels}}},
        })  # fmt: skip
        return [self.pod(f"{name}-abc123-{i}", node, rs_labels, owner=rs) for i, node in enumerate(nodes)]


KYVERNO_CRD = ROOT / "devstack" / "kyverno-clusterpolicy-crd.yaml"
KYVERNO_CRD_NAME = "clusterpolicies.kyverno.io"


@pytest.fixture
def kyverno_api(admin: Client) -> None:
    """The cluster serves Kyverno's ClusterPolicy API (the CRD only: nothing enforces it here)."""
    admin.apply(from_dict(yaml.safe_load(KYVERNO_CRD.read_text())), force=True)
    until_established(admin, KYVERNO_CRD_NAME)


@pytest.fixture
def without_kyverno_api(admin: Client) -> None:
    """The cluster serves no ClusterPolicy API: remove the CRD and wait until it is gone."""
    with contextlib.suppress(ApiError):
        admin.delete(CustomResourceDefinition, KYVERNO_CRD_NAME)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            admin.get(CustomResourceDefinition, KYVERNO_CRD_NAME)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        time.sleep(0.1)  # polling a condition, not waiting for time to pass
    raise AssertionError(f"{KYVERNO_CRD_NAME} was not removed within 60 s")


@pytest.fixture
def without_image_blocks(admin: Client) -> Iterator[None]:
    """A cluster where the standing image-blocks policy was never applied (its ConfigMap is absent)."""
    from lightkube.resources.core_v1 import ConfigMap

    admin.delete(ConfigMap, IMAGE_BLOCKS, namespace=IMAGE_BLOCKS_NAMESPACE)
    yield
    (config_map,) = [d for d in image_blocks_documents(()) if d["kind"] == "ConfigMap"]
    admin.create(from_dict(config_map))


@pytest.fixture
def cluster(admin: Client) -> Cluster:
    from lightkube.resources.core_v1 import ConfigMap

    for node in admin.list(Node):
        admin.delete(Node, node.metadata.name)  # type: ignore[arg-type]
    # No image stays blocked from one test to the next.
    blocks = admin.get(ConfigMap, IMAGE_BLOCKS, namespace=IMAGE_BLOCKS_NAMESPACE)
    if blocks.data:
        admin.replace(ConfigMap(metadata=blocks.metadata, data={}))
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    admin.create(from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
    return Cluster(admin, namespace)


def incident(
    *,
    namespace: str | None = None,
    pods: tuple[str, ...] = (),
    workload: tuple[str, str] | None = None,
    instance_ids: tuple[str, ...] = (),
    kind: ResourceKind = ResourceKind.POD,
    type_: str = "Execution:Runtime/ReverseShell",
    severity: float = 8.0,
    privileged: bool = False,
    incident_id: str | None = None,
) -> Incident:
    workloads = tuple(WorkloadRef("Pod", namespace or "", p) for p in pods)
    if workload:
        workloads += (WorkloadRef(workload[0], namespace or "", workload[1]),)
    return Incident(
        id=incident_id or uuid.uuid4().hex,
        source="guardduty",
        type=type_,
        title="test",
        severity=Severity.from_score(severity),
        score=severity,
        account="123456789012",
        region="us-east-1",
        resource_kind=kind,
        cluster="local",
        namespace=namespace,
        workloads=workloads,
        pods=tuple(PodRef(namespace or "", p) for p in pods),
        instance_ids=instance_ids,
        privileged=privileged,
    )


def rules_with(*actions: str | dict[str, Any]) -> RulesFile:
    steps = [a if isinstance(a, dict) else {"action": a} for a in actions]
    return parse_rules({"version": 1, "rules": [{"name": "test-rule", "actions": steps}]}, "test")


@pytest.fixture
def aws_session(local_stack: devstack.LocalStack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 session whose clients talk to the stack's moto server (fresh for every test)."""
    local_stack.moto_reset()
    for key, value in local_stack.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    wiring.reset()  # its cached session must see this environment
    return boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def make_responder(local_stack: devstack.LocalStack, tmp_path: Path, aws_session: Any) -> Iterator[Any]:
    built: list[Responder] = []

    def build(rules: Any = None, evidence: Any = None, clock: Any = None, **settings: Any) -> Responder:
        current = Settings(kubeconfig=local_stack.responder_kubeconfig, evidence_dir=tmp_path / "evidence", **settings)
        connector = ClusterConnector(kubeconfig=current.kubeconfig, aws_session=lambda: None, region="us-east-1")
        assert current.evidence_dir is not None
        evidence = evidence or FolderEvidence(current.evidence_dir)
        aws = AwsConnector(lambda: aws_session)
        identity = IdentityConnector(lambda: aws_session)
        rules = rules or load_rules(DEFAULT_RULES_FILE)
        keys = wiring.build_keys(current)
        scans = ScanFindingsReader(lambda: aws_session)
        images = ImagePlaces(lambda: aws_session)
        table = current.incidents_table
        caps = CapLeases(table, aws_session.client("dynamodb")) if table else None
        plans = PlanStore(table, aws_session.client("dynamodb"), Plan.from_dict) if table else None
        built.append(
            Responder(
                rules, current, connector, evidence, aws=aws, identity=identity, keys=keys, scans=scans, caps=caps,
                plans=plans, spokes=wiring.build_spokes(current), images=images,
                **({"clock": clock} if clock else {}),
            )
        )  # fmt: skip
        return built[-1]

    yield build
    for responder in built:
        responder.close()


INCIDENTS_TABLE = "eks-responder-incidents"


def create_incidents_table(aws_session: Any, name: str = INCIDENTS_TABLE) -> str:
    """The incident table as `make prerequisites` creates it (partition key `id`, string)."""
    aws_session.client("dynamodb").create_table(
        TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    return name


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request the responder's Kubernetes client sends, as (method, path)."""
    from chalicelib.executors.kube_http import KubeClient

    requests: list[tuple[str, str]] = []
    send = KubeClient.request

    def counting(self: KubeClient, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        requests.append((method, path))
        return send(self, method, path, *args, **kwargs)

    monkeypatch.setattr(KubeClient, "request", counting)
    return requests


@pytest.fixture
def store(aws_session: Any) -> PlanStore[Plan]:
    """Plans kept in a fresh incident table on the moto server."""
    return PlanStore(create_incidents_table(aws_session), aws_session.client("dynamodb"), Plan.from_dict)
