"""ServiceNow tickets through the Table API: one ticket per incident, created the first time the
incident changes something or waits for a human, and a work note for every later report of it
(each step's outcome, approvals, the release).

"Once per incident" without state of the responder's own: the ticket carries the incident in its
`correlation_id`, and the responder asks for that before it creates one, so a redelivery, an
approval in another function or a release a week later all find the same ticket. ServiceNow
renders a journal entry's `[code]...[/code]` as HTML: that tag is broken apart in every value.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from chalicelib.interfaces import IAMStatement
from chalicelib.notifiers import facts, http, secrets

CORRELATION_DISPLAY = "eks-responder"
CORRELATION_LIMIT = 100  # the field's length
SHORT_LIMIT = 160
NOTE_LIMIT = 8000
DESCRIPTION_LIMIT = 4000  # the incident table's description field
URGENCY = {"critical": "1", "high": "1", "medium": "2", "low": "3"}
TICKETED = (facts.CONTAINED, facts.FAILED, facts.AWAITING, facts.RELEASED)
_PLAIN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,80}$")
_SYS_ID = re.compile(r"^[0-9a-f]{32}$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,79}$")
_FIELDS = "sysparm_fields=sys_id,number&sysparm_limit=1"
_CODE_TAG = re.compile(r"(?i)\[(/?\s*code\s*)\]")


def correlation_id(incident_id: str) -> str:
    """The incident as the ticket's correlation id: as it is when plain and short, else its hash."""
    if _PLAIN_ID.match(incident_id):
        return f"eks-responder:{incident_id}"
    return f"eks-responder:sha256:{hashlib.sha256(incident_id.encode()).hexdigest()}"


def inert(value: Any) -> str:
    return _CODE_TAG.sub(r"(\1)", str(value))


def note(found: facts.Facts) -> str:
    lines = [found.summary()]
    lines += [f"  {s.line()}" for s in found.steps]
    if found.by:
        lines.append(f"by {found.by}")
    if found.timeline:
        lines.append(f"timeline: {found.timeline}")
    return inert("\n".join(lines))[:NOTE_LIMIT]


def ticket(found: facts.Facts) -> dict[str, Any]:
    """The new ticket's fields."""
    described = [found.title, "", *(f"{label}: {value}" for label, value in found.fields), ""]
    if found.link:
        described.append(f"AWS console: {found.link}")
    described.append(f"Incident {found.incident_id}, rule {found.rule or 'none'}; timeline: {found.timeline}")
    assert found.incident_id is not None
    return {
        "short_description": inert(f"eks-responder: {found.headline}")[:SHORT_LIMIT],
        "description": inert("\n".join(described))[:DESCRIPTION_LIMIT],
        "correlation_id": correlation_id(found.incident_id),
        "correlation_display": CORRELATION_DISPLAY,
        "urgency": URGENCY.get(found.severity, "2"),
        "impact": URGENCY.get(found.severity, "2"),
        "category": "security",
        "work_notes": note(found),
    }


def wanted(report: dict[str, Any]) -> facts.Facts | None:
    found = facts.of(report)
    if found.incident_id is None or found.dry_run:
        return None
    if found.status not in TICKETED and found.kind != facts.REJECTION:  # a human's "no" goes on the ticket too
        return None
    return found


class ServiceNowNotifier:
    name = "servicenow"

    def __init__(self, instance_url: str, credentials: Callable[[], dict[str, Any]], table: str = "incident") -> None:
        self._base = http.checked_url(instance_url.rstrip("/"), "SERVICENOW_INSTANCE_URL")
        self._credentials = credentials
        if not _TABLE.match(table):
            raise RuntimeError(f"SERVICENOW_TABLE={table!r}: a table name (lowercase letters, digits, _)")
        self._table = table

    def _auth(self) -> dict[str, str]:
        found = self._credentials()
        if found.get("token"):
            return {"Authorization": f"Bearer {found['token']}"}
        pair = f"{found.get('username', '')}:{found.get('password', '')}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}

    def find(self, incident_id: str, auth: dict[str, str]) -> str | None:
        query = quote(f"correlation_id={correlation_id(incident_id)}", safe="=")
        url = f"{self._base}/api/now/table/{self._table}?sysparm_query={query}&{_FIELDS}"
        _, answer = http.send(url, None, method="GET", headers=auth, what="ServiceNow")
        rows = answer.get("result") if isinstance(answer, dict) else None
        first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
        sys_id = str(first.get("sys_id") or "")
        return sys_id if _SYS_ID.match(sys_id) else None

    def send(self, report: dict[str, Any]) -> None:
        found = wanted(report)
        if found is None:
            return
        assert found.incident_id is not None
        auth = self._auth()
        existing = self.find(found.incident_id, auth)
        if existing is None:
            http.send(f"{self._base}/api/now/table/{self._table}", ticket(found), headers=auth, what="ServiceNow")
        else:
            http.send(f"{self._base}/api/now/table/{self._table}/{existing}",
                      {"work_notes": note(found)}, method="PATCH", headers=auth, what="ServiceNow")  # fmt: skip


def permissions(stage_env: dict[str, str]) -> list[IAMStatement]:
    return secrets.permissions(stage_env.get("SERVICENOW_CREDENTIALS_SECRET"))
