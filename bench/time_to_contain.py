"""Time to contain on the local stack, as the Lambda handles findings: warm and fresh containers.

The stack is started and seeded as `make demo` does (a real kube-apiserver and etcd, moto); the
GuardDuty reverse-shell finding about `payments/web-…` is handled through the Lambda's own path
(`wiring.handle_event`) in dry run — every read real, every write sent with the APIs' dry run —
so each of the 200 findings (a new finding id each) does the same work:

- warm: one process, 200 findings in a row, from receipt to the report (the last step done);
- fresh: 20 new processes, one finding each, from process start to the report;
- calls: the HTTP requests one warm incident makes, by API and verb.

    make bench            # or: .venv/bin/python bench/time_to_contain.py --findings 200
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import goals

ROOT = Path(__file__).resolve().parent.parent
EVENT = ROOT / "events" / "guardduty" / "execution-runtime-reverse-shell.json"
ONE = """
import json, sys, time
started = float(sys.argv[2])
from chalicelib.entry import wiring
event = json.load(open(sys.argv[1]))
result = wiring.handle_event(event)
assert result.get("rule") == "compromised-pod", result
print(json.dumps({"ms": (time.time() - started) * 1000}))
"""


def _event(index: int) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event["id"] = f"bench-{index:08d}-0000-4000-8000-000000000000"
    event["detail"]["id"] = f"{index:032x}"
    return event


def _counted() -> collections.Counter[str]:
    """Count every HTTP request botocore and lightkube send from now on, by API and verb."""
    import botocore.client

    from chalicelib.executors.kube_http import KubeClient

    counts: collections.Counter[str] = collections.Counter()
    call = botocore.client.BaseClient._make_api_call

    def aws(self: Any, operation: str, params: Any) -> Any:
        counts[f"aws {self.meta.service_model.service_name} {operation}"] += 1
        return call(self, operation, params)

    botocore.client.BaseClient._make_api_call = aws
    kube_send = KubeClient.request

    def kube(self: KubeClient, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        parts = [p for p in path.split("/") if p]
        kind = next((p for p in reversed(parts) if not p[0].isdigit() and p not in {"v1", "api", "apis"}), "?")
        counts[f"kubernetes {method} {kind}"] += 1
        return kube_send(self, method, path, *args, **kwargs)

    KubeClient.request = kube  # type: ignore[method-assign]
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", type=int, default=200)
    parser.add_argument("--fresh", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from devstack import seed, stack

    with stack.start() as running:
        seeded = seed.seed(running)
        env = {**running.env(), "EVIDENCE_BUCKET": seeded.evidence_bucket, "DRY_RUN": "true", "CLUSTERS": "demo",
               "POWERTOOLS_TRACE_DISABLED": "true", "STAGE": "bench"}  # fmt: skip
        os.environ.update(env)
        from chalicelib.entry import wiring

        wiring.reset()
        counts = _counted()
        warm = []
        for index in range(args.findings + 1):
            event = _event(index)
            started = time.perf_counter()
            result = wiring.handle_event(event)
            warm.append((time.perf_counter() - started) * 1000)
            assert result.get("rule") == "compromised-pod", result
            if index == 0:
                first = dict(counts)  # the first incident of the container: clients and tokens made
                counts.clear()
        per_incident = {k: v / args.findings for k, v in counts.items()}
        fresh = []
        folder = Path(running.env().get("TMPDIR", "/tmp"))
        for index in range(args.fresh):
            path = folder / f"eks-responder-bench-event-{index}.json"
            path.write_text(json.dumps(_event(10_000 + index)))
            out = subprocess.run([sys.executable, "-c", ONE, str(path), str(time.time())], cwd=ROOT, check=True,
                                 capture_output=True, text=True, env={**os.environ, **env})  # fmt: skip
            fresh.append(json.loads(out.stdout.strip().splitlines()[-1])["ms"])
            path.unlink()
    steady = sorted(warm[1:])
    p99 = steady[max(0, int(len(steady) * 0.99) - 1)]
    print(f"warm container: {args.findings} findings, p50 {statistics.median(steady):.1f} ms, p99 {p99:.1f} ms "
          f"(first of the container {warm[0]:.0f} ms)")  # fmt: skip
    print(f"fresh containers: {args.fresh} processes, process start to report: p50 {statistics.median(fresh):.0f} ms, "
          f"max {max(fresh):.0f} ms")  # fmt: skip
    print(f"requests per incident (warm): {sum(per_incident.values()):.1f}")
    for key, value in sorted(per_incident.items(), key=lambda kv: -kv[1]):
        print(f"  {value:5.1f}  {key}")
    print(f"requests of the container's first incident: {sum(first.values())}")
    goals.record("time to contain, warm: p50 / p99", f"{statistics.median(steady):.1f} / {p99:.1f} ms", "", None)
    goals.record("time to contain, fresh process: p50", f"{statistics.median(fresh):.0f} ms", "", None)
    goals.record("requests per incident", f"{sum(per_incident.values()):.0f}", "", None)
    for name, (reads, writes) in sorted(_changed(per_incident).items()):
        goals.record(f"  {name}: reads, writes", f"{reads:g}, {writes:g}", "<= 1, <= 1", reads <= 1 and writes <= 1)
    listed = sum(v for k, v in per_incident.items() if k == "kubernetes GET pods")
    goals.record("  lists of every pod", f"{listed:g}", "0", listed == 0)
    return 0


def _changed(per_incident: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Reads and writes of each Kubernetes object the incident writes (`kubernetes VERB name`)."""
    verbs: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for key, count in per_incident.items():
        api, verb, name = key.split(" ", 2)
        if api == "kubernetes":
            verbs[name][verb] = verbs[name].get(verb, 0) + count
    return {f"{name}" : (v.get("GET", 0), v.get("PATCH", 0) + v.get("PUT", 0))
            for name, v in verbs.items() if "PATCH" in v or "PUT" in v}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
