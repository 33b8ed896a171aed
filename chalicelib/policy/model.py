"""The rules file's schema. Strict: unknown keys and wrong types are errors."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from msgspec import Meta, field

from chalicelib.incident import PrincipalKind, ResourceKind, Severity
from chalicelib.validation import Strict

SeverityName = Literal["low", "medium", "high", "critical"]
ApprovalName = Literal["auto", "required"]


class Match(Strict, frozen=True):
    """Every condition given must hold; a list matches when any entry matches (globs allowed)."""

    sources: tuple[str, ...] = ()
    finding_types: tuple[str, ...] = ()
    exclude_finding_types: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    min_severity: SeverityName | None = None
    max_severity: SeverityName | None = None
    resource_kinds: tuple[ResourceKind, ...] = ()
    privileged: bool | None = None
    failed: bool | None = None  # the recorded API call failed (CloudTrail errorCode)
    # the kind of identity the finding names: iam-role, iam-user, service-account, kubernetes-user, anonymous, ...
    caller_kinds: tuple[PrincipalKind, ...] = ()
    accounts: tuple[str, ...] = ()
    exclude_accounts: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    exclude_clusters: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    # Image scans (ECR, Inspector)
    repositories: tuple[str, ...] = ()
    exclude_repositories: tuple[str, ...] = ()
    image_tags: tuple[str, ...] = ()  # the image carries a tag matching one of these
    exclude_image_tags: tuple[str, ...] = ()
    exploit_available: bool | None = None
    fix_available: bool | None = None
    min_cvss: Annotated[float, Meta(ge=0, le=10)] | None = None
    min_epss: Annotated[float, Meta(ge=0, le=1)] | None = None

    def __post_init__(self) -> None:
        if self.min_severity and self.max_severity:
            low, high = Severity.parse(self.min_severity), Severity.parse(self.max_severity)
            if low > high:
                raise ValueError(f"min_severity {self.min_severity} is above max_severity {self.max_severity}")


class Step(Strict, frozen=True):
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    approval: ApprovalName | None = None  # this step only; else the rule's, else the approvals policy


class Rule(Strict, frozen=True):
    name: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    description: str = ""
    match: Match = field(default_factory=Match)
    actions: tuple[Step, ...] = ()
    reason: str | None = None  # said when a rule deliberately does nothing
    dry_run: bool = False  # plan only, whatever the global switch says
    approval: ApprovalName | None = None  # every step of the rule that does not say

    def __post_init__(self) -> None:
        if not self.actions and not self.reason:
            raise ValueError("a rule with no actions needs a `reason` saying why nothing is done")


class AcceptedRisk(Strict, frozen=True):
    """A CVE someone decided to live with, in some repositories, until a date."""

    cve: Annotated[str, Meta(pattern=r"^CVE-\d{4}-\d{4,7}$")]
    repositories: Annotated[tuple[str, ...], Meta(min_length=1)]  # globs
    expires: date
    reason: Annotated[str, Meta(min_length=1)]


class ApprovalPolicy(Strict, frozen=True, kw_only=True):
    """Whether a step waits for a human, for steps whose rule does not say: the first entry whose
    action globs and match fit the step and the incident decides; APPROVAL_DEFAULT after that."""

    description: str = ""
    actions: tuple[str, ...] = ("*",)  # action name globs
    match: Match = field(default_factory=Match)
    approval: ApprovalName


class RulesFile(Strict, frozen=True, kw_only=True):
    version: Literal[1]
    accepted_risks: tuple[AcceptedRisk, ...] = ()
    approvals: tuple[ApprovalPolicy, ...] = ()
    rules: Annotated[tuple[Rule, ...], Meta(min_length=1)]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
