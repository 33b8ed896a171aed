"""Orchestration: incident -> rule -> targets -> guarded actions -> report."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol, cast

from chalicelib import actions, dry_run
from chalicelib.actions.base import (
    EC2API,
    Action,
    ActionContext,
    ActionResult,
    CapStore,
    EvidenceSink,
    IdentityAPI,
    KeysAPI,
    KubeAPI,
    Params,
    Status,
    Target,
)
from chalicelib.errors import ClusterAccessError
from chalicelib.incident import ResourceKind
from chalicelib.policy.matcher import accepted, decide
from chalicelib.response import guardrails, targets, vulnerabilities

if TYPE_CHECKING:
    from chalicelib.flowlogs.attribution import Attribution
    from chalicelib.incident import Incident
    from chalicelib.policy.model import RulesFile, Step
    from chalicelib.settings import Settings

logger = logging.getLogger("eks_responder")


class Mode(enum.StrEnum):
    PLAN = "plan"  # decide and describe only; nothing is contacted
    DRY_RUN = "dry-run"  # read the cluster, send every write with server-side dry-run
    LIVE = "live"  # change things


class KubeConnector(Protocol):
    def gateway(self, cluster: str, region: str | None, *, dry_run: bool, account: str | None = None) -> KubeAPI: ...
    def close(self) -> None: ...


class AWSConnector(Protocol):
    def gateway(self, region: str, *, dry_run: bool) -> EC2API: ...


class IdentityConnector(Protocol):
    def gateway(self, region: str, *, dry_run: bool) -> IdentityAPI: ...
    def account(self) -> str: ...


class ScanFindings(Protocol):
    def findings(
        self, region: str, registry: str, repository: str, digest: str
    ) -> tuple[list[vulnerabilities.Vulnerability], bool]: ...


IDENTITY_KINDS = {"role", "user", "principal"}
# Target kinds that only exist inside (or as part of) a cluster.
CLUSTER_KINDS = {"pod", "node", "binding", "principal", "instance"}


class UnreachableKube:
    """Stands in for a cluster that could not be reached: every call fails with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __getattr__(self, name: str) -> Any:
        def fail(*_: Any, **__: Any) -> Any:
            raise ClusterAccessError(self.reason)

        return fail


@dataclass(frozen=True)
class Report:
    incident: Incident
    rule: str | None
    reason: str | None
    mode: Mode
    actions: tuple[ActionResult, ...]
    notes: tuple[str, ...] = ()
    evidence: str | None = None  # where this incident's evidence is, when any was written

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAILED for r in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.incident.source,
            "incident": self.incident.to_dict(),
            "rule": self.rule,
            "reason": self.reason,
            "mode": self.mode.value,
            "actions": [r.to_dict() for r in self.actions],
            "notes": list(self.notes),
            "evidence": self.evidence,
        }


def _now() -> datetime:
    return datetime.now(UTC)


