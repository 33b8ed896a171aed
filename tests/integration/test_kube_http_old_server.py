"""The responder's Kubernetes client stays version-agnostic: its whole request suite, run again
against the old v1.20 API server when that binary is cached (`KUBE_VERSION=1.20.2 make apiserver`).

Every test of tests/integration/test_kube_http.py is collected here a second time, with the stack
and the administrator's client of a 1.20 server in place of the current one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from lightkube import Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Node

from chalicelib import actions
from chalicelib.generate.permissions import cluster_role_documents
from devstack import stack as devstack
from tests.integration.conftest import Cluster
from tests.integration.test_kube_http import *  # noqa: F403  # the same tests, against this module's server

pytestmark = pytest.mark.integration
OLD = "1.20.2"


@pytest.fixture(scope="module")
def local_stack() -> Iterator[devstack.LocalStack]:
    binary = devstack.cached_kube_apiserver(OLD)
    if binary is None:
        pytest.skip(f"no cached kube-apiserver v{OLD}: `KUBE_VERSION={OLD} make apiserver` builds it (about 7 minutes)")
    with devstack.start(apiserver=binary, moto=False) as running:
        assert devstack.server_version(binary) == f"v{OLD}"
        with Client(KubeConfig.from_file(running.admin_kubeconfig), field_manager="tests") as admin:
            for doc in cluster_role_documents(list(actions.REGISTRY.values())):
                admin.apply(from_dict(doc), force=True)
        yield running


@pytest.fixture(scope="module")
def admin(local_stack: devstack.LocalStack) -> Iterator[Client]:
    with Client(KubeConfig.from_file(local_stack.admin_kubeconfig), field_manager="tests") as client:
        yield client


@pytest.fixture
def cluster(admin: Client) -> Cluster:
    for node in admin.list(Node):
        admin.delete(Node, node.metadata.name)  # type: ignore[arg-type]
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    admin.create(from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
    return Cluster(admin, namespace)
