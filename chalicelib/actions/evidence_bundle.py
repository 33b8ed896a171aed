"""Write a set of evidence files and their SHA-256 manifest (who, when, what) in one place."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from chalicelib.actions.base import ActionContext
from chalicelib.incident import Incident
from chalicelib.settings import MANAGED_BY

MANIFEST = "MANIFEST.json"


def as_json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()


def incident_prefix(incident: Incident) -> str:
    """Where an incident's evidence lives: by account and region first, so a member account's
    evidence can be kept, listed, granted or expired by prefix in the hub's one store."""
    return f"{incident.account or 'unknown-account'}/{incident.region or 'unknown-region'}/{incident.id}"


def write(ctx: ActionContext, base: str, files: dict[str, bytes], about: dict[str, Any]) -> str:
    """Write `files` under `base`, then MANIFEST.json (last, so its presence means complete)."""
    assert ctx.evidence is not None
    entries = []
    for rel, data in files.items():
        ctx.evidence.put(f"{base}/{rel}", data, "application/json" if rel.endswith(".json") else "text/plain")
        entries.append({"file": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    manifest = {
        "incident_id": ctx.incident.id,
        "finding_type": ctx.incident.type,
        "account": ctx.incident.account,  # a member's evidence sits in the hub's store: say whose it is
        "region": ctx.incident.region,
        "cluster": ctx.incident.cluster,
        **about,
        "captured_at": ctx.now.isoformat(),
        "captured_by": os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or f"{MANAGED_BY}/{ctx.settings.stage}",
        "files": entries,
    }
    return ctx.evidence.put(f"{base}/{MANIFEST}", as_json(manifest), "application/json")
