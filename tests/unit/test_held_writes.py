"""Held patches: merge-patch arithmetic, and when a held patch must go out before anything else."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.executors.held_writes import HeldWrites, apply, compose, node_key, pod_key


def test_two_merge_patches_compose_into_one_with_the_same_effect() -> None:
    pod = {"metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "annotations": {"a": "1"}}}
    first = {"metadata": {"labels": {"investigation": "true"}, "annotations": {"incident": "i-1"}}}
    second = {"metadata": {"labels": {"quarantine": "true", "app": None, "tier": None}}, "spec": {"x": [1]}}
    assert apply(pod, compose(first, second)) == apply(apply(pod, first), second)
    assert apply(pod, compose(first, second)) == {
        "metadata": {"name": "web", "labels": {"investigation": "true", "quarantine": "true"},
                     "annotations": {"a": "1", "incident": "i-1"}},
        "spec": {"x": [1]},
    }  # fmt: skip
    assert compose({"a": {"b": 1}}, {"a": None}) == {"a": None}  # a later delete wins
    assert compose({"a": None}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert first == {"metadata": {"labels": {"investigation": "true"}, "annotations": {"incident": "i-1"}}}


class FakeKube:
    """Records requests; pods and nodes as plain dicts."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {("ns", "web"): {"metadata": {"labels": {"app": "web"}}}}
        self.nodes: dict[str, dict[str, Any]] = {"n1": {"metadata": {"labels": {}}}}
        self.requests: list[str] = []

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(f"get pod {name}")
        return self.pods.get((namespace, name))

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.requests.append(f"patch pod {name} {sorted((patch.get('metadata') or {}).get('labels') or {})}")
        self.pods[(namespace, name)] = apply(self.pods[(namespace, name)], patch)

    def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        self.requests.append("list pods")
        return list(self.pods.values())

    def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None) -> None:
        self.requests.append(f"delete pod {name}")

    def get_node(self, name: str) -> dict[str, Any] | None:
        return self.nodes.get(name)

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        self.requests.append(f"patch node {name}")
        self.nodes[name] = apply(self.nodes[name], patch)

    def list_nodes(self) -> list[dict[str, Any]]:
        self.requests.append("list nodes")
        return list(self.nodes.values())

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        self.requests.append("list services")
        return []


LABEL = {"metadata": {"labels": {"investigation": "true"}}}
QUARANTINE = {"metadata": {"labels": {"quarantine": "true", "app": None}}}


def _held(kube: FakeKube) -> HeldWrites:
    held = HeldWrites(kube, dry_run=False)  # type: ignore[arg-type]
    with held.holding(pod_key("ns", "web")):
        held.patch_pod("ns", "web", LABEL)
    return held


def test_a_held_patch_is_seen_by_later_reads_and_sent_with_the_next_write() -> None:
    kube = FakeKube()
    held = _held(kube)
    assert held.held(pod_key("ns", "web"))
    assert held.get_pod("ns", "web") == {"metadata": {"labels": {"app": "web", "investigation": "true"}}}
    assert kube.pods[("ns", "web")] == {"metadata": {"labels": {"app": "web"}}}  # nothing sent yet
    assert held.list_services("ns") == []  # other calls pass through, and send nothing
    held.patch_pod("ns", "web", QUARANTINE)
    assert kube.requests == ["get pod web", "list services", "patch pod web ['app', 'investigation', 'quarantine']"]
    assert kube.pods[("ns", "web")] == {"metadata": {"labels": {"investigation": "true", "quarantine": "true"}}}
    assert not held.held(pod_key("ns", "web"))


def test_lists_show_a_held_object_as_its_patch_leaves_it_and_a_delete_sends_it_first() -> None:
    kube = FakeKube()
    kube.pods[("ns", "db")] = {"metadata": {"name": "db", "namespace": "ns", "labels": {}}}
    kube.pods[("ns", "web")]["metadata"].update(name="web", namespace="ns")
    held = _held(kube)
    listed = {p["metadata"]["name"]: p["metadata"]["labels"] for p in held.list_pods("ns")}
    assert listed == {"web": {"app": "web", "investigation": "true"}, "db": {}}
    assert kube.requests[-1] == "list pods"  # nothing sent for it
    assert held.held(pod_key("ns", "web"))
    held.delete_pod("ns", "web", None)
    assert kube.requests[-2:] == ["patch pod web ['investigation']", "delete pod web"]
    assert not held.held(pod_key("ns", "web"))
    assert pod_key("ns", "web") in held.alone


def test_a_patch_of_a_missing_object_is_not_held_and_a_held_one_can_go_alone() -> None:
    kube = FakeKube()
    held = HeldWrites(kube, dry_run=False)  # type: ignore[arg-type]
    with held.holding(node_key("n1")):
        held.patch_node("n1", LABEL)
    # The fake has no such pod: the patch is sent (not held), and fails as the server would say.
    with held.holding(pod_key("ns", "gone")), pytest.raises(KeyError):
        held.patch_pod("ns", "gone", LABEL)
    assert not held.held(pod_key("ns", "gone"))
    assert held.held(node_key("n1"))
    held.send(node_key("n1"))
    assert kube.requests[-1] == "patch node n1"
    assert kube.nodes["n1"]["metadata"]["labels"] == {"investigation": "true"}
