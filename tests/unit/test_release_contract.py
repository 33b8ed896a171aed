"""Every action says what its release does and what it cannot undo; one without a release says so."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib import actions
from chalicelib.actions.base import Action, ActionContext
from chalicelib.incident import Incident, ResourceKind, Severity
from chalicelib.interfaces import Status, Target
from chalicelib.settings import Settings
from tests.unit.test_docs import DOCS

UNDONE = {"k8s:label-pod", "k8s:label-node", "k8s:cordon-node", "k8s:isolate-pod", "k8s:block-image",
          "ec2:protect-instance", "ec2:isolate-instance", "ec2:remove-from-service", "ec2:isolate-pod-eni",
          "ec2:block-ip", "eks:restrict-public-endpoint",
          "iam:revoke-role-sessions", "iam:pin-instance-credentials",
          "iam:deactivate-access-keys"}  # fmt: skip


def test_the_undone_actions_are_exactly_those_with_a_release() -> None:
    released = {name for name, a in actions.REGISTRY.items() if type(a).release is not Action.release}
    assert released == UNDONE
    assert all(actions.get(name).releases for name in UNDONE)


@pytest.mark.parametrize("name", sorted(set(actions.REGISTRY) - UNDONE))
def test_an_action_without_a_release_says_what_stays(name: str) -> None:
    action = actions.get(name)
    incident = Incident(id="i", source="guardduty", type="t", title="t", severity=Severity.HIGH, score=8.0,
                        account="123456789012", region="us-east-1", resource_kind=ResourceKind.POD)  # fmt: skip
    ctx = ActionContext(incident, Settings(), None, datetime.now(UTC), False)  # type: ignore[arg-type]
    outcome = action.release(ctx, Target("pod", "x", "ns"), {"anything": True}, force=True)
    assert outcome.status is Status.SKIPPED
    assert outcome.detail == f"{name} is not undone: {action.keeps}"


@pytest.mark.parametrize("name", sorted(actions.REGISTRY))
def test_the_undo_table_has_every_action(name: str) -> None:
    section = (DOCS / "release.md").read_text()
    row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"{name} is not in the release table of docs/release.md"
    action: Any = actions.get(name)
    assert f"| {action.releases or 'nothing'} | {action.keeps} |" in row
