"""The flow-log Lambda path: one S3 delivery of 1 M records through `on_flow_log_object`, against moto.

The bench's 1 M-record default-format file (bench/flowlogs.py generates and caches it) is put in a
bucket of a moto server on loopback with its threat list, and each round a new process does what
a cold Lambda invocation does: `import app`, then the function's handler with the EventBridge
`Object Created` event (Chalice and Powertools middleware, the invocation's deadline), which
streams the object from S3, scans it, attributes and plans every incident in dry run (no
cluster is configured: the plans say so) and returns the report. moto runs in this process, the
handler in the child, so the figure is the function's own.

Printed: the handler's CPU seconds and wall time, and what Lambda bills for it: the duration times
the configured memory (GB-s) and the price of that per million records at the x86 on-demand
rate. A figure, with no goal: what a delivery costs.

    make bench        # or: .venv/bin/python bench/flow_lambda.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import goals

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BUCKET = "flow-logs"
KEY = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/12/07/123456789012_vpcflowlogs_us-east-1_fl-1_bench.log.gz"
PRICE_PER_GB_S = 0.0000166667  # Lambda, x86, us-east-1, the first 6 billion GB-s of a month


def _memory_mb() -> int:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return int(config["stages"]["prod"]["lambda_functions"]["on_flow_log_object"]["lambda_memory_size"])


class _Context:
    """What Lambda hands the handler: its name, memory and the time left."""

    function_name = "eks-responder-bench-on_flow_log_object"
    aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:eks-responder-bench-on_flow_log_object"

    def __init__(self, memory_mb: int, timeout_s: float = 600.0) -> None:
        self.memory_limit_in_mb = memory_mb
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _invoke(memory_mb: int) -> dict[str, Any]:
    """The child: a cold start and one invocation, timed."""
    started_cpu, started = time.process_time(), time.perf_counter()
    import app

    imported_cpu, imported = time.process_time(), time.perf_counter()
    event = {"version": "0", "id": "bench-object", "source": "aws.s3", "detail-type": "Object Created",
             "account": "123456789012", "region": "us-east-1", "time": "2026-12-07T00:00:00Z", "resources": [],
             "detail": {"bucket": {"name": BUCKET}, "object": {"key": KEY}}}  # fmt: skip
    result = app.on_flow_log_object(event, _Context(memory_mb))
    done_cpu, done = time.process_time(), time.perf_counter()
    (delivery,) = result["deliveries"]
    return {"init_cpu_s": imported_cpu - started_cpu, "init_s": imported - started,
            "cpu_s": done_cpu - imported_cpu, "duration_s": done - imported, "records": delivery["records"],
            "incidents": len(delivery.get("results") or []), "error": delivery.get("error")}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--invoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    memory = _memory_mb()
    if args.invoke:
        print(json.dumps(_invoke(memory)))
        return 0

    import logging

    import boto3
    import flowlogs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    path = flowlogs._files(1_000_000, ("v2",))["v2"]
    threats = flowlogs.CACHE / f"threats-seed{flowlogs.SEED}.txt"
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "STAGE": "bench", "DRY_RUN": "true", "FLOW_LOGS_BUCKET": BUCKET,
           "THREAT_LIST": f"s3://{BUCKET}/threats.txt", "POWERTOOLS_LOG_LEVEL": "ERROR",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory)}  # fmt: skip
    try:
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(path), BUCKET, KEY)
        s3.upload_file(str(threats), BUCKET, "threats.txt")
        runs = []
        for _ in range(args.rounds):
            done = subprocess.run([sys.executable, __file__, "--invoke"], env=env, check=True, capture_output=True,
                                  text=True)  # fmt: skip
            runs.append(json.loads(done.stdout.splitlines()[-1]))
    finally:
        server.stop()
    run = sorted(runs, key=lambda r: r["duration_s"])[len(runs) // 2]
    if run["error"]:
        print(f"the delivery failed: {run['error']}")
        return 1
    gb_s = run["duration_s"] * memory / 1024
    per_million = gb_s * PRICE_PER_GB_S * 1_000_000 / run["records"]
    print(f"flow-log Lambda, {run['records']:,} records, {run['incidents']} incidents planned, at {memory} MB: "
          f"{run['cpu_s']:.2f} s CPU, {run['duration_s']:.2f} s ({gb_s:.2f} GB-s, ${per_million:.6f} per million "
          f"records); cold init {run['init_s'] * 1000:.0f} ms; median of {len(runs)}")  # fmt: skip
    goals.record("flow-log Lambda: 1 M records, CPU / duration", f"{run['cpu_s']:.2f} s / {run['duration_s']:.2f} s",
                 "", None)  # fmt: skip
    goals.record(f"flow-log Lambda: GB-s at {memory} MB, per M records", f"{gb_s:.2f} GB-s, ${per_million:.6f}",
                 "", None)  # fmt: skip
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
