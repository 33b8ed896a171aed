"""The responder's own Kubernetes client against the real API server: paging, TLS, auth, errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import ClusterAccessError
from chalicelib.executors import kube_http
from chalicelib.executors.kube_http import NETWORK_POLICY, POD, ApiError, KubeClient, Kubeconfig, TransportError
from devstack import stack as devstack
from tests.integration.conftest import Cluster


def _config(local_stack: devstack.LocalStack, user: dict[str, Any], ca: dict[str, Any] | None = None) -> Kubeconfig:
    cluster = {"server": local_stack.apiserver_url, **(ca or {"certificate-authority": str(local_stack.ca_file)})}
    return Kubeconfig({
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "u"}}],
    })  # fmt: skip


def _client(local_stack: devstack.LocalStack, **user: Any) -> KubeClient:
    return KubeClient(_config(local_stack, user or {"token": devstack.ADMIN_TOKEN}).access("local"), timeout=5)


def test_a_list_is_read_whole_page_by_page(
    cluster: Cluster, local_stack: devstack.LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(5):
        cluster.pod(f"paged-{index}")
    monkeypatch.setattr(kube_http, "PAGE", 2)
    client = _client(local_stack)
    sent: list[dict[str, Any]] = []
    request = KubeClient.request

    def counting(self: KubeClient, method: str, path: str, query: Any = None, *args: Any) -> Any:
        sent.append(dict(query or {}))
        return request(self, method, path, query, *args)

    monkeypatch.setattr(KubeClient, "request", counting)
    names = sorted(p["metadata"]["name"] for p in client.items(POD, cluster.namespace))
    assert names == [f"paged-{i}" for i in range(5)]
    assert len(sent) == 3  # 2 + 2 + 1, each page asked with the last one's continue token
    assert [("continue" in q) for q in sent] == [False, True, True]


def test_writes_carry_the_field_manager_and_dry_run_changes_nothing(
    cluster: Cluster, local_stack: devstack.LocalStack
) -> None:
    pod = cluster.pod("managed")
    client = _client(local_stack)
    answer = client.patch(POD, pod, {"metadata": {"labels": {"x": "dry"}}}, cluster.namespace, dry_run=True)
    assert answer["metadata"]["labels"]["x"] == "dry"  # the object as it would be
    assert "x" not in client.get(POD, pod, cluster.namespace)["metadata"]["labels"]
    client.patch(POD, pod, {"metadata": {"labels": {"x": "live"}}}, cluster.namespace)
    stored = client.get(POD, pod, cluster.namespace)
    assert stored["metadata"]["labels"]["x"] == "live"
    assert "eks-responder" in {m["manager"] for m in stored["metadata"]["managedFields"]}


def test_errors_carry_the_api_servers_status(cluster: Cluster, local_stack: devstack.LocalStack) -> None:
    client = _client(local_stack)
    with pytest.raises(ApiError) as missing:
        client.get(POD, "no-such-pod", cluster.namespace)
    assert missing.value.code == 404
    assert 'pods "no-such-pod" not found' in str(missing.value)
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "twice"},
              "spec": {"podSelector": {}}}  # fmt: skip
    client.create(NETWORK_POLICY, policy, cluster.namespace)
    with pytest.raises(ApiError) as conflict:
        client.create(NETWORK_POLICY, policy, cluster.namespace)
    assert conflict.value.code == 409


def test_the_responder_identity_is_refused_what_its_role_does_not_grant(
    cluster: Cluster, local_stack: devstack.LocalStack
) -> None:
    client = _client(local_stack, token=devstack.RESPONDER_TOKEN)
    with pytest.raises(ApiError) as refused:
        client.items(kube_http.generic("v1", "Secret", namespaced=True), cluster.namespace)
    assert refused.value.code == 403


def test_the_server_is_verified_against_the_clusters_ca_only(local_stack: devstack.LocalStack) -> None:
    other_ca = {"certificate-authority-data": base64.b64encode(_another_ca()).decode()}
    client = KubeClient(_config(local_stack, {"token": devstack.ADMIN_TOKEN}, other_ca).access("local"), timeout=5)
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        client.items(POD, "default")
    inline = {"certificate-authority-data": base64.b64encode(local_stack.ca_file.read_bytes()).decode()}
    client = KubeClient(_config(local_stack, {"token": devstack.ADMIN_TOKEN}, inline).access("local"), timeout=5)
    assert isinstance(client.items(POD, "default"), list)


def test_a_server_whose_certificate_does_not_name_it_is_refused(local_stack: devstack.LocalStack) -> None:
    # The API server's certificate names 127.0.0.1, not localhost: the right CA, the wrong name.
    renamed = local_stack.apiserver_url.replace("127.0.0.1", "localhost")
    access = _config(local_stack, {"token": devstack.ADMIN_TOKEN}).access("local")
    client = KubeClient(dataclasses.replace(access, server=renamed), timeout=5)
    with pytest.raises(TransportError, match=r"(?i)hostname|match"):
        client.items(POD, "default")


def test_a_token_file_and_a_credential_plugin_authenticate(local_stack: devstack.LocalStack, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(devstack.ADMIN_TOKEN + "\n")
    assert isinstance(_client(local_stack, tokenFile=str(token_file)).items(POD, "default"), list)
    plugin = tmp_path / "get-token"
    credential = {"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1beta1",
                  "status": {"token": devstack.ADMIN_TOKEN}}  # fmt: skip
    plugin.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({credential!r}))\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    spec = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin), "args": []}
    assert isinstance(_client(local_stack, exec=spec).items(POD, "default"), list)
    broken = {**spec, "command": str(tmp_path / "missing-plugin")}
    with pytest.raises(ClusterAccessError, match="credential plugin"):
        _client(local_stack, exec=broken).items(POD, "default")


def test_turning_tls_verification_off_is_refused(local_stack: devstack.LocalStack) -> None:
    config = _config(local_stack, {"token": devstack.ADMIN_TOKEN}, {"insecure-skip-tls-verify": True})
    with pytest.raises(ClusterAccessError, match="TLS verification off"):
        config.access("local")


def _another_ca() -> bytes:
    """A CA that did not sign the API server's certificate."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        key, cert = Path(folder) / "ca.key", Path(folder) / "ca.crt"
        command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                   "-days", "1", "-subj", "/CN=another-ca"]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        return cert.read_bytes()


def test_a_status_message_or_the_text_is_the_error(local_stack: devstack.LocalStack) -> None:
    assert kube_http._message(json.dumps({"kind": "Status", "message": "nope"})) == "nope"
    assert kube_http._message("404 page not found\n") == "404 page not found"


@pytest.mark.parametrize(("expires", "runs"), [("2099-01-01T00:00:00Z", 1), ("2000-01-01T00:00:00Z", 3)])
def test_a_plugins_token_is_used_until_it_expires(
    expires: str, runs: int, local_stack: devstack.LocalStack, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    plugin = tmp_path / "get-token"
    credential = {"status": {"token": devstack.ADMIN_TOKEN, "expirationTimestamp": expires}}
    plugin.write_text(f"#!{sys.executable}\nimport json\nopen({str(counter)!r}, 'a').write('x')\n"
                      f"print(json.dumps({credential!r}))\n")  # fmt: skip
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    client = _client(local_stack, exec={"command": str(plugin)})
    for _ in range(3):
        client.items(POD, "default")
    assert len(counter.read_text()) == runs  # a token past its expiry is asked for again
