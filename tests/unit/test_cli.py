from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.commands.cli import main
from tests.conftest import EVENTS, GUARDDUTY_SAMPLES, sample_files


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["replay", "--json", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_replay_samples_folder_prints_one_object_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, results, _ = _run(capsys, str(GUARDDUTY_SAMPLES))
    assert code == 0
    assert len(results) == len(sample_files())
    assert [r["event"] for r in results] == [str(p) for p in sample_files()]
    for result in results:
        assert result["source"] == "guardduty"
        assert set(result["incident"]) >= {
            "id",
            "type",
            "severity",
            "cluster",
            "namespace",
            "pods",
            "node",
            "instance_id",
        }
        assert result["rule"] or result["reason"]
        assert result["mode"] == "plan"


def test_replay_events_folder_plans_actions(capsys: pytest.CaptureFixture[str]) -> None:
    code, results, _ = _run(capsys, str(EVENTS))
    assert code == 0
    # a memory capture's status event is described, not planned (tests/unit/test_memory_document.py)
    captures = [r for r in results if "capture" in r]
    assert [r["capture"]["status"] for r in captures] == ["Failed", "Success"]
    planned = [a for r in results if "capture" not in r for a in r["actions"]]
    assert {a["action"] for a in planned} >= {"k8s:isolate-pod", "k8s:cordon-node", "k8s:capture-pod"}
    assert all(set(a) >= {"action", "target", "status", "detail"} for a in planned)


def test_bad_inputs_give_errors_and_the_rest_still_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-empty.json").write_text("")
    (tmp_path / "b-not-json.json").write_text("{oops")
    (tmp_path / "c-list.json").write_text("[1, 2]")
    (tmp_path / "d-wrong-types.json").write_text(
        json.dumps(
            {
                "schemaVersion": "2.0",
                "type": 5,
                "resource": [],
                "id": "x",
                "accountId": 1,
                "region": "r",
                "severity": "x",
            }
        )
    )
    (tmp_path / "e-huge.json").write_bytes(b"{" + b" " * (11 * 1024 * 1024) + b"}")
    (tmp_path / "f-binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "f-deep.json").write_text("[" * 5000 + "]" * 5000)
    (tmp_path / "f-flow-payload.json").write_text(json.dumps({"awslogs": ["not", "an", "object"]}))
    good = EVENTS / "guardduty" / "execution-kubernetes-exec-in-kube-system-pod.json"
    (tmp_path / "g-good.json").write_text(good.read_text())
    code, results, err = _run(capsys, str(tmp_path))
    assert code == 2
    assert err == ""  # no traceback
    errors = {Path(str(r["event"])).name: str(r.get("error")) for r in results}
    assert errors["a-empty.json"] == "empty file"
    assert errors["b-not-json.json"].startswith("not JSON")
    assert "expected a JSON object" in errors["c-list.json"]
    assert "is not a valid" in errors["d-wrong-types.json"]
    assert "more than the" in errors["e-huge.json"]
    assert errors["f-binary.json"] == "not UTF-8 text"
    assert errors["f-deep.json"] == "JSON nested too deeply to be an event"
    assert "no awslogs.data" in errors["cloudwatch-logs-payload"]  # a payload is named by its origin
    assert errors["g-good.json"] == "None"
    assert results[-1]["rule"] == "compromised-pod"


def test_missing_path_is_an_error_not_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    code, results, _ = _run(capsys, "/nonexistent/event.json")
    assert code == 2
    assert "cannot read" in str(results[0]["error"])


def test_invalid_rules_file_stops_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: broken\n    actions: [{action: k8s:nope}]\n")
    code = main(["replay", "--rules", str(rules), str(EVENTS)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "rule 'broken', action #1: unknown action 'k8s:nope'" in err


def test_human_output_names_rule_and_actions(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(EVENTS / "guardduty" / "execution-kubernetes-exec-in-kube-system-pod.json")])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "rule: compromised-pod" in out
    assert "skipped   k8s:isolate-pod" in out


def test_check_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-rules"]) == 0
    assert "valid" in capsys.readouterr().out


def test_kms_samples_plan_reversals_for_a_protected_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import SAMPLES

    monkeypatch.setenv("PROTECTED_KEYS", "1234abcd-12ab-34cd-56ef-1234567890ab")
    code, results, _ = _run(capsys, str(SAMPLES / "kms"))
    assert code == 0
    assert len(results) == len(list((SAMPLES / "kms").rglob("*.json")))
    by_name = {Path(str(r["event"])).name: r for r in results}
    planned = {
        a["action"] for a in by_name["CloudTrail_ScheduleKeyDeletion.json"]["actions"] if a["status"] == "planned"
    }
    assert planned == {"kms:cancel-key-deletion", "kms:enable-key"}
    other_key = by_name["CloudTrail_ScheduleKeyDeletion.3.json"]["actions"][0]
    assert other_key["status"] == "skipped"
    assert "not protected" in other_key["detail"]
    for name in ("CloudTrail_Decrypt.json", "CloudTrail_GetKeyPolicy.json", "CloudTrail_Decrypt.4.json"):
        assert by_name[name]["actions"] == []
        assert by_name[name]["reason"]
    assert "failed" in by_name["CloudTrail_Decrypt.4.json"]["reason"]


def test_replay_of_every_image_sample(capsys: pytest.CaptureFixture[str]) -> None:
    folder = GUARDDUTY_SAMPLES.parent / "ecr"
    code, results, _ = _run(capsys, str(folder))
    assert code == 0
    assert len(results) == len(list(folder.glob("*.json")))
    for result in results:
        planned = [a["action"] for a in result["actions"]]
        if result["incident"]["severity"] == "critical":
            assert planned == ["k8s:label-pod", "k8s:block-image"], result["event"]
            assert result["actions"][0]["target"].endswith(f"<pods running {result['incident']['details']['digest']}>")
            assert any("CLUSTERS" in note for note in result["notes"])
        else:
            assert planned == [], result["event"]
            assert result["reason"], result["event"]


def test_replay_of_flow_log_files_in_plan_and_human_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import SAMPLES

    flows = SAMPLES / "flowlogs"
    gz = tmp_path / "flows.log.gz"
    import gzip

    gz.write_bytes(gzip.compress(b"2 123456789012 eni-1 10.0.0.8 81.2.69.77 40000 3333 6 3 300 1 2 ACCEPT OK\n"))
    code, results, _ = _run(capsys, str(flows / "v2_default_nodata_skipdata.log"), str(gz))
    assert code == 0
    quiet, mining = results
    assert quiet["reason"] == "no finding in 2 record(s)"
    assert quiet["delivery"]["nodata_or_skipdata"] == 2
    assert quiet["delivery"]["compiled_first_pass"] is True
    assert mining["incident"]["type"] == "Impact:FlowLogs/MiningPoolConnection"
    assert (mining["rule"], mining["mode"]) == ("flow-not-attributed", "plan")
    assert main(["replay", str(flows / "v3_custom_nat_gateway.log"), str(gz)]) == 0
    text = capsys.readouterr().out
    assert "did not fit the format (--flow-format" in text
    assert "Impact:FlowLogs/MiningPoolConnection" in text
    fitted = main(["replay", "--json", "--flow-format", str(flows / "v3_custom_nat_gateway.format.txt"),
                   str(flows / "v3_custom_nat_gateway.log")])  # fmt: skip
    assert fitted == 0
    assert json.loads(capsys.readouterr().out)["delivery"]["malformed"] == 0


@pytest.mark.parametrize(
    ("flags", "dry_run_env", "expected"),
    [
        ([], None, "plan"),
        (["--live"], None, "dry-run"),
        # A live replay that changes things is asked for by name: DRY_RUN=false alone is not enough.
        (["--live"], "false", "dry-run"),
        (["--live", "--apply"], None, "live"),
        (["--apply"], "false", "live"),
        # DRY_RUN=true still wins over --apply.
        (["--live", "--apply"], "true", "dry-run"),
    ],
)
def test_replay_changes_things_only_with_apply(
    flags: list[str], dry_run_env: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from chalicelib.commands.cli import _mode

    if dry_run_env is None:
        monkeypatch.delenv("DRY_RUN", raising=False)
    else:
        monkeypatch.setenv("DRY_RUN", dry_run_env)
    args = argparse.Namespace(live="--live" in flags or "--apply" in flags, apply="--apply" in flags)
    assert _mode(args).value == expected


def test_an_internal_failure_on_one_input_is_told_and_the_rest_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.entry import intake

    calls = {"n": 0}
    real = intake.handle

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(intake, "handle", flaky)
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text((EVENTS / "guardduty" / "execution-runtime-reverse-shell.json").read_text())
    code, results, _ = _run(capsys, str(tmp_path))
    assert code == 2
    assert [Path(r["event"]).name for r in results] == ["a.json", "b.json"]
    assert results[0]["error"] == "internal error: RuntimeError: boom"
    assert results[1]["rule"] == "compromised-pod"


def test_an_offline_replay_of_an_s3_event_contacts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.entry import wiring

    def no_aws() -> None:
        raise AssertionError("an offline plan must not build an AWS session")

    monkeypatch.setattr(wiring, "aws_session", no_aws)
    monkeypatch.setenv("FLOW_LOGS_BUCKET", "flow-logs")
    key = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/28/123456789012_vpcflowlogs_us-east-1_fl-1_x.log.gz"
    event = {"version": "0", "id": "s3-1", "source": "aws.s3", "detail-type": "Object Created",
             "account": "123456789012", "region": "us-east-1",
             "detail": {"bucket": {"name": "flow-logs"}, "object": {"key": key}}}  # fmt: skip
    path = tmp_path / "s3-event.json"
    path.write_text(json.dumps(event))
    code, results, _ = _run(capsys, str(path))
    assert code == 0
    (result,) = results
    assert result["reason"] == f"an offline plan reads nothing: replay with --live to read s3://flow-logs/{key}"


def test_a_duplicate_is_printed_as_one_and_is_not_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.entry import intake

    said = {"event_id": "e", "incident_id": "0f58", "duplicate": True, "reason": "already handled at severity high"}
    monkeypatch.setattr(intake, "handle", lambda *_, **__: dict(said))
    event = str(EVENTS / "guardduty" / "execution-runtime-reverse-shell.json")
    assert main(["replay", "--json", event]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result == {"event": event, "incident_id": "0f58", "duplicate": True, "reason": said["reason"]}
    assert main(["replay", event]) == 0
    assert "duplicate of incident 0f58: already handled at severity high" in capsys.readouterr().out


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"eks-responder {metadata.version('eks-responder')}"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _flow_file(tmp_path: Path, records: int) -> Path:
    lines = (EVENTS / "flowlogs" / "vpc-flow-logs-demo.log").read_text().splitlines()
    body = [lines[0], *(lines[1 + i % (len(lines) - 1)] for i in range(records))]
    path = tmp_path / "big.log"
    path.write_text("\n".join(body) + "\n")
    return path


def test_a_large_flow_log_file_shows_its_progress_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chalicelib.commands import cli

    path = _flow_file(tmp_path, 20_000)
    terminal = _Terminal()
    monkeypatch.setattr(cli._Progress, "EVERY", 0.0)  # every block, not twice a second
    monkeypatch.setattr(sys, "stderr", terminal)
    main(["replay", str(path)])
    shown = terminal.getvalue()
    assert shown.startswith("\r  scanned ")
    assert shown.rstrip().endswith("records/s)")
    assert "scanned 20,000 records" in shown  # the last line: every record
    assert shown.count("\n") == 1  # one line, updated in place
    capsys.readouterr()


def test_no_progress_in_json_mode_or_off_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.commands import cli

    path = _flow_file(tmp_path, 2_000)
    monkeypatch.setattr(cli._Progress, "EVERY", 0.0)
    for argv, stream in ((["replay", "--json", str(path)], _Terminal()), (["replay", str(path)], io.StringIO())):
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setattr(sys, "stdout", io.StringIO())
        main(argv)
        assert "scanned" not in stream.getvalue()


def test_report_without_a_region_or_credentials_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    assert main(["report", "0f58ba0fda05c4a3253c92dd408cff48"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eks-responder: AWS: You must specify a region")
    assert "--from" in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_a_long_flow_format_is_a_format_not_a_file_name(capsys: pytest.CaptureFixture[str]) -> None:
    """A field list longer than a file name may be (255 bytes) is read as the format it is."""
    from chalicelib.flowlogs.fields import DEFAULT

    long = " ".join([*DEFAULT.fields, *["tcp-flags"] * 30])
    assert len(long) > 255
    main(["replay", "--json", "--flow-format", long, str(EVENTS / "flowlogs" / "vpc-flow-logs-demo.log")])
    out = capsys.readouterr().out
    assert "File name too long" not in out
    assert "internal error" not in out


def test_the_help_names_only_commands_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "regenerate permissions" not in text
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "html: a self-contained page" in capsys.readouterr().out
