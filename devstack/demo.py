"""`make demo`: start the local stack, seed a cluster, replay events/ live, show what changed, stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.networking_v1 import NetworkPolicy

from chalicelib.actions.base import INCIDENT_LABEL, INVESTIGATION_LABEL, QUARANTINE_LABEL
from devstack import seed, stack

ROOT = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def _show_cluster(client: Any) -> None:
    say("What changed in the cluster")
    for node in client.list(Node):
        meta, spec = node.metadata, node.spec
        taints = ", ".join(f"{t.key}:{t.effect}" for t in (spec.taints or []))
        state = "cordoned" if spec.unschedulable else "schedulable"
        mark = " under investigation" if (meta.labels or {}).get(INVESTIGATION_LABEL) else ""
        print(f"  node {meta.name:<32} {state:<12}{mark}{'  taints: ' + taints if taints else ''}")
    for pod in client.list(Pod, namespace="*"):
        labels = pod.metadata.labels or {}
        flags = [
            name for key, name in ((QUARANTINE_LABEL, "ISOLATED"), (INVESTIGATION_LABEL, "labelled")) if labels.get(key)
        ]
        incident = labels.get(INCIDENT_LABEL, "")
        print(f"  pod  {pod.metadata.namespace + '/' + pod.metadata.name:<40} {' '.join(flags) or '-':<18} {incident}")
    for policy in client.list(NetworkPolicy, namespace="*"):
        spec = policy.spec
        print(
            f"  networkpolicy {policy.metadata.namespace}/{policy.metadata.name}: selects "
            f"{spec.podSelector.matchLabels}, denies {' and '.join(spec.policyTypes or [])}"
        )


def _show_evidence(env: dict[str, str], bucket: str) -> None:
    say(f"Evidence in s3://{bucket} (moto)")
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    manifests = [k for k in keys if k.endswith("MANIFEST.json")]
    for key in manifests:
        print(f"  {key}")
    print(f"  {len(keys)} objects, {len(manifests)} pod captures with SHA-256 manifests")


def main() -> int:
    started = time.monotonic()
    say("Starting the local stack (real kube-apiserver + etcd, moto server)")
    with stack.start(log=lambda m: print(f"    {m}", flush=True)) as running:
        say("Seeding cluster 'demo': 4 worker nodes (EC2 instances in moto), a Deployment, a DaemonSet, pods")
        seeded = seed.seed(running)
        env = {**os.environ, **running.env(), "EVIDENCE_BUCKET": seeded.evidence_bucket, "DRY_RUN": "false",
               "MAX_NODES_CORDONED_PER_HOUR": "3"}  # fmt: skip
        say("Replaying events/ live, as the responder identity (RBAC: the generated ClusterRole only)")
        cmd = [sys.executable, "-m", "chalicelib.cli", "replay", "--live", str(ROOT / "events")]
        code = subprocess.run(cmd, env=env, check=False).returncode
        with seed.admin_client(running) as client:
            _show_cluster(client)
        _show_evidence(env, seeded.evidence_bucket)
        say("Stopping everything the demo started")
    say(f"Done in {time.monotonic() - started:.0f} s (replay exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
