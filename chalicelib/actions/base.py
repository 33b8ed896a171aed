"""What every action is: a name, the permissions it needs, a plan and a run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from chalicelib.interfaces import (
    EC2API,
    CapStore,
    EvidenceSink,
    IAMStatement,
    IdentityAPI,
    ImagesAPI,
    KeysAPI,
    KubeAPI,
    Outcome,
    RBACRule,
    Status,
    Target,
    TargetKind,
)
from chalicelib.validation import Strict

if TYPE_CHECKING:
    from chalicelib.incident import Incident
    from chalicelib.settings import Settings


@dataclass
class ActionContext:
    incident: Incident
    settings: Settings
    kube: KubeAPI
    now: datetime
    dry_run: bool
    evidence: EvidenceSink | None = None
    aws: EC2API | None = None
    identity: IdentityAPI | None = None
    keys: KeysAPI | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    caps: CapStore | None = None
    notes: list[str] = field(default_factory=list)  # said once in the report, not per action
    images: ImagesAPI | None = None
    accepted_risks: tuple[Any, ...] = ()  # the rules' AcceptedRisk entries: a digest they cover is never blocked


class Params(Strict, frozen=True):
    """Parameters of an action, as written in a rule's `params:`. Unknown keys are errors."""


class NoParams(Params, frozen=True):
    pass


class Action(ABC):
    """One response step. Subclasses are registered in chalicelib.actions.REGISTRY."""

    name: ClassVar[str]
    target_kind: ClassVar[TargetKind]
    summary: ClassVar[str]
    params_model: ClassVar[type[Params]] = NoParams
    rbac: ClassVar[tuple[RBACRule, ...]] = ()
    iam: ClassVar[tuple[IAMStatement, ...]] = ()
    # Actions that disrupt a workload are never run in a protected namespace.
    disrupts_workload: ClassVar[bool] = False
    # Actions that take a node out of service count against the per-cluster hourly cap.
    counts_against_node_cap: ClassVar[bool] = False
    # Actions that cut an instance off count against the per-cluster hourly instance cap, and
    # never take the last Ready node of a node group.
    counts_against_instance_cap: ClassVar[bool] = False
    # Actions that take a node or its network out of service: never for a finding about a pod of a
    # protected namespace (the platform's own workloads run on every node).
    disrupts_node: ClassVar[bool] = False
    uses_identity: ClassVar[bool] = False  # a pod action that also needs IAM and EKS (the identity gateway)
    uses_aws: ClassVar[bool] = False  # a pod action that also needs EC2 (the AWS gateway)
    # Actions that write to the evidence store: the report links to the incident's evidence.
    writes_evidence: ClassVar[bool] = False
    # What the action changes on the instance that EKS Auto Mode's EC2 managed instances refuse
    # ("" when it works there): the step is not attempted on such a node, and says why.
    refused_by_managed_instances: ClassVar[str] = ""
    # Operating systems (actions.compute: bottlerocket, windows) it cannot work on: why, and what instead.
    not_on: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def describe(self, target: Target, params: Params) -> str:
        """One sentence: what running on `target` would change."""

    @abstractmethod
    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        """Do it (or, with ctx.dry_run, have the API server validate it). Idempotent."""

    # What `release` needs beyond `rbac` and `iam`, and what it does (docs/release.md's undo table).
    release_rbac: ClassVar[tuple[RBACRule, ...]] = ()
    release_iam: ClassVar[tuple[IAMStatement, ...]] = ()
    contains: ClassVar[bool] = False  # cuts the threat off (time to contain ends with the first that succeeds)
    # Writes its pod or node target only with JSON merge patches and reads it only with get_pod or
    # get_node: its request can carry an earlier step's held patch of the same object (one write).
    merges_into_target: ClassVar[bool] = False
    # Besides, never reads its own write back: its patch may be held for the next such step's request.
    # (A step that verifies what it wrote, as isolate-pod and cordon-node do, is never held.)
    write_may_wait: ClassVar[bool] = False
    # The effect can be one several incidents rely on (a pod's quarantine, a node's cordon, an
    # instance's isolation): each incident that finds it in place holds it too, and only the last
    # holder released undoes it (with the prior state of the incident that made it).
    shared: ClassVar[bool] = False
    # What the action reads back after its writes, so its report is a fact: empty means the API's
    # answer is all it has, and a live result says "(not read back)".
    reads_back: ClassVar[str] = ""
    releases: ClassVar[str] = ""  # what a release puts back; empty: nothing is undone
    keeps: ClassVar[str] = "nothing to undo"  # what a release cannot (or must not) undo

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        """Put back what `run` changed, from the prior state it recorded. Refuses (skipped, with the
        reason) when the target changed since in a way the undo would overwrite, unless `force`."""
        return Outcome(Status.SKIPPED, f"{self.name} is not undone: {self.keeps}")

    def held_for(self, incident: Incident) -> str | None:
        """Why this step must wait for a human for this incident whatever the rules say (its evidence
        is too weak to act on alone), or None."""
        return None