class Responder:
    def __init__(
        self,
        rules: RulesFile,
        settings: Settings,
        connector: KubeConnector | None = None,
        evidence: EvidenceSink | None = None,
        clock: Callable[[], datetime] = _now,
        aws: AWSConnector | None = None,
        identity: IdentityConnector | None = None,
        keys: Callable[..., KeysAPI] | None = None,
        scans: ScanFindings | None = None,
        caps: CapStore | None = None,
    ) -> None:
        self._rules = rules
        self._settings = settings
        self._connector = connector
        self._evidence = evidence
        self._clock = clock
        self._aws = aws
        self._identity = identity
        self._keys = keys
        self._scans = scans
        self._caps = caps

    def close(self) -> None:
        """Release connections (a Lambda keeps them for the container's life)."""
        if self._connector is not None:
            self._connector.close()

    def attribution(self, region: str) -> Attribution:
        """Address lookups for one flow-log delivery, through this responder's (read-only) access."""
        from chalicelib.flowlogs.attribution import Attribution

        ec2 = self._aws.gateway(region, dry_run=True) if self._aws else None
        connector = self._connector

        def kube(cluster: str) -> KubeAPI:
            if connector is None:
                raise ClusterAccessError("no Kubernetes access configured")
            return connector.gateway(cluster, region, dry_run=True)

        return Attribution(ec2, kube)

    def enrich(self, incident: Incident, mode: Mode) -> Incident:
        """A counts-only image scan gets its CVE list (not in plan mode: nothing is contacted there)."""
        if self._scans is None or mode is Mode.PLAN or not vulnerabilities.wants_findings(incident):
            return incident
        details = incident.details
        try:
            found, complete = self._scans.findings(
                incident.region, incident.account, details["repository"], details["digest"]
            )
        except Exception as exc:  # noqa: BLE001 - the counts still decide; the alert says why there is no list
            logger.warning("scan findings not read", extra={"incident_id": incident.id, "error": _brief(exc)})
            return replace(incident, details={**details, "findings_error": _brief(exc)})
        today = self._clock().date()
        return vulnerabilities.fold(incident, found, complete=complete, risks=self._rules.accepted_risks, today=today)

    def accepted_risk(self, incident: Incident) -> bool:
        return accepted(incident, self._rules, datetime.now(UTC).date()) is not None

    def handle(self, incident: Incident, mode: Mode) -> Report:
        decision = decide(incident, self._rules)
        rule = decision.rule
        if rule is None or not rule.actions:
            return Report(incident, rule.name if rule else None, decision.reason, mode, ())
        if rule.dry_run and mode is Mode.LIVE:
            mode = Mode.DRY_RUN
        if incident.sample:
            return self._plan(incident, rule.name, rule.actions, mode, "sample finding, planned only")
        if incident.resource_kind is ResourceKind.IMAGE and incident.cluster is None:
            return self._each_cluster(incident, rule.name, rule.actions, mode)
        if mode is Mode.PLAN:
            return self._plan(incident, rule.name, rule.actions, mode, None)
        return self._execute(incident, rule.name, rule.actions, mode)

    def _each_cluster(self, incident: Incident, rule: str, steps: tuple[Step, ...], mode: Mode) -> Report:
        """An image can run anywhere: look for it in every configured cluster."""
        clusters = self._settings.clusters
        notes: list[str] = []
        if not clusters:
            why = "no clusters configured (CLUSTERS): nowhere to look for the image"
            if mode is not Mode.PLAN:
                return self._all(incident, rule, steps, mode, Status.SKIPPED, why)
            clusters, notes = ("<each cluster in CLUSTERS>",), [f"{why}; a live run would do nothing"]
        results: list[ActionResult] = []
        evidence = None
        for cluster in clusters:
            scoped = replace(incident, cluster=cluster)
            if mode is Mode.PLAN:
                report = self._plan(scoped, rule, steps, mode, None)
            else:
                report = self._execute(scoped, rule, steps, mode)
            results.extend(replace(r, target=f"{cluster}:{r.target}") for r in report.actions)
            notes.extend(f"{cluster}: {note}" for note in report.notes)
            evidence = evidence or report.evidence
        return Report(incident, rule, None, mode, tuple(results), tuple(notes), evidence)

    def _plan(self, incident: Incident, rule: str, steps: tuple[Step, ...], mode: Mode, why: str | None) -> Report:
        """Describe what would run, applying every guardrail that needs no cluster."""
        found = targets.offline(incident)
        results: list[ActionResult] = []
        blocked = guardrails.cluster_block(incident.cluster, self._settings.protected_clusters)
        for action, params, target in _each_target(steps, found):
            if target is None:
                results.append(_nothing_to_do(action))
                continue
            applies = blocked and (incident.cluster is not None or action.target_kind in CLUSTER_KINDS)
            reason = (
                (blocked if applies else None)
                or guardrails.static_block(action, target, self._settings, incident.account)
                or guardrails.platform_block(action, incident, self._settings)
            )
            if not reason and target.kind == "key":
                callers = [p.arn for p in incident.principals if p.arn and p.involved_as.value == "caller"]
                reason = guardrails.key_static_block(target, self._settings, callers)
            if reason:
                results.append(ActionResult(action.name, str(target), Status.SKIPPED, reason))
                continue
            detail = action.describe(target, params)
            results.append(
                ActionResult(action.name, str(target), Status.PLANNED, f"{why}: {detail}" if why else detail)
            )
        notes = (why,) if why else ()
        return Report(incident, rule, None, mode, tuple(results), notes)

    def _execute(self, incident: Incident, rule: str, steps: tuple[Step, ...], mode: Mode) -> Report:
        if incident.cluster and any(fnmatchcase(incident.cluster, p) for p in self._settings.protected_clusters):
            reason = guardrails.cluster_block(incident.cluster, self._settings.protected_clusters) or ""
            return self._all(incident, rule, steps, mode, Status.SKIPPED, reason)
        foreign = self._foreign_account(incident)
        if foreign:
            return self._all(incident, rule, steps, mode, Status.FAILED, foreign)
        dry_run = mode is Mode.DRY_RUN
        # Without a cluster (an IAM finding about a plain instance), only IAM actions can run.
        no_cluster = guardrails.cluster_block(None, ()) if incident.cluster is None else None
        unreachable: str | None = None
        kube: KubeAPI
        try:
            if incident.cluster is None or self._connector is None:
                raise ClusterAccessError(no_cluster or "no Kubernetes access configured")
            kube = self._connector.gateway(
                incident.cluster, incident.region, dry_run=dry_run, account=incident.account or None
            )
            found = targets.resolve(incident, kube)
        except ClusterAccessError as exc:
            unreachable = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported, never raised: the batch goes on
            unreachable = f"resolving targets failed: {_brief(exc)}"
        if unreachable is not None:
            # AWS-side containment must not depend on the Kubernetes API the attacker may be attacking.
            kube = cast("KubeAPI", UnreachableKube(unreachable))
            found = targets.aws_only(incident, unreachable) if not no_cluster else targets.Targets()
        kinds = {actions.get(s.action).target_kind for s in steps}
        aws = self._aws.gateway(incident.region, dry_run=dry_run) if self._aws and "instance" in kinds else None
        identity = None
        if self._identity and kinds & (IDENTITY_KINDS | {"key"}):
            identity = self._identity.gateway(incident.region, dry_run=dry_run)
        keys = self._keys(incident.region, dry_run=dry_run) if self._keys and "key" in kinds else None
        found.look_up_identities(incident, None if unreachable else kube, identity)
        ctx = ActionContext(
            incident, self._settings, kube, self._clock(), dry_run, self._evidence, aws, identity, keys, caps=self._caps
        )
        results = []
        for action, params, target in _each_target(steps, found):
            where = incident.cluster or "-"
            if no_cluster and action.target_kind in CLUSTER_KINDS:
                results.append(ActionResult(action.name, where, Status.SKIPPED, no_cluster))
            elif unreachable is not None and action.target_kind in {"pod", "node", "binding"}:
                results.append(ActionResult(action.name, where, Status.FAILED, unreachable))
            elif target is None:
                results.append(_nothing_to_do(action))
            else:
                results.append(self._run_one(action, target, params, ctx))
        wrote = any(actions.get(r.action).writes_evidence and r.status is Status.SUCCEEDED for r in results)
        evidence = self._evidence.location(incident.id) if wrote and self._evidence else None
        return Report(incident, rule, None, mode, tuple(results), (*ctx.notes, *found.notes), evidence)

    def _foreign_account(self, incident: Incident) -> str | None:
        """Why nothing can be done for a finding from another account (None: it is ours).

        The responder's credentials reach its own account only: acting on a finding about
        account B there would hit a different instance, role or cluster of the same name, or fail
        obscurely. Until cross-account roles exist, such a finding fails with this reason.
        """
        if self._identity is None or not incident.account:
            return None
        try:
            home = self._identity.account()
        except Exception as exc:  # noqa: BLE001 - without STS nothing in AWS works either; the actions say so
            logger.warning("own account unknown", extra={"incident_id": incident.id, "error": _brief(exc)})
            return None
        if incident.account == home:
            return None
        return (
            f"the finding is for account {incident.account}, but this responder acts only in its own account "
            f"{home}: nothing is done elsewhere"
        )

    def _run_one(self, action: Action, target: Target, params: Any, ctx: ActionContext) -> ActionResult:
        started = time.perf_counter()

        def result(status: Status, detail: str, prior: dict[str, Any] | None = None) -> ActionResult:
            elapsed = (time.perf_counter() - started) * 1000
            return ActionResult(action.name, str(target), status, detail, elapsed, prior)

        if not target.exists:
            return result(Status.SKIPPED, f"{target.kind} {target} no longer exists")
        if target.skip_reason:
            return result(Status.SKIPPED, target.skip_reason)
        try:
            reason = guardrails.block(action, target, ctx)
            if reason:
                return result(Status.SKIPPED, reason)
            with dry_run.journal() as writes:
                outcome = action.run(ctx, target, params)
        except Exception as exc:  # noqa: BLE001 - one failing action never hides the others
            logger.warning("action failed", extra={"action": action.name, "target": str(target), "error": _brief(exc)})
            guardrails.settle(ctx, action, target, succeeded=False)
            return result(Status.FAILED, _brief(exc))
        guardrails.settle(ctx, action, target, succeeded=outcome.status is Status.SUCCEEDED)
        if ctx.dry_run and outcome.status is Status.SUCCEEDED:
            # Say exactly what the dry run proved: which writes the API checked, which were not sent.
            detail = f"dry run: {outcome.detail} [{dry_run.describe(writes)}]"
            return result(Status.PLANNED, detail, outcome.prior)
        return result(outcome.status, outcome.detail, outcome.prior)

    def _all(
        self, incident: Incident, rule: str, steps: tuple[Step, ...], mode: Mode, status: Status, detail: str
    ) -> Report:
        results = tuple(ActionResult(s.action, incident.cluster or "-", status, detail) for s in steps)
        return Report(incident, rule, None, mode, results)


def _each_target(steps: tuple[Step, ...], found: targets.Targets) -> Iterator[tuple[Action, Params, Target | None]]:
    """Every (action, parameters, target) in rule order; target None when the action has none."""
    for step in steps:
        action = actions.get(step.action)
        params = action.params_model.model_validate(step.params)
        chosen = found.of_kind(action.target_kind)
        if not chosen:
            yield action, params, None
        for target in chosen:
            yield action, params, target


def _nothing_to_do(action: Action) -> ActionResult:
    return ActionResult(action.name, "-", Status.SKIPPED, f"the finding names no {action.target_kind} to act on")


def _brief(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."  # noqa: PLR2004
