"""`make demo`: start the local stack, seed a cluster, replay events/ live, show what changed, stop."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import yaml
from lightkube.generic_resource import create_global_resource
from lightkube.resources.core_v1 import ConfigMap, Node, Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding

from chalicelib.actions.ec2.capture_memory import CAPTURE_TAG
from chalicelib.actions.k8s.block_image import IMAGE_ANNOTATION, IMAGE_BLOCKS, IMAGE_BLOCKS_NAMESPACE
from chalicelib.interfaces import INCIDENT_LABEL, INVESTIGATION_LABEL, QUARANTINE_LABEL
from devstack import accounts_demo, approval_demo, capture_demo, narrate, outputs_demo, securityhub_demo, seed, stack

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_POLICY = create_global_resource("kyverno.io", "v1", "ClusterPolicy", "clusterpolicies")


say = narrate.say


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
    blocks = client.get(ConfigMap, IMAGE_BLOCKS, namespace=IMAGE_BLOCKS_NAMESPACE)
    for entry, references in sorted((blocks.data or {}).items()):
        print(f"  image block {entry} (ValidatingAdmissionPolicy {IMAGE_BLOCKS}): denies new pods using "
              f"{', '.join(references.splitlines())}")  # fmt: skip
    for blocked in client.list(CLUSTER_POLICY):
        image = (blocked.metadata.annotations or {}).get(IMAGE_ANNOTATION, "?")
        print(f"  kyverno clusterpolicy {blocked.metadata.name}: denies pods using {image}")
    for policy in client.list(NetworkPolicy, namespace="*"):
        spec = policy.spec
        print(
            f"  networkpolicy {policy.metadata.namespace}/{policy.metadata.name}: selects "
            f"{spec.podSelector.matchLabels}, denies {' and '.join(spec.policyTypes or [])}"
        )


def _client(env: dict[str, str], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def _show_instances(env: dict[str, str], seeded: seed.SeededCluster) -> None:
    say("What changed in AWS (moto)")
    ec2, autoscaling, elbv2 = _client(env, "ec2"), _client(env, "autoscaling"), _client(env, "elbv2")
    serving: dict[str, list[str]] = {}
    for group in elbv2.describe_target_groups()["TargetGroups"]:
        for target in elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]:
            serving.setdefault(target["Target"]["Id"], []).append(group["TargetGroupName"])
    names = {g["GroupId"]: g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    for instance_id, node in seeded.nodes.items():
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        groups = sorted(
            {names.get(g["GroupId"], g["GroupId"]) for e in found["NetworkInterfaces"] for g in e["Groups"]}
        )
        protected = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiTermination")
        scaling = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
        tagged = [{"Name": "volume-id", "Values": [m["Ebs"]["VolumeId"] for m in found["BlockDeviceMappings"]]},
                  {"Name": "tag-key", "Values": ["eks-responder:incident"]}]  # fmt: skip
        snapshots = ec2.describe_snapshots(OwnerIds=["self"], Filters=tagged)["Snapshots"]
        addresses = {a["PrivateIpAddress"] for e in found["NetworkInterfaces"] for a in e["PrivateIpAddresses"]}
        targets = sorted({g for key in (instance_id, *addresses) for g in serving.get(key, [])})
        capture = {t["Key"]: t["Value"] for t in found.get("Tags", [])}.get(CAPTURE_TAG, "")
        print(
            f"  {instance_id} ({node}): {len(found['NetworkInterfaces'])} ENIs in {', '.join(groups)}; "
            f"termination protection {'on' if protected['DisableApiTermination']['Value'] else 'off'}; "
            f"scale-in protection {'on' if scaling and scaling[0]['ProtectedFromScaleIn'] else 'off'}; "
            f"{scaling[0]['LifecycleState'] if scaling else 'no Auto Scaling group'}; "
            f"load balancer targets: {', '.join(targets) or 'none'}; {len(snapshots)} snapshot(s)"
            f"{'; memory capture started (SSM command ' + capture.split('/')[0] + ')' if capture else ''}"
        )
    for acl in ec2.describe_network_acls()["NetworkAcls"]:
        for entry in acl["Entries"]:
            if entry["RuleAction"] == "deny" and entry["RuleNumber"] < 32767:
                direction = "outbound" if entry["Egress"] else "inbound"
                print(f"  {acl['NetworkAclId']} rule {entry['RuleNumber']}: deny {direction} {entry.get('CidrBlock')}")


def _show_identities(env: dict[str, str], client: Any) -> None:
    say("What changed for identities")
    iam = _client(env, "iam")
    for role in iam.list_roles()["Roles"]:
        if "eks-responder-revoke-older-sessions" in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            print(f"  role {role['RoleName']}: sessions issued before the incident are denied")
    mapped = yaml.safe_load(client.get(ConfigMap, "aws-auth", namespace="kube-system").data.get("mapRoles") or "[]")
    print(f"  aws-auth still maps: {', '.join(m['rolearn'].rsplit('/', 1)[-1] for m in mapped) or 'nothing'}")
    names = {b.metadata.name for b in client.list(ClusterRoleBinding)} | {
        f"{b.metadata.namespace}/{b.metadata.name}" for b in client.list(RoleBinding, namespace="*")
    }
    for binding in ("anonymous-view", "tools/default-admin"):
        print(f"  binding {binding}: {'still there' if binding in names else 'deleted'}")


def _show_sns(env: dict[str, str], queue_url: str) -> None:
    say("Messages published to SNS (moto), read back from its SQS subscriber")
    sqs = _client(env, "sqs")
    subjects = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            subjects.append(json.loads(message["Body"])["Subject"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    if narrate.VERBOSE:
        for subject in subjects:
            print(f"  {subject}")
    else:
        severities = collections.Counter(s.removeprefix("[DRY-RUN] ").split("]")[0].strip("[") for s in subjects)
        print("  " + ", ".join(f"{n} {k}" for k, n in severities.most_common()))
    print(f"  {len(subjects)} messages")


def _show_evidence(env: dict[str, str], bucket: str) -> None:
    say(f"Evidence in s3://{bucket} (moto)")
    s3 = _client(env, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    manifests = [k for k in keys if k.endswith("MANIFEST.json")]
    for key in manifests if narrate.VERBOSE else manifests[:2]:
        print(f"  {key}")
    print(f"  {len(keys)} objects in {len(manifests)} bundles, each with a SHA-256 MANIFEST.json")


DEMO_DIR = ROOT / ".demo"
AUDIT_LOG = DEMO_DIR / "audit.jsonl"


def _timeline(env: dict[str, str]) -> int:
    """The timeline of the incident that did the most, as `eks-responder report` writes it."""
    done: dict[str, int] = {}
    for line in AUDIT_LOG.read_text().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("message") == "action" and record.get("status") == "succeeded":
            done[record["incident_id"]] = done.get(record["incident_id"], 0) + 1
    if not done:
        say("No incident did anything: no timeline")
        return 1
    incident = max(done, key=lambda i: done[i])
    page = DEMO_DIR / f"timeline-{incident}.html"
    cmd = [
        sys.executable,
        "-m",
        "chalicelib.commands.cli",
        "report",
        incident,
        "--from",
        str(AUDIT_LOG),
        "--output",
        str(page),
    ]
    written = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
    say(f"Timeline of incident {incident} ({done[incident]} steps succeeded): {page.relative_to(ROOT)}")
    if written.returncode:
        sys.stderr.write(written.stderr[-2000:])
    return written.returncode


def main() -> int:
    started = time.monotonic()
    say("Starting the local stack (real kube-apiserver + etcd, moto server)")
    with stack.start(log=lambda m: print(f"    {m}", flush=True)) as running:
        say("Seeding cluster 'demo': 4 worker nodes (EC2 instances in moto), a Deployment, a DaemonSet, pods")
        seeded = seed.seed(running)
        env = {**os.environ, **running.env(), "EVIDENCE_BUCKET": seeded.evidence_bucket, "DRY_RUN": "false",
               "MAX_NODES_CORDONED_PER_HOUR": "3", "SNS_TOPIC_ARN": seeded.topic_arn,
               "CLUSTERS": "demo", "AVML_SHA256": seed.AVML_SHA256}  # fmt: skip
        say("Replaying events/ live, as the responder identity (RBAC: the generated ClusterRole only)")
        story = narrate.Story()
        code = _replay(env, story)
        with seed.admin_client(running) as client:
            _show_cluster(client)
            _show_identities(env, client)
        _show_instances(env, seeded)
        _show_evidence(env, seeded.evidence_bucket)
        _show_sns(env, seeded.queue_url)
        with seed.admin_client(running) as client:
            code = approval_demo.run(env, client) or code
        code = capture_demo.run(env, seeded.evidence_bucket) or code
        code = _timeline(env) or code
        code = securityhub_demo.run(env) or code
        with seed.admin_client(running) as client:
            code = outputs_demo.run(env, client) or code
        code = accounts_demo.run(env) or code
        say("Stopping everything the demo started")
    say(f"Done in {time.monotonic() - started:.0f} s (replay exit code {code})")
    for line in story.summary():
        print(f"  {line}")
    print("  (every message and detail: DEMO_VERBOSE=1 make demo)" if not narrate.VERBOSE else "")
    return code


def _replay(env: dict[str, str], story: narrate.Story) -> int:
    """events/ through the CLI, live; told briefly (the JSON results), or in full with -v."""
    DEMO_DIR.mkdir(exist_ok=True)
    brief = [] if narrate.VERBOSE else ["--json"]
    shown = ["--show-messages"] if narrate.VERBOSE else []
    cmd = [sys.executable, "-m", "chalicelib.commands.cli", "replay", "--live", "--apply", *shown, *brief, "-v",
           str(ROOT / "events")]  # fmt: skip
    with AUDIT_LOG.open("w") as audit:  # the audit trail (JSON lines), for the timeline below
        if narrate.VERBOSE:
            return subprocess.run(cmd, env=env, check=False, stderr=audit).returncode
        done = subprocess.run(cmd, env=env, check=False, stderr=audit, stdout=subprocess.PIPE, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            story.tell(json.loads(line))
    story.said_once()
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
