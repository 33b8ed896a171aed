"""A finding acts only through a kubeconfig context for exactly its cluster: never the current one."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from chalicelib.errors import ClusterAccessError
from chalicelib.executors.kube import ClusterConnector, context_for
from chalicelib.executors.kube_http import Kubeconfig

ARN = "arn:aws:eks:eu-west-1:111122223333:cluster/prod"


def kubeconfig(*contexts: tuple[str, str], current: str | None = None) -> Kubeconfig:
    clusters = sorted({c for _, c in contexts})
    return Kubeconfig(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": c, "cluster": {"server": "https://127.0.0.1:1"}} for c in clusters],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": n, "context": {"cluster": c, "user": "u"}} for n, c in contexts],
            "current-context": current or contexts[0][0],
        }
    )


def test_a_context_named_like_the_cluster_is_used() -> None:
    kc = kubeconfig(("staging", "staging"), ("prod", "prod"), current="staging")
    assert context_for(kc, "prod", "eu-west-1", "111122223333") == "prod"


def test_no_context_for_the_cluster_is_an_error_never_the_current_context() -> None:
    kc = kubeconfig(("staging", "staging"), current="staging")
    with pytest.raises(ClusterAccessError, match="no kubeconfig context for cluster prod") as err:
        context_for(kc, "prod", "eu-west-1", "111122223333")
    assert "never uses another cluster's context" in str(err.value)


def test_an_eks_arn_context_matches_by_name_account_and_region() -> None:
    kc = kubeconfig((ARN, ARN))
    assert context_for(kc, "prod", "eu-west-1", "111122223333") == ARN


def test_an_arn_cluster_entry_behind_a_short_context_name_counts() -> None:
    kc = kubeconfig(("p", ARN))
    assert context_for(kc, "prod", "eu-west-1", "111122223333") == "p"


@pytest.mark.parametrize(("region", "account"), [("us-east-1", "111122223333"), ("eu-west-1", "444455556666")])
def test_an_arn_in_another_region_or_account_is_refused(region: str, account: str) -> None:
    kc = kubeconfig((ARN, ARN))
    with pytest.raises(ClusterAccessError, match="elsewhere: arn:aws:eks:eu-west-1:111122223333:cluster/prod"):
        context_for(kc, "prod", region, account)


def test_an_arn_context_named_like_the_cluster_but_pointing_elsewhere_is_refused() -> None:
    other = "arn:aws:eks:us-east-1:111122223333:cluster/prod"
    kc = kubeconfig(("prod", other))
    with pytest.raises(ClusterAccessError):
        context_for(kc, "prod", "eu-west-1", "111122223333")


def test_two_matching_contexts_are_ambiguous() -> None:
    kc = kubeconfig(("prod", "prod"), (ARN, ARN))
    with pytest.raises(ClusterAccessError, match="several kubeconfig contexts"):
        context_for(kc, "prod", "eu-west-1", "111122223333")


def test_clients_are_cached_per_account_region_and_name(tmp_path: Path) -> None:
    east = "arn:aws:eks:us-east-1:111122223333:cluster/prod"
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": n, "cluster": {"server": f"https://127.0.0.{i}:1"}} for i, n in ((1, ARN), (2, east))
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in (ARN, east)],
                "current-context": ARN,
            }
        )
    )
    connector = ClusterConnector(kubeconfig=path, aws_session=lambda: None, region=None)
    try:
        eu = connector.gateway("prod", "eu-west-1", dry_run=True, account="111122223333")
        us = connector.gateway("prod", "us-east-1", dry_run=True, account="111122223333")
        assert eu._client is not us._client
        assert eu._client.server == "https://127.0.0.1:1"
        assert us._client.server == "https://127.0.0.2:1"
    finally:
        connector.close()


def test_a_kubeconfigs_files_are_read_from_its_own_folder(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"CA")
    (tmp_path / "token").write_text("t")
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://10.0.0.1/", "certificate-authority": "ca.pem"}}
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "tokenFile": "token",
                            "client-certificate-data": base64.b64encode(b"CERT").decode(),
                            "client-key-data": base64.b64encode(b"KEY").decode(),
                        },
                    }
                ],
                "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    access = Kubeconfig.from_file(path).access("prod")
    assert access.server == "https://10.0.0.1"
    assert access.ca_data == b"CA"
    assert access.token_file == str(tmp_path / "token")
    assert access.cert == (b"CERT", b"KEY")


def test_a_context_without_a_server_is_an_error_not_a_guess() -> None:
    config = Kubeconfig({"clusters": [{"name": "c", "cluster": {}}], "users": [],
                         "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}]})  # fmt: skip
    with pytest.raises(ClusterAccessError, match="no cluster with a server address"):
        config.access("prod")
    with pytest.raises(ClusterAccessError, match="no context 'staging'"):
        config.access("staging")


def test_a_plain_name_stands_only_for_the_hubs_own_cluster() -> None:
    """A member's finding about its own `prod` never reaches the hub's `prod` through a plain name."""
    kc = kubeconfig(("prod", "prod"))
    assert context_for(kc, "prod", "eu-west-1", "111122223333", plain_names=True, home="eu-west-1") == "prod"
    with pytest.raises(ClusterAccessError, match="a plain name stands for the hub's own cluster"):
        context_for(kc, "prod", "eu-west-1", "444455556666", plain_names=False)
    with pytest.raises(ClusterAccessError, match="a plain name stands for the cluster in eu-west-1"):
        context_for(kc, "prod", "us-east-1", "111122223333", plain_names=True, home="eu-west-1")
    # A member's cluster is named by its ARN, which says whose it is.
    member = "arn:aws:eks:eu-west-1:444455556666:cluster/prod"
    kc = kubeconfig(("prod", "prod"), (member, member))
    assert context_for(kc, "prod", "eu-west-1", "444455556666", plain_names=False) == member
