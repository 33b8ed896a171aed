"""Member accounts of an organization: the spoke role, assumed once per account and kept until
shortly before its credentials expire.

The account is the finding's own (`account` of the GuardDuty finding, the CloudTrail record, the
scan event), checked at the boundary. There is never a fallback: when the spoke role cannot be
assumed, nothing is done in that account, and the steps fail with the reason.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.interfaces import IAMStatement

REFRESH_MARGIN = 300.0  # seconds before expiry when credentials are assumed again
DURATION = 3600  # seconds the spoke credentials are asked for
_UNSAFE = re.compile(r"[^\w+=,.@-]")


def session_name(incident_id: str) -> str:
    """An STS session name that names the incident (64 characters of [\\w+=,.@-])."""
    return ("eks-responder-" + _UNSAFE.sub("-", incident_id))[:64]


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    """Assuming the spoke role in member accounts (any account's role of that exact name)."""
    from chalicelib.settings import Settings

    current = Settings.from_env(stage_env)
    if not current.managed_accounts:
        return []
    units = [e for e in current.managed_accounts if _OU.match(e)]
    listed = [e for e in current.managed_accounts if not _OU.match(e)]
    accounts = ["*"] if "*" in listed or units else listed  # a unit's accounts are known only at run time
    found = [IAMStatement(("sts:AssumeRole",), tuple(f"arn:aws:iam::{a}:role/{current.spoke_role}" for a in accounts))]
    if units:
        found.append(
            IAMStatement(("organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent"))
        )
    return found


def naming_permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    """Reading the account's alias for messages, done only where accounts are many."""
    from chalicelib.executors.identity import ALIAS
    from chalicelib.settings import Settings

    return list(ALIAS) if Settings.from_env(stage_env).managed_accounts else []


class SpokeUnavailableError(Exception):
    """The spoke role of an account could not be assumed: nothing is done there."""


@dataclass
class _Held:
    session: Any
    expires: float


class SpokeCredentials:
    """boto3 sessions in member accounts, through `sts:AssumeRole` from the hub's own session."""

    def __init__(
        self,
        hub: Callable[[], Any],
        role: str,
        external_id: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hub = hub
        self._role = role
        self._external_id = external_id
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self.assumed = 0  # AssumeRole calls made (the bench reports them)

    def role_arn(self, account: str) -> str:
        return f"arn:aws:iam::{account}:role/{self._role}"

    def session(self, account: str, incident_id: str) -> Any:
        with self._lock:
            held = self._held.get(account)
            if held is not None and held.expires - self._clock() > REFRESH_MARGIN:
                return held.session
            held = self._assume(account, incident_id)
            self._held[account] = held
            return held.session

    def _assume(self, account: str, incident_id: str) -> _Held:
        import boto3

        hub = self._hub()
        arn = self.role_arn(account)
        extra = {"ExternalId": self._external_id} if self._external_id else {}
        try:
            answer = hub.client("sts").assume_role(
                RoleArn=arn, RoleSessionName=session_name(incident_id), DurationSeconds=DURATION, **extra
            )
        except Exception as exc:
            raise SpokeUnavailableError(f"cannot assume {arn}: {type(exc).__name__}: {exc}") from exc
        self.assumed += 1
        creds = answer["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=hub.region_name,
        )
        expiration = creds["Expiration"]
        expires = expiration.timestamp() if isinstance(expiration, datetime) else self._clock() + DURATION
        return _Held(session, expires)


_OU = re.compile(r"^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$")
MEMBERS_TTL = 900.0  # seconds an organizational unit's member list is used before it is read again


class ManagedAccounts:
    """MANAGED_ACCOUNTS: account ids, `*`, or organizational unit (and root) ids whose accounts,
    in every nested unit, are read from Organizations and cached. A unit that cannot be read
    manages nothing (the finding is reported, and nothing is done)."""

    def __init__(self, entries: tuple[str, ...], hub: Callable[[], Any], clock: Callable[[], float] = time.monotonic):
        self._accounts = {e for e in entries if not _OU.match(e)}
        self._units = [e for e in entries if _OU.match(e)]
        self._hub = hub
        self._clock = clock
        self._members: tuple[float, set[str]] | None = None

    def members(self) -> list[str]:
        """The accounts that can be named: the listed ones and the units' (`*` names none)."""
        listed = sorted(a for a in self._accounts if a != "*")
        return listed + sorted(self._unit_members() - set(listed)) if self._units else listed

    def __contains__(self, account: object) -> bool:
        if "*" in self._accounts or account in self._accounts:
            return True
        return bool(self._units) and account in self._unit_members()

    def _unit_members(self) -> set[str]:
        if self._members is not None and self._clock() - self._members[0] < MEMBERS_TTL:
            return self._members[1]
        import logging

        found: set[str] = set()
        try:
            organizations = self._hub().client("organizations")
            pending = list(self._units)
            while pending:
                parent = pending.pop()
                for page in organizations.get_paginator("list_accounts_for_parent").paginate(ParentId=parent):
                    found.update(str(a["Id"]) for a in page["Accounts"] if a.get("Status", "ACTIVE") == "ACTIVE")
                for page in organizations.get_paginator("list_organizational_units_for_parent").paginate(
                    ParentId=parent
                ):
                    pending.extend(str(u["Id"]) for u in page["OrganizationalUnits"])
        except Exception as exc:  # noqa: BLE001 - unreadable: manage nothing rather than guess
            logging.getLogger("eks_responder").warning("organizational units not read", extra={"error": str(exc)})
            return set()
        self._members = (self._clock(), found)
        return found


class Spokes:
    """(account, incident id) -> what reaches that account, built on its spoke credentials and
    rebuilt whenever they are assumed again."""

    def __init__(
        self, credentials: SpokeCredentials, build: Callable[[Callable[[], Any], str], Any], managed: ManagedAccounts
    ) -> None:
        self.credentials = credentials
        self._build = build
        self._built: dict[str, tuple[Any, Any]] = {}
        self._managed = managed

    def manages(self, account: str) -> bool:
        return account in self._managed

    def members(self) -> list[str]:
        return self._managed.members()

    def __call__(self, account: str, incident_id: str) -> Any:
        session = self.credentials.session(account, incident_id)
        cached = self._built.get(account)
        if cached is not None and cached[0] is session:
            return cached[1]

        def spoke() -> Any:
            return session

        found = self._build(spoke, self.credentials.role_arn(account))
        self._built[account] = (session, found)
        return found
