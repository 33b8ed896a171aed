"""The floor of the cold-first-event benchmark: a minimal hand-written handler.

It contains the pod of a GuardDuty reverse-shell finding in dry run with the same requests, in
the same order, that the responder sends for it (listed by `bench/time_to_contain.py`), using
only boto3 and urllib: no validation of the event, no rules, no guardrails, no prior state, no
audit, no retries. What the responder costs beyond this is the price of being safe.

Kubernetes is reached with a server address, CA file and token given in the environment
(`FLOOR_KUBE_SERVER`, `FLOOR_KUBE_CA`, `FLOOR_KUBE_TOKEN`): the floor does not even read a
kubeconfig. Run by `bench/cold_first_event.py`; prints the milliseconds from the process start
it is given to the last request answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3

QUARANTINE = {"eks-responder.io/quarantine": "true"}


def _kube(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
    context = ssl.create_default_context(cafile=os.environ["FLOOR_KUBE_CA"])
    headers = {"Authorization": f"Bearer {os.environ['FLOOR_KUBE_TOKEN']}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        kind = "merge-patch+json" if method == "PATCH" else "json"
        headers["Content-Type"] = f"application/{kind}"
    request = urllib.request.Request(os.environ["FLOOR_KUBE_SERVER"] + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def handler(event: dict[str, Any]) -> None:
    resource = event["detail"]["resource"]
    workload = resource["kubernetesDetails"]["kubernetesWorkloadDetails"]
    namespace, name = workload["namespace"], workload["name"]
    cluster = resource["eksClusterDetails"]["name"]
    incident = event["detail"]["id"]
    pod_path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    policies = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    dry = "?dryRun=All&fieldManager=eks-responder"
    marks = {"eks-responder.io/incident": incident}

    boto3.client("sts").get_caller_identity()
    pod = _kube("GET", pod_path) or {}
    _kube("GET", f"/api/v1/nodes/{pod['spec']['nodeName']}")
    _kube("PATCH", pod_path + dry, {"metadata": {"labels": {**marks, "eks-responder.io/under-investigation": "true"}}})
    s3 = boto3.client("s3")
    with contextlib.suppress(s3.exceptions.ClientError):  # no evidence yet
        s3.head_object(Bucket=os.environ["EVIDENCE_BUCKET"], Key=f"evidence/{incident}/MANIFEST.json")
    _kube("GET", f"{policies}/eks-responder-quarantine")
    deny_all = {"podSelector": {"matchLabels": QUARANTINE}, "policyTypes": ["Ingress", "Egress"]}
    policy = {"metadata": {"name": "eks-responder-quarantine", "labels": marks}, "spec": deny_all}
    _kube("POST", policies + dry, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **policy})
    _kube("GET", "/apis/apps/v1/daemonsets")
    _kube("GET", policies)
    removed = dict.fromkeys(pod["metadata"].get("labels") or {})
    _kube("PATCH", pod_path + dry, {"metadata": {"labels": {**removed, **marks, **QUARANTINE}}})
    account = pod["spec"].get("serviceAccountName") or "default"
    eks = boto3.client("eks")
    with contextlib.suppress(eks.exceptions.ClientError):  # a cluster EKS does not know has no associations
        eks.list_pod_identity_associations(clusterName=cluster, namespace=namespace, serviceAccount=account)
    _kube("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")


if __name__ == "__main__":
    started = float(sys.argv[2])
    handler(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
    print(json.dumps({"ms": (time.time() - started) * 1000}))
