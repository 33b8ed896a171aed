"""One write per changed object: a step's patch held until a later step of the same plan patches
the same pod or node, then both sent as one JSON merge patch.

A plan often writes an object twice: `k8s:label-pod` marks the pod, `k8s:isolate-pod` later
quarantines it; `k8s:label-node`, then `k8s:cordon-node`. The responder holds the first step's
patch when (and only when) a later step of the same run will patch the same object, and the later
step's request carries both. Each step keeps its own prior state: while a patch is held, the
object the next steps read is the one the server would return after it, so every later step
computes what it changes (and what its release puts back) exactly as if the first write had gone.

Nothing waits on a held patch for long: it is sent with the next write to the same object, or
alone before the object is deleted, and when the responder settles the step that was to carry it
(that step failed, was skipped or wrote nothing). Reads in between, lists included, show the
object as the held patch will leave it. Until it is sent the holding step is not reported as done: the
responder confirms it, or fails it, from what happened to the held patch (`sent`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from chalicelib.executors import dry_run

if TYPE_CHECKING:
    from chalicelib.interfaces import KubeAPI

Key = tuple[str, str | None, str]  # ("pod", namespace, name) or ("node", None, name)


def pod_key(namespace: str, name: str) -> Key:
    return ("pod", namespace, name)


def node_key(name: str) -> Key:
    return ("node", None, name)


def compose(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One merge patch with the effect of `first`, then `second` (RFC 7386)."""
    out = copy.deepcopy(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = compose(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply(target: Any, patch: Any) -> Any:
    """`target` as a JSON merge patch leaves it (RFC 7386): what the server would answer."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply(out.get(key), value)
    return out


class HeldWrites:
    """The gateway the actions see: every call passes through, except the held patches."""

    def __init__(self, kube: KubeAPI, *, dry_run: bool) -> None:
        self._kube = kube
        self._dry_run = dry_run
        self._holding: set[Key] = set()
        self._held: dict[Key, dict[str, Any]] = {}
        self._view: dict[Key, dict[str, Any]] = {}
        self.alone: set[Key] = set()  # held patches that went out on their own, not with a later write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)

    @contextmanager
    def holding(self, key: Key) -> Iterator[None]:
        """While the block runs, patches of `key` are held instead of sent."""
        self._holding.add(key)
        try:
            yield
        finally:
            self._holding.discard(key)

    def held(self, key: Key) -> bool:
        return key in self._held

    def send(self, key: Key) -> None:
        """Send what is held for `key` on its own (its carrier did not write the object)."""
        patch = self._held.get(key)
        if patch is not None:
            self._patch(key, patch)
            self._forget(key)
            self.alone.add(key)

    def _forget(self, key: Key) -> None:
        self._held.pop(key, None)
        self._view.pop(key, None)

    def _patch(self, key: Key, patch: dict[str, Any]) -> None:
        kind, namespace, name = key
        if kind == "pod":
            assert namespace is not None
            self._kube.patch_pod(namespace, name, patch)
        else:
            self._kube.patch_node(name, patch)

    def _write(self, key: Key, patch: dict[str, Any], read: Any) -> None:
        if key in self._holding:
            base = self._view[key] if key in self._held else read()
            if base is not None:  # an object that is gone is patched for real: the server says so
                self._held[key] = compose(self._held.get(key, {}), patch)
                self._view[key] = apply(base, patch)
                if self._dry_run:
                    dry_run.held(f"Kubernetes patch {key[0]}")
                return
        if key in self._held:
            self._patch(key, compose(self._held[key], patch))  # on failure the held patch stays held
            self._forget(key)
            return
        self._patch(key, patch)

    # -- pods ------------------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = pod_key(namespace, name)
        if key in self._held:
            return copy.deepcopy(self._view[key])
        return self._kube.get_pod(namespace, name)

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._write(pod_key(namespace, name), patch, lambda: self._kube.get_pod(namespace, name))

    def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None) -> None:
        self.send(pod_key(namespace, name))
        self._kube.delete_pod(namespace, name, grace_period_seconds)

    def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        return self._shown("pod", self._kube.list_pods(namespace))

    def pods_with_ip(self, ip: str) -> list[dict[str, Any]]:
        return self._shown("pod", self._kube.pods_with_ip(ip))

    # -- nodes -----------------------------------------------------------------------------------

    def get_node(self, name: str) -> dict[str, Any] | None:
        key = node_key(name)
        if key in self._held:
            return copy.deepcopy(self._view[key])
        return self._kube.get_node(name)

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        self._write(node_key(name), patch, lambda: self._kube.get_node(name))

    def list_nodes(self) -> list[dict[str, Any]]:
        return self._shown("node", self._kube.list_nodes())

    def _shown(self, kind: str, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A list as it will be once the held patches are sent: a held object as its patch leaves it.
        (These lists select by namespace or field, never by label, so the same objects are listed.)"""
        if not any(key[0] == kind for key in self._held):
            return listed
        shown = []
        for obj in listed:
            meta = obj.get("metadata") or {}
            key: Key = (kind, meta.get("namespace") if kind == "pod" else None, str(meta.get("name")))
            shown.append(copy.deepcopy(self._view[key]) if key in self._held else obj)
        return shown
