"""The demo's memory-capture step: a node uses the URLs its command carries, then SSM's status
event (the follow-up) is replayed and the capture is reported with its hashes."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from chalicelib.actions.ec2 import memory_document
from devstack import narrate, stack

ROOT = Path(__file__).resolve().parents[1]
STATUS = ROOT / "events" / "ssm" / "memory-capture-succeeded.json"


def _client(env: dict[str, str], service: str) -> Any:
    keys = {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", **keys)


def _as_the_node(parameters: dict[str, list[str]]) -> None:
    """What the document does on the node (AVML does not run here: the image is a stand-in)."""
    with urllib.request.urlopen(parameters["ToolUrl"][0], timeout=10) as got:
        if hashlib.sha256(got.read()).hexdigest() != parameters["ToolSha256"][0]:
            raise RuntimeError("the tool in the bucket does not match AVML_SHA256")
    memory, volatile = b"LiME stand-in " * 4096, b"== processes\nroot 1 /sbin/init\nnobody 4242 /tmp/.x/kworker\n"
    sums = f"{hashlib.sha256(memory).hexdigest()}  memory.lime\n{hashlib.sha256(volatile).hexdigest()}  volatile.txt\n"
    for name, body in (("VolatileUrl", volatile), ("ImageUrl", memory), ("SumsUrl", sums.encode())):
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        headers = {"Content-MD5": md5, "Content-Type": "application/octet-stream"}
        with urllib.request.urlopen(urllib.request.Request(parameters[name][0], body, headers, method="PUT"),
                                    timeout=10):  # fmt: skip
            pass


def run(env: dict[str, str], bucket: str) -> int:
    narrate.say("Memory capture: the node uploads through its presigned URLs, then SSM's status event arrives")
    s3, ssm = _client(env, "s3"), _client(env, "ssm")
    document = memory_document.document_name(env.get("STAGE", "local"))
    commands = [c for c in ssm.list_commands()["Commands"] if c["DocumentName"] == document]
    if not commands:
        print("  no capture was started")
        return 1
    first = commands[0]
    key = f"evidence/{memory_document.CAPTURES_KEY}/{first['CommandId']}.json"
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    _as_the_node(first["Parameters"])
    event = json.loads(STATUS.read_text())
    event["detail"].update({"command-id": first["CommandId"], "instance-id": record["instance"],
                            "document-name": document})  # fmt: skip
    folder = stack.scratch("capture")
    (folder / "memory-capture-status.json").write_text(json.dumps(event))
    cmd = [sys.executable, "-m", "chalicelib.commands.cli", "replay", "--live", str(folder)]
    done = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if "memory capture" in line or "ERROR" in line:
            print(f"  {line.strip()}")
    if len(commands) > 1:
        print(f"  {len(commands) - 1} other capture(s) still running: their status events have not come")
    if done.returncode:
        sys.stderr.write(done.stderr[-2000:])
    return done.returncode
