"""Shared helpers: where events live, and how to load them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
# Public samples whose licences allow copying, with their provenance (tests/samples/PROVENANCE.md),
# and bare findings the project wrote (guardduty/own). The whole public corpus is the optional
# conformance run (tests/conformance, `make conformance SAMPLES=DIR`).
SAMPLES = ROOT / "tests" / "samples"
GUARDDUTY_SAMPLES = SAMPLES / "guardduty"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def load_event(name: str) -> dict[str, Any]:
    """An event from the project's events/guardduty folder, by file stem."""
    data: dict[str, Any] = load_json(EVENTS / "guardduty" / f"{name}.json")
    return data


def sample_files() -> list[Path]:
    files = sorted(GUARDDUTY_SAMPLES.rglob("*.json"))
    assert files, f"no GuardDuty samples found under {GUARDDUTY_SAMPLES}"
    return files


def event_files() -> list[Path]:
    files = sorted((EVENTS / "guardduty").glob("*.json"))
    assert files, "events/guardduty is empty"
    return files


@pytest.fixture(autouse=True)
def _quiet_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.fixture(autouse=True)
def _lambda_timeout_in_the_test_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chalice's test client gives every invocation a 3-second context whatever the function's
    timeout; Lambda (and `chalice local`) give the configured one (120 s here). The responder reads
    the deadline, so the tests' invocations get what the deployed functions get."""
    import chalice.test
    from chalice.local import LambdaContext

    class Configured(LambdaContext):
        def __init__(self, function_name: str, memory_size: int, max_runtime_ms: int = 120_000, **kw: Any) -> None:
            super().__init__(function_name, memory_size, max_runtime_ms, **kw)

    monkeypatch.setattr(chalice.test, "LambdaContext", Configured)
