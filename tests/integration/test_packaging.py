"""The CloudFormation that `chalice package` makes of the app is valid, with our rules and policies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.functions import BY_NAME, FUNCTIONS
from chalicelib.generate import permissions
from chalicelib.sources import patterns
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def _project(tmp_path: Path) -> Path:
    """The project as `make prerequisites` leaves a stage, without dependencies (offline)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "app.py", project)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    left = shutil.ignore_patterns("deployments", "deployed", "package-*")  # what a build leaves behind
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=left)
    # The template does not depend on the dependencies; leaving them out keeps this test offline.
    (project / "requirements.txt").write_text("")
    # As `make prerequisites` leaves a stage: its account and region known, its policies regenerated.
    config_file = project / ".chalice" / "config.json"
    config = json.loads(config_file.read_text())
    stage_env = config["stages"]["prod"]["environment_variables"]
    stage_env.update(POLICY_ACCOUNT_ID="111122223333", POLICY_REGION="us-east-1")
    config_file.write_text(json.dumps(config))
    generated = {}
    for function in FUNCTIONS:
        generated[function.name] = permissions.iam_policy(
            {**config["environment_variables"], **stage_env}, function, "prod"
        )
        (project / ".chalice" / permissions.policy_file("prod", function)).write_text(
            json.dumps(generated[function.name])
        )
    return project


