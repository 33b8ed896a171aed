"""Reach an EKS cluster from Lambda: endpoint and CA from DescribeCluster, a presigned STS token.

This is what `aws eks get-token` does, in botocore alone, so the Lambda needs no CLI.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import msgspec

from chalicelib.errors import ClusterAccessError
from chalicelib.interfaces import IAMStatement

# EKS accepts a token for 15 minutes after signing; refresh well before that.
TOKEN_TTL_SECONDS = 14 * 60

IAM: tuple[IAMStatement, ...] = (IAMStatement(("eks:DescribeCluster",), ("arn:aws:eks:{region}:{account}:cluster/*",)),)


def bearer_token(session: Any, cluster: str, region: str) -> str:
    """A Kubernetes bearer token for `cluster`, signed with the session's credentials."""
    from botocore.signers import RequestSigner

    sts = session.client("sts", region_name=region)
    signer = RequestSigner(
        sts.meta.service_model.service_id,
        region,
        "sts",
        "v4",
        session.get_credentials(),
        session.events,
    )
    url = signer.generate_presigned_url(
        {
            "method": "GET",
            "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            "body": {},
            "headers": {"x-k8s-aws-id": cluster},
            "context": {},
        },
        region_name=region,
        expires_in=60,
        operation_name="",
    )
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    return f"k8s-aws-v1.{encoded}"


class ClusterConfig(msgspec.Struct, frozen=True):
    kubeconfig: dict[str, Any]
    expires_at: float


def eks_kubeconfig(session: Any, cluster: str, region: str, account: str | None = None) -> ClusterConfig:
    """A kubeconfig dict for `cluster`, valid until `expires_at` (monotonic seconds).

    With `account`, the cluster found must be in that account: the responder's credentials
    reach only their own account, and a finding about a cluster of the same name elsewhere
    must not act on this one.
    """
    info = session.client("eks", region_name=region).describe_cluster(name=cluster)["cluster"]
    arn = str(info.get("arn") or "")
    found = arn.split(":")[4] if arn.count(":") >= 5 else ""  # noqa: PLR2004 - arn:partition:eks:region:account:...
    if account and found != account:
        raise ClusterAccessError(
            f"cluster {cluster} in region {region} reached with these credentials is in account {found or '?'}, "
            f"not the finding's account {account}; nothing is done in another account's cluster"
        )
    token = bearer_token(session, cluster, region)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": info["endpoint"],
                    "certificate-authority-data": info["certificateAuthority"]["data"],
                },
            }
        ],
        "users": [{"name": "eks-responder", "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "eks-responder"}}],
        "current-context": cluster,
    }
    return ClusterConfig(config, time.monotonic() + TOKEN_TTL_SECONDS)
