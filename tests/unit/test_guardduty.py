from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import EventError
from chalicelib.incident import PrincipalKind, ResourceKind, Severity
from chalicelib.policy.loader import load_rules
from chalicelib.response.execute import Responder
from chalicelib.response.report import Mode
from chalicelib.settings import DEFAULT_RULES_FILE, Settings
from chalicelib.sources import guardduty
from chalicelib.sources.envelope import split_document
from tests.conftest import GUARDDUTY_SAMPLES, event_files, load_event, load_json, sample_files


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_every_public_sample_parses(path: Path) -> None:
    for event in split_document(load_json(path)):
        incident = guardduty.to_incident(event)
        assert incident.id == event["detail"]["id"]
        assert incident.type == event["detail"]["type"]
        assert incident.severity is Severity.from_score(event["detail"]["severity"])


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.stem)
def test_every_project_event_parses(path: Path) -> None:
    incident = guardduty.to_incident(load_json(path))
    assert incident.cluster == "demo"
    assert incident.event_id


def _sample(name: str) -> dict[str, Any]:
    (event,) = split_document(load_json(GUARDDUTY_SAMPLES / name))
    return event


def test_privileged_container_from_real_cli_output() -> None:
    (event,) = split_document(
        load_json(
            GUARDDUTY_SAMPLES / "bare" / "PrivilegeEscalation_Kubernetes_PrivilegedContainer.real-get-findings-cli.json"
        )
    )
    incident = guardduty.to_incident(event)
    assert incident.resource_kind is ResourceKind.POD
    assert incident.cluster == "guardduty-blueprint"
    assert [str(p) for p in incident.pods] == ["argocd/privileged-pod"]
    assert incident.privileged is True
    assert incident.sample is False
    assert incident.images == ("centos",)
    assert incident.principals[0].kind is PrincipalKind.SERVICE_ACCOUNT
    assert incident.principals[0].name == "system:serviceaccount:argocd:argocd-application-controller"


def test_sample_findings_are_flagged() -> None:
    incident = guardduty.to_incident(_sample("own/Policy_Kubernetes_ExposedDashboard.sample.json"))
    assert incident.sample is True


def test_anonymous_access_names_an_anonymous_principal() -> None:
    incident = guardduty.to_incident(_sample("own/Discovery_Kubernetes_SuccessfulAnonymousAccess.json"))
    assert incident.resource_kind is ResourceKind.CLUSTER
    assert incident.principals[0].kind is PrincipalKind.ANONYMOUS


def test_credential_exfiltration_names_the_instance_and_its_role() -> None:
    incident = guardduty.to_incident(load_event("unauthorized-access-instance-credential-exfiltration-outside-aws"))
    assert incident.resource_kind is ResourceKind.ACCESS_KEY
    assert len(incident.instance_ids) == 1
    assert incident.principals[0].kind is PrincipalKind.IAM_ROLE


def test_sensitive_mount_counts_as_privileged() -> None:
    incident = guardduty.to_incident(_sample("own/Persistence_Kubernetes_ContainerWithSensitiveMount.json"))
    assert incident.privileged is True


def test_runtime_finding_on_a_pod() -> None:
    incident = guardduty.to_incident(load_event("execution-runtime-reverse-shell"))
    assert incident.resource_kind is ResourceKind.POD
    assert [str(p) for p in incident.pods] == ["payments/web-5d9c7b8f6-x7k2p"]
    assert incident.instance_ids == ("i-cd9226b0ed9ce5ec6",)
    assert incident.remote_ips == ("81.2.69.144",)


def test_workload_named_by_kind_is_kept_for_resolution() -> None:
    incident = guardduty.to_incident(load_event("backdoor-runtime-c2-activity-dns-daemonset"))
    assert incident.resource_kind is ResourceKind.WORKLOAD
    assert [str(w) for w in incident.workloads] == ["DaemonSet/monitoring/node-agent"]
    assert incident.pods == ()


def test_runtime_finding_on_the_node_itself() -> None:
    incident = guardduty.to_incident(load_event("privilege-escalation-runtime-runc-container-escape-node"))
    assert incident.resource_kind is ResourceKind.NODE
    assert incident.instance_ids == ("i-6f3abc05c946c59a9",)
    assert incident.cluster == "demo"


def test_ec2_finding_on_a_worker_node_gets_its_cluster_from_tags() -> None:
    incident = guardduty.to_incident(load_event("cryptocurrency-ec2-bitcoin-tool-worker-node"))
    assert incident.resource_kind is ResourceKind.NODE
    assert incident.cluster == "demo"