def test_chalice_package_passes_cfn_lint(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    subprocess.run(
        [str(BIN / "chalice"), "package", "--pkg-format", "cloudformation", "--stage", "prod", str(tmp_path / "out")],
        cwd=project, env=env, check=True, capture_output=True,
    )  # fmt: skip
    # As `make package` then does: the stage's delivery guarantees and alarms added to the template.
    sam = str(tmp_path / "out" / "sam.json")
    subprocess.run([sys.executable, "-m", "deploy.delivery", "--stage", "prod", "--template", sam],
                   cwd=ROOT, env=env, check=True, capture_output=True)  # fmt: skip
    template = json.loads((tmp_path / "out" / "sam.json").read_text())
    lint = subprocess.run(
        [str(BIN / "cfn-lint"), "--format", "parseable", str(tmp_path / "out" / "sam.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    functions = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == {
        "OnGuarddutyFinding",
        "OnSecurityhubFinding",
        "OnKmsApiCall",
        "OnKmsKeyEvent",
        "OnEcrImageScan",
        "OnInspectorFinding",
        "OnFlowLogObject",
        "OnFlowLogs",
        "RefreshKeyPolicies",
        "APIHandler",  # the Slack approval route
        "ExpirePlans",
        "OnMemoryCaptureStatus",  # the end of a memory capture
    }
    events = {
        name: next(iter(f["Properties"]["Events"].values()))["Properties"]
        for name, f in functions.items()
        if f["Properties"].get("Events")
    }
    assert "OnFlowLogs" not in events  # subscribed by `make flow-logs`: Chalice cannot
    # One role per function, each with exactly its own generated policy.
    roles = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert len(roles) == len(FUNCTIONS)
    for name, function in functions.items():
        role = roles[function["Properties"]["Role"]["Fn::GetAtt"][0]]
        (policy,) = role["Properties"]["Policies"]
        chalice_name = next(f.name for f in FUNCTIONS if f.name.replace("_", "") == name.lower())
        written = json.loads(
            (project / ".chalice" / permissions.policy_file("prod", BY_NAME[chalice_name])).read_text()
        )
        assert policy["PolicyDocument"] == written, name
    assert events["OnFlowLogObject"]["Pattern"] == patterns.FLOW_LOG_OBJECT
    assert functions["OnFlowLogObject"]["Properties"]["MemorySize"] == 1769  # a full vCPU for the scan
    assert events["OnGuarddutyFinding"]["Pattern"] == patterns.GUARDDUTY_FINDING
    assert events["OnKmsApiCall"]["Pattern"] == patterns.KMS_API_CALL
    assert events["OnSecurityhubFinding"]["Pattern"] == patterns.SECURITYHUB_GUARDDUTY_FINDING
    assert events["OnInspectorFinding"]["Pattern"] == patterns.INSPECTOR_IMAGE_FINDING
    assert events["RefreshKeyPolicies"]["Schedule"] == "rate(1 hour)"
    _delivered_as_stated(template, functions, events)


def _delivered_as_stated(template: dict[str, Any], functions: dict[str, Any], events: dict[str, Any]) -> None:
    from chalicelib.entry import delivery
    from deploy.delivery import logical_id, retry_policy

    queue = template["Resources"]["FailureQueue"]["Properties"]
    assert (queue["QueueName"], queue["MessageRetentionPeriod"], queue["SqsManagedSseEnabled"]) == (
        "eks-responder-prod-failures", 14 * 86400, True)  # fmt: skip
    arn = {"Fn::GetAtt": ["FailureQueue", "Arn"]}
    for wanted in delivery.DELIVERIES:
        function = functions[logical_id(wanted.function)]["Properties"]
        assert function["ReservedConcurrentExecutions"] == wanted.reserved_concurrency, wanted.function.name
        if not wanted.asynchronous:
            assert "EventInvokeConfig" not in function
            continue
        config = function["EventInvokeConfig"]
        assert config["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": arn}
        assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (
            delivery.MAX_RETRY_ATTEMPTS, delivery.MAX_EVENT_AGE_SECONDS)  # fmt: skip
        if wanted.rule:
            event = events[logical_id(wanted.function)]
            assert event["DeadLetterConfig"] == {"Arn": arn}
            assert event["RetryPolicy"] == retry_policy()
        # The on-failure destination sends with the function's own role: its policy allows it.
        role = template["Resources"][function["Role"]["Fn::GetAtt"][0]]["Properties"]["Policies"][0]
        sends = [s for s in role["PolicyDocument"]["Statement"] if "sqs:SendMessage" in s["Action"]]
        assert [s["Resource"] for s in sends] == [["arn:aws:sqs:us-east-1:111122223333:eks-responder-prod-failures"]]
    alarms = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    metrics = {a["Properties"]["MetricName"] for a in alarms}
    assert metrics == {"Throttles", "AsyncEventsDropped", "DestinationDeliveryFailures", "FailedInvocations",
                       "ApproximateNumberOfMessagesVisible"}  # fmt: skip


def test_the_spoke_forwarding_and_memory_capture_templates_pass_cfn_lint() -> None:
    templates = sorted((ROOT / "deploy" / "spoke").glob("spoke-role-*.json"))
    assert [t.name for t in templates] == ["spoke-role-dev.json", "spoke-role-prod.json"]
    templates.append(ROOT / "deploy" / "regions" / "forward-to-hub.json")
    documents = sorted((ROOT / "deploy" / "ssm").glob("memory-capture-*.json"))
    assert [t.name for t in documents] == ["memory-capture-dev.json", "memory-capture-prod.json"]
    templates.extend(documents)
    lint = subprocess.run([str(BIN / "cfn-lint"), "--format", "parseable", *map(str, templates)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_package_step_adds_bytecode_the_runtime_uses(tmp_path: Path) -> None:
    from deploy.bytecode import pyc_name, unchecked_hash

    project = _project(tmp_path)
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    package = [str(BIN / "chalice"), "package", "--stage", "prod"]
    # as `make package` does: build, compile into Chalice's cached package, package again (reused)
    subprocess.run([*package, str(tmp_path / "first")], cwd=project, env=env, check=True, capture_output=True)
    (cached,) = (project / ".chalice" / "deployments").glob("*-python*.zip")
    subprocess.run([sys.executable, "-m", "deploy.bytecode", str(cached)], cwd=ROOT, env=env, check=True)
    subprocess.run([*package, str(tmp_path / "out")], cwd=project, env=env, check=True, capture_output=True)
    with zipfile.ZipFile(tmp_path / "out" / "deployment.zip") as zipped:
        names = set(zipped.namelist())
        sources = [n for n in names if n.endswith(".py")]
        assert "app.py" in sources
        assert "chalicelib/settings.py" in sources
        missing = [s for s in sources if pyc_name(s) not in names]
        assert missing == []
        assert all(unchecked_hash(zipped.read(pyc_name(s))) for s in sources)
        assert "chalicelib/flowlogs/_prefilter.abi3.so" in names  # the flow-log scanner's compiled pass
        task = tmp_path / "task"
        zipped.extractall(task)
    # Lambda's /var/task: read-only, file times whatever the unzip gave. A source changed after the
    # package was built is not even read: the unchecked-hash bytecode is what runs.
    (task / "chalicelib" / "settings.py").write_text("this is not Python\n")
    for path in task.rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        check = "import chalicelib.settings as s, chalicelib.flowlogs.detect as d; print(s.Settings().stage, d._keep)"
        ran = subprocess.run([sys.executable, "-c", check],
                             cwd=task, capture_output=True, text=True, check=False,
                             env={**env, "PYTHONPATH": str(task)})  # fmt: skip
    finally:
        for path in task.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "local <built-in function keep>"
