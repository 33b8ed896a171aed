"""One direction of flow: only executors talk to AWS or Kubernetes; app.py stays cheap to import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDKS = {"boto3", "botocore", "urllib3", "lightkube", "kubernetes", "httpx", "httpx2"}
PURE = [
    "chalicelib/incident.py",
    "chalicelib/sources",
    "chalicelib/policy",
    "chalicelib/actions",
    "chalicelib/response",
    "chalicelib/response/execute.py",
]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_pure_layers_import_no_sdk() -> None:
    for entry in PURE:
        base = ROOT / entry
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
        for path in files:
            assert not (_imports(path) & SDKS), f"{path.relative_to(ROOT)} imports an SDK"


def test_importing_app_loads_no_sdk() -> None:
    code = (
        "import json, sys, app; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SDKS)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"},
    ).stdout
    # Powertools imports the bare botocore package (for its user agent): cheap, and no client code.
    assert [m for m in json.loads(out) if m != "botocore"] == []


@pytest.mark.parametrize("name", ["../../api/v1/namespaces/kube-system/secrets", "%2e%2e%2fkube-system", "x/../y"])
def test_a_service_account_name_is_a_name(name: str) -> None:
    """A service account name that is no name never becomes a principal (a request path): it is left
    out, named as malformed, and the rest of the finding (the pod) is still handled."""
    from chalicelib.sources import registry
    from tests.conftest import load_event

    event = load_event("execution-runtime-reverse-shell")
    event["detail"]["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]["serviceAccountName"] = name
    incident = registry.to_incident(event)
    assert not [p for p in incident.principals if name in p.name]
    assert incident.details["malformed"] == "one service-account principal (its name or ARN is not one): left out"
    assert incident.pods


def test_the_installed_package_imports_nothing_from_the_repository_outside_it() -> None:
    """`pip install .` ships chalicelib only: `eks-responder doctor` (or anything) importing the
    repository's deploy/ or devstack/ fails with ModuleNotFoundError in an installed environment."""
    outside = {"deploy", "devstack", "tests", "bench", "app"}
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        assert not (_imports(path) & outside), f"{path.relative_to(ROOT)} imports {_imports(path) & outside}"
