"""Running a plan: incident -> rule -> targets -> guarded actions -> report (release.py undoes one)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec

from chalicelib import actions
from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.errors import ClusterAccessError
from chalicelib.executors import dry_run, faults
from chalicelib.executors.held_writes import HeldWrites, Key, node_key, pod_key
from chalicelib.incident import Incident, ResourceKind
from chalicelib.interfaces import (
    EC2API,
    ActionResult,
    CapStore,
    EvidenceSink,
    IdentityAPI,
    ImagesAPI,
    KeysAPI,
    KubeAPI,
    Outcome,
    Status,
    Target,
    Vulnerability,
)
from chalicelib.invocation import DeadlineError, check_deadline
from chalicelib.policy.matcher import accepted, decide
from chalicelib.response import audit, guardrails, targets, vulnerabilities
from chalicelib.response.plan import Plan, PlannedStep, StepState, needs_approval
from chalicelib.response.report import Mode, Report
from chalicelib.validation import parse

if TYPE_CHECKING:
    from chalicelib.flowlogs.attribution import Attribution
    from chalicelib.policy.model import Rule, RulesFile, Step
    from chalicelib.settings import Settings

# Told each finished step of a live run (the incident's progress record, for a redelivery to resume).
Progress = Callable[[ActionResult], None]

logger = logging.getLogger("eks_responder")


class KubeConnector(Protocol):
    def gateway(self, cluster: str, region: str | None, *, dry_run: bool, account: str | None = None) -> KubeAPI: ...
    def close(self) -> None: ...


class AWSConnector(Protocol):
    def gateway(self, region: str, *, dry_run: bool) -> EC2API: ...
    def objects(self, region: str) -> Any: ...


class IdentityConnector(Protocol):
    def gateway(self, region: str, *, dry_run: bool) -> IdentityAPI: ...
    def account(self) -> str: ...
    def alias(self) -> str | None: ...


class FindingsReader(Protocol):
    def read(self, region: str, detector: str, finding_id: str) -> dict[str, Any] | None: ...


class SpokeRouter(Protocol):
    def __call__(self, account: str, incident_id: str) -> Connectors: ...
    def manages(self, account: str) -> bool: ...


class PlanKeeper(Protocol):
    def put(self, plan: Plan) -> None: ...


class ScanFindings(Protocol):
    def findings(
        self, region: str, registry: str, repository: str, digest: str
    ) -> tuple[list[Vulnerability], bool]: ...


IDENTITY_KINDS = {"role", "user", "principal"}
# Target kinds that only exist inside (or as part of) a cluster.
CLUSTER_KINDS = {"pod", "node", "binding", "principal", "instance"}


class Connectors(msgspec.Struct, frozen=True):
    """What reaches one account: its clusters, EC2, IAM/EKS, KMS."""

    kube: KubeConnector | None
    aws: AWSConnector | None
    identity: IdentityConnector | None
    keys: Callable[..., KeysAPI] | None
    via: str | None = None  # the spoke role these credentials come from, in a member account
    findings: FindingsReader | None = None  # GuardDuty's findings in that account
    images: ImagesAPI | None = None  # where a digest lives in that account's registry


class UnreachableKube:
    """Stands in for a cluster that could not be reached: every call fails with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __getattr__(self, name: str) -> Any:
        def fail(*_: Any, **__: Any) -> Any:
            raise ClusterAccessError(self.reason)

        return fail


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
        plans: PlanKeeper | None = None,
        spokes: SpokeRouter | None = None,
        findings: FindingsReader | None = None,
        images: ImagesAPI | None = None,
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
        self._plans = plans
        self._spokes = spokes  # (account, incident id) -> connectors through that account's spoke role
        self._findings = findings
        self._images = images

    def close(self) -> None:
        """Release connections (a Lambda keeps them for the container's life)."""
        if self._connector is not None:
            self._connector.close()

    def attribution(self, region: str, account: str | None = None) -> Attribution | str:
        """Address lookups for one flow-log delivery, read-only, in the account whose interfaces
        logged it (a member's through its spoke role); why not, when that account cannot be reached."""
        from chalicelib.flowlogs.attribution import Attribution

        reach = self._account_reach(account, "flow-log-delivery") if account else None
        if isinstance(reach, tuple):
            logger.warning("flow-log account not reachable", extra={"account": account, "reason": reach[1]})
            return reach[1]
        aws_connector = reach.aws if reach else self._aws
        ec2 = aws_connector.gateway(region, dry_run=True) if aws_connector else None
        connector = reach.kube if reach else self._connector

        def kube(cluster: str) -> KubeAPI:
            if connector is None:
                raise ClusterAccessError("no Kubernetes access configured")
            return connector.gateway(cluster, region, dry_run=True)

        return Attribution(ec2, kube)

    def own_account(self) -> str | None:
        """The account the responder's own credentials act in (None when STS cannot say)."""
        return self._home_account("flow-log-object")

    def bucket_reader(self, owner: str | None, region: str) -> tuple[str | None, Any] | str:
        """(the owning account, an S3 client in it) for an object whose bucket `owner` holds (the
        responder's own account when None), or why it may not be read: a member's bucket is read
        through that member's spoke role, an unmanaged account's not at all."""
        account = owner or self._home_account("flow-log-object")
        reach = self._account_reach(account, "flow-log-object") if account else None
        if isinstance(reach, tuple):
            return reach[1]
        aws_connector = reach.aws if reach else self._aws
        if aws_connector is None:
            return "no AWS access configured"
        return account, aws_connector.objects(region)

    def enrich(self, incident: Incident, mode: Mode) -> Incident:
        """A counts-only image scan gets its CVE list, a Security Hub copy its native GuardDuty
        finding (not in plan mode: nothing is contacted there)."""
        if incident.source == "securityhub" and mode is not Mode.PLAN:
            return self._native(incident)
        if self._scans is None or mode is Mode.PLAN or not vulnerabilities.wants_findings(incident):
            return incident
        details = incident.details
        try:
            found, complete = self._scans.findings(
                incident.region, incident.account, details["repository"], details["digest"]
            )
        except Exception as exc:  # noqa: BLE001 - the counts still decide; the alert says why there is no list
            logger.warning("scan findings not read", extra={"incident_id": incident.id, "error": brief(exc)})
            return replace(incident, details={**details, "findings_error": brief(exc)})
        today = self._clock().date()
        return vulnerabilities.fold(incident, found, complete=complete, risks=self._rules.accepted_risks, today=today)

    def _native(self, copy: Incident) -> Incident:
        """The finding GuardDuty holds for a Security Hub copy, read in its own account (through
        the spoke role for a member), parsed like a native event; the copy, saying why, when it
        cannot be read."""
        from chalicelib.sources import registry

        def kept(why: str) -> Incident:
            # Anyone who can import findings can write a copy: what it says alone is never acted on.
            logger.warning("native finding not read", extra={"incident_id": copy.id, "error": why})
            native = f"not read ({why}): the copy is reported, not acted on"
            return replace(copy, details={**copy.details, "native": native}, unverified=f"native finding {native}")

        reach = self._account_reach(copy.account, copy.id)
        if isinstance(reach, tuple) or reach.findings is None:
            return kept(reach[1] if isinstance(reach, tuple) else "no GuardDuty access configured")
        try:
            detail = reach.findings.read(copy.region, copy.details["guardduty_detector"], copy.id)
        except Exception as exc:  # noqa: BLE001 - the copy still names what it names
            return kept(brief(exc))
        if detail is None:
            return kept("GuardDuty no longer has it")
        event = {"source": "aws.guardduty", "detail-type": "GuardDuty Finding", "id": copy.event_id,
                 "account": copy.account, "region": copy.region, "detail": detail}  # fmt: skip
        try:
            native = registry.to_incident(event, copy.raw_ref)
        except Exception as exc:  # noqa: BLE001 - what GuardDuty answered is checked like any event
            return kept(brief(exc))
        if native.id != copy.id or native.account != copy.account:
            return kept(f"GuardDuty answered with finding {native.id} of account {native.account}")
        return replace(native, source=copy.source, details={**native.details, "via": copy.details["via"]})

    def accepted_risk(self, incident: Incident) -> bool:
        return accepted(incident, self._rules, datetime.now(UTC).date()) is not None

    def handle(
        self, incident: Incident, mode: Mode, done: Mapping[tuple[str, str], dict[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> Report:  # fmt: skip
        """`done`: the steps an earlier delivery of this incident carried out ((action, target) -> its
        result), which are reported as done then and never run again. `progress`: told each step of a
        live run as it finishes (after its audit line), so a crash later loses neither."""
        decision = decide(incident, self._rules)
        rule = decision.rule
        if rule is None or not rule.actions:
            return Report(incident, rule.name if rule else None, decision.reason, mode, ())
        # An account's override can make it drier than the stage, never wetter.
        drier = (
            incident.account in self._settings.account_overrides
            and self._settings.for_account(incident.account).dry_run
        )
        if (rule.dry_run or drier) and mode is Mode.LIVE:
            mode = Mode.DRY_RUN
        if incident.sample:
            return self._plan(incident, rule, mode, "sample finding, planned only")
        if incident.unverified:
            return self._plan(incident, rule, mode, f"unverified copy, planned only: {incident.unverified}")
        if incident.resource_kind is ResourceKind.IMAGE and incident.cluster is None:
            return self._each_cluster(incident, rule, mode)
        if mode is Mode.PLAN:
            return self._plan(incident, rule, mode, None)
        return self._execute(incident, rule, mode, done or {}, progress)

    def carry_out(self, plan: Plan, approved: dict[int, PlannedStep]) -> Report:
        """Run the approved steps of a stored plan, in a later invocation: the targets are
        resolved again, and a step whose target is no longer what was planned is not run."""
        incident = plan.incident
        mode = Mode(plan.mode)
        rule = next((r for r in self._rules.rules if r.name == plan.rule), None)
        if rule is None:
            why = f"rule {plan.rule} is no longer in the rules file: nothing is run"
            return Report(incident, plan.rule, why, mode, ())
        chosen = tuple(approved[i] for i in sorted(approved))
        by = ", ".join(sorted({s.decided_by or "?" for s in chosen}))
        from chalicelib.policy.model import Step as RuleStep

        # The stricter of the modes at planning and now: a rule (or account) switched to dry run since
        # the plan was shown is carried out as a dry run, never live on an old approval.
        drier = (
            incident.account in self._settings.account_overrides
            and self._settings.for_account(incident.account).dry_run
        )
        stricter = mode is Mode.LIVE and (rule.dry_run or drier)
        if stricter:
            mode = Mode.DRY_RUN
        steps = tuple(RuleStep(action=p.action, params=p.params) for p in chosen)
        reach = self.reach(incident)
        if isinstance(reach, tuple):
            status, reason = reach
            refused = tuple(ActionResult(p.action, p.label, status, reason) for p in chosen)
            return Report(incident, plan.rule, None, mode, refused)
        session = self.open_session(incident, steps, mode, reach)
        results = []
        contained: datetime | None = None
        for planned in chosen:
            action = actions.get(planned.action)
            params = parse(planned.params, action.params_model)
            current = [t for t in session.found.of_kind(action.target_kind) if _same(t, planned.target)]
            blocked = session.blocked(action)
            if blocked is not None:
                results.append(ActionResult(action.name, planned.label, *blocked))
            elif planned.target is None or not current:
                why = f"the target changed since the plan was made: {planned.label} is no longer what the finding names"
                results.append(ActionResult(action.name, planned.label, Status.SKIPPED, why))
            else:
                results.append(self._run_one(action, current[0], params, session.ctx))
                contained = self._contained(results[-1], mode, contained)
            step_done(incident, rule.name, mode, replace(results[-1], step=planned.index, approval_required=True),
                       what="approved", by=by)  # fmt: skip
        stamped = tuple(replace(r, step=p.index, approval_required=True) for r, p in zip(results, chosen, strict=True))
        notes = tuple(session.ctx.notes)
        if stricter:
            notes += (f"planned live, but rule {rule.name} (or account {incident.account}) is a dry run now: "
                      "the approved steps were carried out as a dry run",)  # fmt: skip
        return Report(incident, plan.rule, None, mode, stamped, notes, account_alias=session.alias,
                      contained_at=contained, logged=frozenset(range(len(stamped))))  # fmt: skip

    def _each_cluster(self, incident: Incident, rule: Rule, mode: Mode) -> Report:
        """An image can run anywhere: look for it in every configured cluster."""
        clusters = self._settings.clusters
        notes: list[str] = []
        if not clusters:
            why = "no clusters configured (CLUSTERS): nowhere to look for the image"
            if mode is not Mode.PLAN:
                return self._all(incident, rule, mode, Status.SKIPPED, why)
            clusters, notes = ("<each cluster in CLUSTERS>",), [f"{why}; a live run would do nothing"]
        results: list[ActionResult] = []
        evidence = alias = None
        contained: list[datetime] = []
        logged: list[int] = []  # each cluster's steps wrote their lines as they finished
        for cluster in clusters:
            scoped = replace(incident, cluster=cluster)
            report = self._plan(scoped, rule, mode, None) if mode is Mode.PLAN else self._execute(scoped, rule, mode)
            logged.extend(len(results) + position for position in report.logged)
            results.extend(replace(r, target=f"{cluster}:{r.target}") for r in report.actions)
            notes.extend(f"{cluster}: {note}" for note in report.notes)
            evidence, alias = evidence or report.evidence, alias or report.account_alias
            contained.extend([report.contained_at] if report.contained_at else [])
        return Report(incident, rule.name, None, mode, tuple(results), tuple(notes), evidence, account_alias=alias,
                      contained_at=min(contained, default=None), logged=frozenset(logged))  # fmt: skip

    def _plan(self, incident: Incident, rule: Rule, mode: Mode, why: str | None) -> Report:
        """Describe what would run, applying every guardrail that needs no cluster."""
        found = targets.offline(incident)
        results: list[ActionResult] = []
        waits: list[bool] = []
        current = self._settings.for_account(incident.account)
        blocked = guardrails.cluster_block(incident.cluster, current.protected_clusters)
        for _, step, action, params, target in _each_target(rule.actions, found):
            waits.append(self._needs_approval(step, rule, incident))
            if target is None:
                results.append(_nothing_to_do(action))
                continue
            applies = blocked and (incident.cluster is not None or action.target_kind in CLUSTER_KINDS)
            reason = (
                (blocked if applies else None)
                or guardrails.static_block(action, target, current, incident.account)
                or guardrails.platform_block(action, incident, current)
            )
            if not reason and target.kind == "key":
                callers = [p.arn for p in incident.principals if p.arn and p.involved_as.value == "caller"]
                reason = guardrails.key_static_block(target, current, callers)
            if reason:
                results.append(ActionResult(action.name, str(target), Status.SKIPPED, reason))
                continue
            detail = action.describe(target, params)
            if self._needs_approval(step, rule, incident):
                detail += " (waits for approval)"
            results.append(
                ActionResult(action.name, str(target), Status.PLANNED, f"{why}: {detail}" if why else detail)
            )
        notes: tuple[str, ...] = (why,) if why else ()
        if incident.details.get("malformed"):
            notes += (f"malformed in the finding, {incident.details['malformed']}",)
        numbered = _numbered(results, waits)
        return Report(incident, rule.name, None, mode, numbered, notes)

    def _needs_approval(self, step: Step, rule: Rule, incident: Incident) -> bool:
        if actions.get(step.action).held_for(incident):
            return True
        default = self._settings.for_account(incident.account).approval_default
        return needs_approval(step, rule, incident, self._rules, default)

    def reach(self, incident: Incident) -> Connectors | tuple[Status, str]:
        """The connectors for the incident's account, or why nothing at all may run: a protected
        cluster, or (`_account_reach`) an account this responder cannot act in."""
        protected = self._settings.for_account(incident.account).protected_clusters
        if incident.cluster and any(fnmatchcase(incident.cluster, p) for p in protected):
            return Status.SKIPPED, guardrails.cluster_block(incident.cluster, protected) or ""
        return self._account_reach(incident.account, incident.id)

    def _account_reach(self, account: str, why: str) -> Connectors | tuple[Status, str]:
        """The hub's own connectors, a member's through its spoke role (`why` names the session),
        or why not: an account not managed here, an own account STS cannot establish, a spoke role
        that cannot be assumed (never a fallback to the hub's own credentials)."""
        own = Connectors(self._connector, self._aws, self._identity, self._keys, findings=self._findings,
                         images=self._images)  # fmt: skip
        if not account or self._identity is None:  # no AWS at all (a local kubeconfig): one account only
            return own
        home = self._home_account(why)
        if home == account:
            return own
        refused = self._not_reached(account, home)
        if refused is not None:
            return refused
        try:
            assert self._spokes is not None  # _not_reached checked it
            return self._spokes(account, why)
        except Exception as exc:  # noqa: BLE001 - the reason is the result: nothing runs in that account
            logger.warning("spoke role unavailable", extra={"incident_id": why, "error": brief(exc)})
            return (
                Status.FAILED,
                f"{brief(exc)}: nothing is done in account {account} (never with the hub's credentials)",
            )

    def _not_reached(self, account: str, home: str | None) -> tuple[Status, str] | None:
        if home is None:
            why = "the responder's own account could not be established (STS)"
            return (Status.FAILED, f"{why}: nothing is done in account {account} (never with the hub's credentials)")
        if self._spokes is None or not self._spokes.manages(account):
            if self._settings.managed_accounts:
                return (Status.SKIPPED, f"account {account} is not managed by this responder (MANAGED_ACCOUNTS): "
                                        "reported, nothing done")  # fmt: skip
            return (Status.FAILED, f"the finding is for account {account}, but this responder acts only in its own "
                                   f"account {home}: nothing is done elsewhere")  # fmt: skip
        return None

    def open_session(self, incident: Incident, steps: tuple[Step, ...], mode: Mode, reach: Connectors) -> _Session:
        """The gateways, the resolved targets and the action context for one incident (reads only)."""
        dry_run = mode is Mode.DRY_RUN
        # Without a cluster (an IAM finding about a plain instance), only IAM actions can run.
        no_cluster = guardrails.cluster_block(None, ()) if incident.cluster is None else None
        unreachable: str | None = None
        passing = False  # the cluster could not be reached for a passing reason (down, throttling)
        kube: KubeAPI
        try:
            if incident.cluster is None or reach.kube is None:
                raise ClusterAccessError(no_cluster or "no Kubernetes access configured")
            kube = reach.kube.gateway(
                incident.cluster, incident.region, dry_run=dry_run, account=incident.account or None
            )
            found = targets.resolve(incident, kube)
        except ClusterAccessError as exc:
            unreachable = str(exc)
            passing = faults.transient(exc.__cause__)
        except Exception as exc:  # noqa: BLE001 - reported, never raised: the batch goes on
            unreachable = f"resolving targets failed: {brief(exc)}"
            passing = faults.transient(exc)
        if unreachable is not None:
            # AWS-side containment must not depend on the Kubernetes API the attacker may be attacking.
            kube = cast("KubeAPI", UnreachableKube(unreachable))
            found = targets.aws_only(incident, unreachable) if not no_cluster else targets.Targets()
        kinds = {actions.get(s.action).target_kind for s in steps}
        needs_aws = "instance" in kinds or any(actions.get(s.action).uses_aws for s in steps)
        aws = reach.aws.gateway(incident.region, dry_run=dry_run) if reach.aws and needs_aws else None
        identity = None
        wanted = kinds & (IDENTITY_KINDS | {"key"}) or any(actions.get(s.action).uses_identity for s in steps)
        if reach.identity and wanted:
            identity = reach.identity.gateway(incident.region, dry_run=dry_run)
        keys = reach.keys(incident.region, dry_run=dry_run) if reach.keys and "key" in kinds else None
        found.look_up_identities(incident, None if unreachable else kube, identity)
        held = HeldWrites(kube, dry_run=dry_run)
        ctx = ActionContext(
            incident,
            self._settings.for_account(incident.account),
            cast("KubeAPI", held),
            self._clock(),
            dry_run,
            self._evidence,
            aws,
            identity,
            keys,
            caps=self._caps,
            images=reach.images if "image" in kinds else None,
            accepted_risks=self._rules.accepted_risks,
        )
        # Named only for organisations: one account needs no name, and the lookup is a call.
        alias = reach.identity.alias() if reach.identity and self._settings.managed_accounts else None
        if reach.via:
            named = f"{incident.account} ({alias})" if alias else incident.account
            ctx.notes.append(f"acting in account {named} through its spoke role {reach.via}")
        if incident.hold:
            ctx.notes.append(f"every step waits for a human: {incident.hold}")
        if incident.details.get("malformed"):
            ctx.notes.append(f"malformed in the finding, {incident.details['malformed']}")
        for name in dict.fromkeys(s.action for s in steps):
            waits_for = actions.get(name).held_for(incident)
            if waits_for:
                ctx.notes.append(f"{name} waits for a human: {waits_for}")
        return _Session(ctx, found, unreachable, no_cluster, incident.cluster or "-", held, alias, passing)

    def _execute(
        self, incident: Incident, rule: Rule, mode: Mode, done: Mapping[tuple[str, str], dict[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> Report:  # fmt: skip
        reach = self.reach(incident)
        if isinstance(reach, tuple):
            return self._all(incident, rule, mode, *reach)
        session = self.open_session(incident, rule.actions, mode, reach)
        results: list[ActionResult] = []
        contained: datetime | None = None
        planned: list[PlannedStep] = []
        steps = list(_each_target(rule.actions, session.found))
        carriers = self._carriers(steps, rule, incident, mode, session)
        pending: dict[Key, _Held] = {}
        logged: set[int] = set()
        for position, (index, step, action, params, target) in enumerate(steps):
            blocked = session.blocked(action)
            wait = self._needs_approval(step, rule, incident)
            earlier = (done or {}).get((action.name, str(target))) if target is not None else None
            if earlier is not None and target is not None and _carried_out(earlier):  # an earlier delivery did it
                logged.add(len(results))  # and wrote its line
                _done_earlier(action, target, earlier, PlannedStep(index, action.name, target, step.params, wait,
                                                                   StepState.DONE), results, planned)  # fmt: skip
            elif blocked is not None:
                passing = session.passing and blocked[0] is Status.FAILED
                results.append(ActionResult(action.name, session.where, *blocked, transient=passing))
                planned.append(PlannedStep(index, action.name, target, step.params, wait, StepState.DONE))
            elif target is None:
                results.append(_nothing_to_do(action))
                planned.append(PlannedStep(index, action.name, target, step.params, wait, StepState.DONE))
            elif wait and mode is Mode.LIVE:
                detail = f"waiting for approval: {action.describe(target, params)}"
                results.append(ActionResult(action.name, str(target), Status.AWAITING_APPROVAL, detail))
                planned.append(PlannedStep(index, action.name, target, step.params, True, StepState.WAITING))
            else:
                carrier = carriers.get(position)
                if carrier is not None:
                    with session.held.holding(_key(target)):
                        result = self._run_one(action, target, params, session.ctx)
                    if session.held.held(_key(target)):
                        pending[_key(target)] = _Held(len(results), carrier, steps[carrier][0])
                else:
                    result = self._run_one(action, target, params, session.ctx)
                if wait:  # a dry run proves the step; live, it would wait
                    result = replace(result, detail=f"{result.detail} (waits for approval when live)")
                results.append(result)
                contained = self._contained(result, mode, contained)
                planned.append(PlannedStep(index, action.name, target, step.params, wait, StepState.DONE,
                                           result=outcome_of(result)))  # fmt: skip
            _settle_held(pending, session.held, results, planned, (position, index))
            _log_finished(incident, rule.name, mode, (results, planned), pending, logged, (done or {}, progress))
        evidence = self._evidence_of(incident, results)
        # Kept when steps wait for approval, and when steps changed something a release could put back.
        kept = mode is Mode.LIVE and any(p.state is StepState.WAITING or p.undoable for p in planned)
        plan = self._stored_plan(incident, rule, mode, planned) if kept else None
        said, stored = self._keep(plan)
        notes = (*session.ctx.notes, *session.found.notes, *said)
        numbered = _numbered(results, [p.approval_required for p in planned])
        # Only a stored plan can be approved or released: without one, no message offers buttons.
        shown = plan if stored else None
        return Report(incident, rule.name, None, mode, numbered, notes, evidence, shown, session.alias, contained,
                      frozenset(logged))  # fmt: skip

    def _evidence_of(self, incident: Incident, results: list[ActionResult]) -> str | None:
        """Where the incident's evidence is, when a step wrote some."""
        wrote = any(actions.get(r.action).writes_evidence and r.status is Status.SUCCEEDED for r in results)
        where = evidence_bundle.incident_prefix(incident)
        return self._evidence.location(where) if wrote and self._evidence else None

    def _carriers(
        self, steps: list[tuple[int, Step, Action, Params, Target | None]], rule: Rule, incident: Incident, mode: Mode,
        session: _Session,
    ) -> dict[int, int]:  # fmt: skip
        """Steps whose patch of a pod or node waits for a later step of this run that patches the same
        object (both merge patches): position -> the carrier's position. Only steps that run now count:
        never one waiting for approval, blocked, or without its object."""

        def runs_now(position: int) -> bool:
            _, step, action, _, target = steps[position]
            live_wait = mode is Mode.LIVE and self._needs_approval(step, rule, incident)
            return (target is not None and target.exists and not target.skip_reason and not live_wait
                    and session.blocked(action) is None)  # fmt: skip

        carriers: dict[int, int] = {}
        for position, (_, _, action, _, target) in enumerate(steps):
            if not action.write_may_wait or target is None or target.kind not in {"pod", "node"}:
                continue
            if not runs_now(position):
                continue
            for later in range(position + 1, len(steps)):
                other, other_target = steps[later][2], steps[later][4]
                if other.merges_into_target and other_target is not None and _key(other_target) == _key(target):
                    if runs_now(later):
                        carriers[position] = later
                    break
        return carriers

    def _contained(self, result: ActionResult, mode: Mode, already: datetime | None) -> datetime | None:
        """The time of the first containment step that succeeded live (time to contain ends there)."""
        if already is None and mode is Mode.LIVE and result.status is Status.SUCCEEDED:
            return self._clock() if actions.get(result.action).contains else None
        return already

    def _keep(self, plan: Plan | None) -> tuple[tuple[str, ...], bool]:
        """Store the plan (for approvals and releases): what to tell, and whether it is stored."""
        if plan is None:
            return (), False
        waiting = ", ".join(str(s.index) for s in plan.waiting)
        if self._plans is None:
            lost = f"step(s) {waiting} wait for approval, but no INCIDENTS_TABLE keeps the plan: they will not run"
            return ((lost,) if waiting else ()), False
        try:
            self._plans.put(plan)
        except Exception as exc:  # noqa: BLE001 - the report keeps the prior state; the held steps stay held
            logger.warning("plan not stored", extra={"incident_id": plan.incident.id, "error": brief(exc)})
            lost = (f"step(s) {waiting} wait for approval, but the plan could not be stored ({brief(exc)}): "
                    "they will not run")  # fmt: skip
            return ((lost,) if waiting else ()), False
        if not waiting:
            return (), True
        return (f"waiting for approval until {plan.expires_at}: step(s) {waiting} (the message's buttons, or "
                f"`eks-responder approve {plan.incident.id}`)",), True  # fmt: skip

    def _stored_plan(self, incident: Incident, rule: Rule, mode: Mode, steps: list[PlannedStep]) -> Plan:
        now = self._clock()
        expires = now + timedelta(minutes=self._settings.approval_minutes)
        stamp = now.isoformat()

        def begun(step: PlannedStep) -> PlannedStep:
            step = step.noted("planned", stamp, None, f"rule {rule.name}, {mode.value}")
            if step.state is StepState.WAITING:
                return step.noted("awaiting approval", stamp, None, f"until {expires.isoformat()}")
            if step.result:
                return step.noted("ran", stamp, None, f"{step.result.get('status')}: {step.result.get('detail')}")
            return step

        return Plan(incident, rule.name, mode.value, tuple(begun(s) for s in steps), stamp, expires.isoformat())

    def _home_account(self, why: str) -> str | None:
        """The account the responder's own credentials act in (None when unknown: no STS)."""
        if self._identity is None:
            return None
        try:
            return self._identity.account()
        except Exception as exc:  # noqa: BLE001 - without STS nothing in AWS works either; the actions say so
            logger.warning("own account unknown", extra={"incident_id": why, "error": brief(exc)})
            return None

    def _run_one(self, action: Action, target: Target, params: Any, ctx: ActionContext) -> ActionResult:  # noqa: PLR0911
        started = time.perf_counter()

        def result(
            status: Status, detail: str, prior: dict[str, Any] | None = None, *, passing: bool = False
        ) -> ActionResult:
            elapsed = (time.perf_counter() - started) * 1000
            at = self._clock().isoformat().replace("+00:00", "Z")
            return ActionResult(action.name, str(target), status, detail, elapsed, prior, at=at, transient=passing)

        try:
            check_deadline(f"step {action.name}")
        except DeadlineError as exc:  # recorded as not done: the redelivery does it
            return result(Status.FAILED, str(exc), passing=True)
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
            logger.warning("action failed", extra={"action": action.name, "target": str(target), "error": brief(exc)})
            unsettled = _settled(ctx, action, target, succeeded=False)
            return result(Status.FAILED, brief(exc) + unsettled, passing=faults.transient(exc))
        unsettled = _settled(ctx, action, target, succeeded=outcome.status is Status.SUCCEEDED)
        if unsettled:
            outcome = replace(outcome, detail=outcome.detail + unsettled)
        if ctx.dry_run and outcome.status is Status.SUCCEEDED and dry_run.any_applied(writes):
            # The endpoint made the change: it is reported, and kept for a release, as made.
            logger.error("dry run applied", extra={"action": action.name, "target": str(target)})
            detail = f"APPLIED DESPITE DRY RUN: {outcome.detail} [{dry_run.describe(writes)}]"
            return result(Status.SUCCEEDED, detail, outcome.prior)
        if ctx.dry_run and outcome.status is Status.SUCCEEDED:
            # Say exactly what the dry run proved: which writes the API checked, which were not sent.
            detail = f"dry run: {outcome.detail} [{dry_run.describe(writes)}]"
            return result(Status.PLANNED, detail, outcome.prior)
        if action.shared and ctx.caps is not None and not ctx.dry_run:
            try:
                outcome = _held(ctx.caps, _effect(action, target, ctx.incident), ctx.incident.id, outcome)
            except Exception as exc:  # noqa: BLE001 - the effect is made: its result and prior state are kept
                logger.warning("hold not recorded", extra={"action": action.name, "error": brief(exc)})
                outcome = replace(outcome, detail=f"{outcome.detail}; not recorded as shared ({brief(exc)}): "
                                                  "a release undoes it whatever other incidents rely on")  # fmt: skip
        if outcome.status is Status.SUCCEEDED and not action.reads_back and not outcome.already:
            outcome = replace(outcome, detail=f"{outcome.detail} (not read back)")
        return result(outcome.status, outcome.detail, outcome.prior)

    def _all(self, incident: Incident, rule: Rule, mode: Mode, status: Status, detail: str) -> Report:
        results = tuple(ActionResult(s.action, incident.cluster or "-", status, detail) for s in rule.actions)
        return Report(incident, rule.name, None, mode, results)


class _Session(msgspec.Struct, frozen=True):
    ctx: ActionContext
    found: targets.Targets
    unreachable: str | None
    no_cluster: str | None
    where: str
    held: HeldWrites
    alias: str | None = None
    passing: bool = False  # `unreachable` is a passing fault: the steps it blocks are worth another delivery

    def blocked(self, action: Action) -> tuple[Status, str] | None:
        """Why this action cannot run at all in this session (no cluster, cluster unreachable)."""
        if self.no_cluster and action.target_kind in CLUSTER_KINDS:
            return Status.SKIPPED, self.no_cluster
        if self.unreachable is not None and action.target_kind in {"pod", "node", "binding"}:
            return Status.FAILED, self.unreachable
        return None


def _effect(action: Action, target: Target, incident: Incident) -> str:
    """A shared effect's name: the action, where (account, region, cluster) and on what."""
    return f"{action.name}#{incident.account or '-'}#{incident.region or '-'}#{incident.cluster or '-'}#{target}"


def _held(caps: CapStore, effect: str, incident: str, outcome: Outcome) -> Outcome:
    """Record the incident as a holder of what it made, or of what it found already in place (it
    relies on it too); a join becomes a step with something to release."""
    if outcome.status is Status.SUCCEEDED and outcome.prior:
        caps.hold(effect, incident, outcome.prior)
        return replace(outcome, prior={**outcome.prior, "held": effect})
    if outcome.already and outcome.status is Status.SKIPPED:
        caps.hold(effect, incident)
        detail = (
            f"{outcome.detail}; this incident relies on it too (kept until the last incident that does is released)"
        )
        return Outcome(Status.SUCCEEDED, detail, {"held": effect, "joined": True}, already=True)
    return outcome


def _each_target(
    steps: tuple[Step, ...], found: targets.Targets
) -> Iterator[tuple[int, Step, Action, Params, Target | None]]:
    """Every (index, step, action, parameters, target) in rule order; target None when the
    action has none. The index numbers the plan's steps: what an approval names."""
    index = 1  # steps are numbered from 1, as a human reads the list
    for step in steps:
        action = actions.get(step.action)
        params = parse(step.params, action.params_model)
        chosen: list[Target | None] = [*found.of_kind(action.target_kind)] or [None]
        for target in chosen:
            yield index, step, action, params, target
            index += 1


def _key(target: Target) -> Key:
    return pod_key(target.namespace or "", target.name) if target.kind == "pod" else node_key(target.name)


class _Held(msgspec.Struct, frozen=True):
    result: int  # the holding step's place in the results (and the plan)
    carrier: int  # the position of the step meant to send it
    carrier_index: int  # that step's number, as the report shows it


def _settle_held(pending: dict[Key, _Held], held: HeldWrites, results: list[ActionResult],
                 planned: list[PlannedStep], now: tuple[int, int]) -> None:  # fmt: skip
    """A held patch is reported with its step once it went out: with its carrier's write, on its own
    before a step deleted the object, or on its own once the carrier has run without
    writing the object (failed, skipped, nothing to change). `now`: the step just run (position, number)."""
    position, index = now
    for key, hold in list(pending.items()):
        result = results[hold.result]
        if not held.held(key):
            together = key not in held.alone
            note = f" (sent in one request with step {hold.carrier_index})" if together else (
                f" (sent on its own before step {index} deleted the object)")  # fmt: skip
        elif position >= hold.carrier:  # every carrier is a step of the plan: settled by its end
            try:
                held.send(key)
                note = f" (sent on its own: step {hold.carrier_index} did not write it)"
            except Exception as exc:  # noqa: BLE001 - reported as this step's failure
                logger.warning("held write failed", extra={"action": result.action, "error": brief(exc)})
                note = ""
                result = replace(result, status=Status.FAILED, detail=f"{result.detail}; but the write failed: "
                                 f"{brief(exc)}")  # fmt: skip
        else:
            continue
        results[hold.result] = replace(result, detail=result.detail + note)
        planned[hold.result] = replace(planned[hold.result], result=outcome_of(results[hold.result]))
        del pending[key]


def _settled(ctx: ActionContext, action: Action, target: Target, *, succeeded: bool) -> str:
    """Give back (or keep) the step's blast-radius slot; a failure to is said in the step's detail,
    never raised past it (the step's own outcome stands, and the slot expires within the hour)."""
    try:
        guardrails.settle(ctx, action, target, succeeded=succeeded)
    except Exception as exc:  # noqa: BLE001 - the result of the step is what matters; the lease is bookkeeping
        logger.warning(
            "cap slot not settled", extra={"action": action.name, "target": str(target), "error": brief(exc)}
        )
        return f"; its blast-radius slot was not given back ({brief(exc)}): it frees itself within the hour"
    return ""


def _log_finished(incident: Incident, rule: str, mode: Mode, run: tuple[list[ActionResult], list[PlannedStep]],
                  pending: dict[Key, _Held], logged: set[int],
                  before: tuple[Mapping[tuple[str, str], dict[str, Any]], Progress | None]) -> None:  # fmt: skip
    """Every step whose result is final and not yet logged: its line (and progress) now. A held
    patch's step is final once the patch went out. A step an earlier delivery already logged with
    the same outcome (waiting for approval, skipped by a guardrail) is not logged again; one that
    failed on a passing fault and ran again is: that is a second attempt."""
    results, planned = run
    done, progress = before
    waiting = {hold.result for hold in pending.values()}
    for finished in range(len(results)):
        if finished not in logged and finished not in waiting:
            logged.add(finished)
            earlier = done.get((results[finished].action, results[finished].target))
            if earlier and earlier.get("status") == results[finished].status.value and not earlier.get("transient"):
                continue
            numbered = replace(results[finished], step=finished + 1,
                               approval_required=planned[finished].approval_required)  # fmt: skip
            step_done(incident, rule, mode, numbered, progress)


def step_done(incident: Incident, rule: str | None, mode: Mode, result: ActionResult,
               progress: Progress | None = None, *, what: str = "response", by: str | None = None) -> None:  # fmt: skip
    """A step finished: its audit line now, then (live) the progress record a redelivery resumes from."""
    audit.step(incident, rule, mode.value, result, what=what, by=by)
    if progress is not None and mode is Mode.LIVE:
        progress(result)


def _carried_out(earlier: dict[str, Any]) -> bool:
    """An earlier delivery's step that changed what it had to, with its prior state: never run again."""
    return earlier.get("status") == "succeeded" and "prior" in earlier


def _done_earlier(
    action: Action, target: Target, earlier: dict[str, Any], step: PlannedStep,
    results: list[ActionResult], planned: list[PlannedStep],
) -> None:  # fmt: skip
    """A step an earlier delivery of the incident carried out: reported as done then, with the
    prior state it recorded (so a release still puts it back), and never run again."""
    said = f"done by an earlier delivery of this incident ({earlier.get('at') or '?'}): {earlier.get('detail')}"
    kept = ActionResult(action.name, str(target), Status.SUCCEEDED, said[:1000], 0.0, earlier.get("prior"),
                        at=earlier.get("at"))  # fmt: skip
    results.append(kept)
    planned.append(replace(step, result=outcome_of(kept)))


def _numbered(results: list[ActionResult], waits: list[bool]) -> tuple[ActionResult, ...]:
    """Each result with its step number (one result per step, in plan order) and whether it waits."""
    return tuple(
        replace(r, step=index, approval_required=wait)
        for index, (r, wait) in enumerate(zip(results, waits, strict=True), start=1)
    )


def outcome_of(result: ActionResult) -> dict[str, Any]:
    """What a stored plan keeps of a step's result: enough for the audit trail and its release."""
    return {"status": result.status.value, "detail": result.detail[:1000], "prior": result.prior}


def _same(current: Target, planned: Target | None) -> bool:
    """The target a human approved: same name, and same object where its uid was known."""
    if planned is None or str(current) != str(planned):
        return False
    uids = current.attributes.get("uid"), planned.attributes.get("uid")
    return None in uids or uids[0] == uids[1]


def _nothing_to_do(action: Action) -> ActionResult:
    return ActionResult(action.name, "-", Status.SKIPPED, f"the finding names no {action.target_kind} to act on")


def brief(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."  # noqa: PLR2004
