"""The rules file's schema. Strict: unknown keys and wrong types are errors."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.incident import PrincipalKind, ResourceKind, Severity

SeverityName = Literal["low", "medium", "high", "critical"]
ApprovalName = Literal["auto", "required"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
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
    min_cvss: float | None = Field(default=None, ge=0, le=10)
    min_epss: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _severity_range(self) -> Match:
        if self.min_severity and self.max_severity:
            low, high = Severity.parse(self.min_severity), Severity.parse(self.max_severity)
            if low > high:
                raise ValueError(f"min_severity {self.min_severity} is above max_severity {self.max_severity}")
        return self


class Step(_Strict):
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    approval: ApprovalName | None = None  # this step only; else the rule's, else the approvals policy


class Rule(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    match: Match = Field(default_factory=Match)
    actions: tuple[Step, ...] = ()
    reason: str | None = None  # said when a rule deliberately does nothing
    dry_run: bool = False  # plan only, whatever the global switch says
    approval: ApprovalName | None = None  # every step of the rule that does not say

    @model_validator(mode="after")
    def _reason_for_no_action(self) -> Rule:
        if not self.actions and not self.reason:
            raise ValueError("a rule with no actions needs a `reason` saying why nothing is done")
        return self


class AcceptedRisk(_Strict):
    """A CVE someone decided to live with, in some repositories, until a date."""

    cve: str = Field(pattern=r"^CVE-\d{4}-\d{4,7}$")
    repositories: tuple[str, ...] = Field(min_length=1)  # globs
    expires: date
    reason: str = Field(min_length=1)


class ApprovalPolicy(_Strict):
    """Whether a step waits for a human, for steps whose rule does not say: the first entry whose
    action globs and match fit the step and the incident decides; APPROVAL_DEFAULT after that."""

    description: str = ""
    actions: tuple[str, ...] = ("*",)  # action name globs
    match: Match = Field(default_factory=Match)
    approval: ApprovalName


class RulesFile(_Strict):
    version: Literal[1]
    accepted_risks: tuple[AcceptedRisk, ...] = ()
    approvals: tuple[ApprovalPolicy, ...] = ()
    rules: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return rules