def test_ec2_finding_on_a_plain_instance_has_no_cluster() -> None:
    incident = guardduty.to_incident(load_json(GUARDDUTY_SAMPLES / "Backdoor_EC2_CandCActivity.B_DNS.eventbridge.json"))
    assert incident.resource_kind is ResourceKind.NODE
    assert incident.cluster is None


def test_attack_sequence_collects_workloads_and_instances() -> None:
    incident = guardduty.to_incident(load_event("attack-sequence-eks-compromised-cluster"))
    assert incident.severity is Severity.CRITICAL
    assert [str(w) for w in incident.workloads] == ["Deployment/payments/web"]
    assert incident.instance_ids == ("i-cd9226b0ed9ce5ec6",)


def _event(**detail_changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event("execution-runtime-reverse-shell"))
    for key, value in detail_changes.items():
        if value is None:
            del event["detail"][key]
        else:
            event["detail"][key] = value
    return event


def test_a_sensitive_file_finding_names_the_file_and_the_process() -> None:
    incident = guardduty.to_incident(load_event("persistence-runtime-sensitive-file-modified"))
    assert incident.details == {"file_path": "/etc/cron.d/refresh", "file_operation": "Write", "process": "/bin/sh"}
    long = load_event("persistence-runtime-sensitive-file-modified")
    long["detail"]["service"]["runtimeDetails"]["context"]["filePath"] = "/" + "a" * 5000
    assert len(guardduty.to_incident(long).details["file_path"]) == guardduty.DETAIL_LIMIT


def test_an_instance_group_sequence_keeps_the_worker_nodes_of_its_one_cluster() -> None:
    event = load_event("attack-sequence-ec2-compromised-instance-group-worker-nodes")
    incident = guardduty.to_incident(event)
    assert (incident.resource_kind, incident.cluster) == (ResourceKind.NODE, "demo")
    assert incident.instance_ids == ("i-cd9226b0ed9ce5ec6", "i-0b7e5a3c1d9f24680")  # not the bastion
    # nodes of two clusters: the sequence names no one cluster, so no node is aimed at
    resources = event["detail"]["service"]["detection"]["sequence"]["resources"]
    resources[1]["tags"] = [{"key": "eks:cluster-name", "value": "other"}]
    split = guardduty.to_incident(event)
    assert (split.cluster, split.details["clusters"]) == (None, "demo,other")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_event(id=None), "detail.id: required, missing"),
        (_event(severity="very"), "detail.severity"),
        (_event(severity=42), "detail.severity: Expected `float` <= 10"),
        (_event(resource=None), "detail.resource: required, missing"),
        (_event(resource={"resourceType": 3}), "detail.resource.resourceType"),
        ({**_event(), "detail": "not an object"}, "detail"),
        ({**_event(), "source": "aws.ecr"}, "not a GuardDuty finding"),
        ({**_event(), "detail-type": "GuardDuty Runtime Protection Healthy"}, "not a GuardDuty finding"),
    ],
)
def test_malformed_findings_raise_a_clear_error(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError, match=message):
        guardduty.to_incident(event)


def test_null_sections_are_tolerated() -> None:
    event = _event()
    event["detail"]["resource"]["kubernetesDetails"] = None
    event["detail"]["service"] = None
    incident = guardduty.to_incident(event)
    assert incident.resource_kind is ResourceKind.NODE  # only the instance is left


def test_a_malformed_accessory_field_is_left_out_and_the_rest_still_done() -> None:
    """An anonymous-access-granted finding whose access-key block is malformed: the key is left out and
    named, never its value, and the binding granting anonymous access is still planned for removal."""
    from chalicelib.sources import registry

    event = load_event("policy-kubernetes-anonymous-access-granted")
    event["detail"]["resource"]["accessKeyDetails"] = {
        "accessKeyId": "<!channel> not a key", "principalId": "AIDAEXAMPLE", "userName": "developer",
        "userType": "IAMUser"}  # fmt: skip
    incident = registry.to_incident(event)
    assert incident.details["malformed"] == "the access key id of developer (not an access key id): left out"
    assert "<!channel>" not in json.dumps(incident.to_dict())
    assert all(p.access_key_id is None for p in incident.principals)
    report = Responder(load_rules(DEFAULT_RULES_FILE), Settings()).handle(incident, Mode.PLAN)
    assert "k8s:delete-rolebinding" in [a.action for a in report.actions]
    assert "malformed in the finding, the access key id of developer (not an access key id): left out" in report.notes
    # A principal whose very name is malformed goes, named only by its kind.
    event["detail"]["resource"]["accessKeyDetails"]["userName"] = "<!channel>"
    dropped = registry.to_incident(event)
    assert dropped.details["malformed"].startswith("one iam-user principal")
    assert "<!channel>" not in dropped.details["malformed"]
