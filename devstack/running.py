"""A local stack that stays up to experiment with: `make stack` starts and seeds it, `make stack-down`
stops it and removes everything it wrote.

    python -m devstack.running up [--workdir DIR]     # start, seed, print how to use it
    python -m devstack.running down [--workdir DIR]   # stop it, remove DIR
    python -m devstack.running env [--workdir DIR]    # the environment to export, as shell lines

The stack is the one `make demo` and the tests use (a real kube-apiserver and etcd, a moto server,
the `demo` cluster seeded), started in DIR (`.stack/` in the project by default) and left running:
its processes are in sessions of their own, their ids in DIR/state.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = ROOT / ".stack"
TABLE = "eks-responder-local-incidents"  # as `make prerequisites STAGE=local` names it
EXAMPLE = "events/guardduty/execution-runtime-reverse-shell.json"


def _state(workdir: Path) -> dict[str, Any] | None:
    path = workdir / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return " Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    except OSError:
        return True


def up(workdir: Path) -> int:
    from devstack import seed, stack

    state = _state(workdir)
    if state and any(_alive(p) for p in state["pids"].values()):
        print(f"the local stack is already running in {workdir}: `make stack-down` first", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    running = stack.start(workdir=workdir, log=lambda m: print(f"    {m}", flush=True))
    try:
        seeded = seed.seed(running)
        env = {**running.env(), **_prerequisites(running, seeded), "DRY_RUN": "false", "CLUSTERS": "demo",
               "STAGE": "local", "MAX_NODES_CORDONED_PER_HOUR": "3", "AVML_SHA256": seed.AVML_SHA256}  # fmt: skip
    except BaseException:
        running.stop()
        raise
    pids = {name: proc.pid for name, proc in running.processes}
    (workdir / "state.json").write_text(json.dumps({"pids": pids, "env": env, "queue_url": seeded.queue_url}))
    (workdir / "env.sh").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
    print(_usage(workdir, running, seeded.queue_url))
    return 0


def _prerequisites(running: Any, seeded: Any) -> dict[str, str]:
    """The stage's incident table (as `make prerequisites` makes it: point-in-time recovery, deletion
    protection) and failure queue, in moto, beside the seeded evidence bucket and topic. The bucket
    stays the seed's: the stage's own denies every request without TLS, and moto speaks plain HTTP.
    Nothing is written into .chalice/config.json."""
    import boto3

    from chalicelib.entry import delivery as values
    from deploy import delivery

    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    session = boto3.session.Session(region_name="us-east-1", **keys)
    os.environ["AWS_ENDPOINT_URL"] = running.moto_url  # the session's clients talk to moto
    dynamodb = session.client("dynamodb")
    dynamodb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")  # fmt: skip
    delivery.protect_table(session, TABLE)
    queue = delivery.ensure_queue(session, "local", "123456789012")[0]
    assert queue.endswith(values.queue_name("local")), queue
    return {
        "INCIDENTS_TABLE": TABLE,
        "FAILURE_QUEUE_URL": queue,
        "EVIDENCE_BUCKET": seeded.evidence_bucket,
        "SNS_TOPIC_ARN": seeded.topic_arn,
    }


def _usage(workdir: Path, running: Any, queue_url: str) -> str:
    shown = workdir.relative_to(ROOT) if workdir.is_relative_to(ROOT) else workdir
    return f"""
The local stack is up (cluster `demo`: 4 nodes, their EC2 instances in moto, a Deployment, pods).

  Kubernetes API   {running.apiserver_url}
    as admin       KUBECONFIG={running.admin_kubeconfig}
    as responder   KUBECONFIG={running.responder_kubeconfig}   (the generated ClusterRole only)
  AWS (moto)       {running.moto_url}   (credentials: testing / testing, us-east-1)
  Incident table   {TABLE}
  SNS messages     read back from {queue_url}

Use it (the environment of a live stage, pointed at the stack):

  source {shown}/env.sh
  .venv/bin/eks-responder replay --apply -v {EXAMPLE} 2>>{shown}/audit.jsonl
  .venv/bin/eks-responder report <incident id> --from {shown}/audit.jsonl --format markdown   # its timeline
  .venv/bin/eks-responder approve <incident id> --step N   # a step that waits for a human
  .venv/bin/eks-responder release <incident id>         # put back what it changed
  .venv/bin/eks-responder doctor                        # the stage's checks, against the stack
  KUBECONFIG={running.admin_kubeconfig} kubectl get pods -A -L eks-responder.io/quarantine

Stop it (and remove {shown}/): make stack-down
"""


def down(workdir: Path) -> int:
    state = _state(workdir)
    if state is None:
        print(f"no local stack in {workdir}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    # Only the stack's own processes: a pid reused since (or a state file edited) is left alone.
    pids = [pid for name, pid in state["pids"].items() if _is(pid, name)]
    for pid in reversed(pids):  # moto, the API server, then etcd
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
    _gone(pids, 10)
    for pid in pids:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    _gone(pids, 10)  # a killed process is gone only once the kernel has reaped it
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"the local stack is stopped; {workdir} removed")
    return 0


def _is(pid: int, name: str) -> bool:
    """Whether `pid` runs the stack's `name` (etcd, kube-apiserver, moto) still."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return {"moto": "moto_server"}.get(name, name) in command


def _gone(pids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
        _reap(pids)


def _reap(pids: list[int]) -> None:
    """Children of this process (a test that started the stack) are waited for, so they go."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.running", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the stack lives (.stack/)")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if args.command == "up":
        return up(workdir)
    if args.command == "down":
        return down(workdir)
    state = _state(workdir)
    if state is None:
        print("no local stack: `make stack`", file=sys.stderr)
        return 1
    print((workdir / "env.sh").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
