"""A small Kubernetes REST client on urllib3, which botocore already loads.

The responder speaks to a dozen resource kinds with get, list, merge patch, create, delete and a
pod's log, as JSON. A general client library (lightkube, with httpx, anyio, HTTP/2 and typed
models) cost about 100 ms of every cold start for that; this is the part of it the responder uses.

TLS is always verified (the cluster's CA from DescribeCluster or the kubeconfig); a kubeconfig
that turns verification off is refused. Authentication: a bearer token (EKS's signed token), a
token file, a client certificate, or an `exec` credential plugin (`aws eks get-token`), as
`kubectl` reads them.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
import urllib3

from chalicelib.errors import ClusterAccessError

PAGE = 500  # items per list request; the rest is fetched with the continue token
MAX_PAGES = 200  # a list bigger than 100,000 objects is an error, not a memory exhaustion
MAX_BODY = 64 * 1024 * 1024
EXEC_TIMEOUT = 30.0
EXEC_DEFAULT_LIFETIME = 600.0  # a plugin's token that states no expiry
EXEC_MARGIN = 60.0


class ApiError(Exception):
    """The API server answered with an error status (its Status message, or the text it sent)."""

    def __init__(self, code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after = retry_after  # seconds the server asked to wait (429, 503), when it said


def _seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the API server sends whole seconds; a date is not read)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class TransportError(Exception):
    """No answer: the connection failed, was reset, or timed out."""


class Kind(msgspec.Struct, frozen=True):
    """Where a resource kind lives in the API."""

    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace and namespace != "*":
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if sub is not None:
            base += f"/{sub}"
        return base


POD = Kind("", "v1", "pods", namespaced=True)
NODE = Kind("", "v1", "nodes", namespaced=False)
SERVICE = Kind("", "v1", "services", namespaced=True)
SERVICE_ACCOUNT = Kind("", "v1", "serviceaccounts", namespaced=True)
CONFIG_MAP = Kind("", "v1", "configmaps", namespaced=True)
EVENT = Kind("", "v1", "events", namespaced=True)
DAEMON_SET = Kind("apps", "v1", "daemonsets", namespaced=True)
REPLICA_SET = Kind("apps", "v1", "replicasets", namespaced=True)
JOB = Kind("batch", "v1", "jobs", namespaced=True)
NETWORK_POLICY = Kind("networking.k8s.io", "v1", "networkpolicies", namespaced=True)
CLUSTER_ROLE_BINDING = Kind("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)
ROLE_BINDING = Kind("rbac.authorization.k8s.io", "v1", "rolebindings", namespaced=True)
ACCESS_REVIEW = Kind("authorization.k8s.io", "v1", "selfsubjectaccessreviews", namespaced=False)


def generic(api_version: str, kind: str, *, namespaced: bool) -> Kind:
    """Any API's kind (plural by English rule, as CRDs name them)."""
    group, _, version = api_version.rpartition("/")
    plural = kind.lower()[:-1] + "ies" if kind.endswith("y") else kind.lower() + "s"
    return Kind(group, version, plural, namespaced)


@dataclass(frozen=True)
class Access:
    """How to reach one cluster: its address, the CA to verify it by, and how to authenticate."""

    server: str
    ca_data: bytes | None = None  # PEM
    token: str | None = None
    token_file: str | None = None
    cert: tuple[bytes, bytes] | None = None  # client certificate and key, PEM
    exec_spec: dict[str, Any] | None = field(default=None, repr=False)


class Kubeconfig:
    """The parts of a kubeconfig the responder reads: contexts, clusters and users by name."""

    def __init__(self, doc: dict[str, Any], base: Path | None = None) -> None:
        if not isinstance(doc, dict):
            raise ClusterAccessError("the kubeconfig is not a mapping")
        self._base = base
        self.clusters = _named(doc, "clusters", "cluster")
        self.users = _named(doc, "users", "user")
        self.contexts = _named(doc, "contexts", "context")

    @classmethod
    def from_file(cls, path: Path) -> Kubeconfig:
        from chalicelib import validation

        return cls(validation.load_text(Path(path).read_text(encoding="utf-8")), Path(path).parent)

    def context_cluster(self, context: str) -> str:
        return str(self.contexts.get(context, {}).get("cluster") or "")

    def access(self, context: str) -> Access:
        entry = self.contexts.get(context)
        if entry is None:
            raise ClusterAccessError(f"no context {context!r} in the kubeconfig")
        cluster = self.clusters.get(str(entry.get("cluster") or ""))
        if cluster is None or not cluster.get("server"):
            raise ClusterAccessError(f"context {context!r} names no cluster with a server address")
        if cluster.get("insecure-skip-tls-verify"):
            raise ClusterAccessError(f"context {context!r} turns TLS verification off: the responder never does")
        user = self.users.get(str(entry.get("user") or ""), {})
        cert = None
        if user.get("client-certificate-data") or user.get("client-certificate"):
            cert = (self._bytes(user, "client-certificate"), self._bytes(user, "client-key"))
        return Access(
            server=str(cluster["server"]).rstrip("/"),
            ca_data=self._bytes(cluster, "certificate-authority") if _has(cluster, "certificate-authority") else None,
            token=str(user["token"]) if user.get("token") else None,
            token_file=self._path(str(user["tokenFile"])) if user.get("tokenFile") else None,
            cert=cert,
            exec_spec=dict(user["exec"]) if isinstance(user.get("exec"), dict) else None,
        )

    def _path(self, value: str) -> str:
        path = Path(value)
        return str(path if path.is_absolute() or self._base is None else self._base / path)

    def _bytes(self, entry: dict[str, Any], key: str) -> bytes:
        """`<key>-data` (base64) or the file `<key>` names."""
        if entry.get(f"{key}-data"):
            return base64.b64decode(str(entry[f"{key}-data"]))
        return Path(self._path(str(entry[key]))).read_bytes()


def _has(entry: dict[str, Any], key: str) -> bool:
    return bool(entry.get(f"{key}-data") or entry.get(key))


def _named(doc: dict[str, Any], section: str, inner: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in doc.get(section) or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get(inner), dict):
            found[item["name"]] = item[inner]
    return found


def _exec_token(spec: dict[str, Any]) -> tuple[str, float]:
    """Run the kubeconfig's credential plugin (`aws eks get-token`, say): its token, and until when
    (monotonic seconds) to use it: a minute before the expiry it states, else for ten minutes."""
    command = [str(spec.get("command") or ""), *(str(a) for a in spec.get("args") or [])]
    extra = {str(e["name"]): str(e["value"]) for e in spec.get("env") or [] if isinstance(e, dict) and "name" in e}
    try:
        done = subprocess.run(command, env={**os.environ, **extra}, capture_output=True, text=True,  # noqa: S603
                              timeout=EXEC_TIMEOUT, check=True)  # fmt: skip
        status = json.loads(done.stdout)["status"]
        token = str(status["token"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as exc:
        raise ClusterAccessError(f"the kubeconfig's credential plugin {command[0]!r} gave no token: {exc}") from None
    lifetime = EXEC_DEFAULT_LIFETIME
    stamp = status.get("expirationTimestamp") if isinstance(status, dict) else None
    if isinstance(stamp, str):
        try:
            left = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - time.time()
            lifetime = max(0.0, left - EXEC_MARGIN)
        except ValueError:
            pass
    return token, time.monotonic() + lifetime


class KubeClient:
    """JSON over HTTPS to one API server, with the responder's field manager on every write."""

    def __init__(self, access: Access, *, timeout: float = 10.0, field_manager: str = "eks-responder") -> None:
        self.server = access.server
        self._access = access
        self._field_manager = field_manager
        context = ssl.create_default_context(cadata=access.ca_data.decode() if access.ca_data else None)
        # The chain is verified by the context; the host name by urllib3 itself, which matches IP
        # address SANs too (urllib3 1.26, in older Lambda runtimes, fails an IP with Python's check).
        context.check_hostname = False
        if access.cert:
            _load_cert(context, *access.cert)
        self._pool = urllib3.PoolManager(ssl_context=context, cert_reqs="CERT_REQUIRED", retries=False, maxsize=4,
                                         timeout=urllib3.Timeout(connect=timeout, read=timeout))  # fmt: skip
        self._token = access.token
        self._exec: tuple[str, float] | None = None  # a credential plugin's token and until when to use it

    def _authorization(self) -> dict[str, str]:
        token = self._token
        if token is None and self._access.token_file:
            token = Path(self._access.token_file).read_text(encoding="utf-8").strip()  # rotated by its owner
        if token is None and self._access.exec_spec:
            if self._exec is None or self._exec[1] <= time.monotonic():
                self._exec = _exec_token(self._access.exec_spec)
            token = self._exec[0]
        return {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json") -> Any:  # fmt: skip
        """The decoded JSON answer (or the text of a log); ApiError for an error status."""
        url = self.server + path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json", **self._authorization()}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), content_type
        try:
            answer = self._pool.request(method, url, body=data, headers=headers, preload_content=False)
            try:
                raw = answer.read(MAX_BODY + 1)
            finally:
                answer.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(f"{method} {path}: {exc}") from None
        if len(raw) > MAX_BODY:
            raise TransportError(f"{method} {path}: an answer over {MAX_BODY} bytes")
        text = raw.decode("utf-8", "replace")
        if answer.status >= 400:  # noqa: PLR2004
            raise ApiError(answer.status, _message(text), _seconds(answer.headers.get("Retry-After")))
        if answer.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(text)
        return text

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        return dict(self.request("GET", kind.path(namespace, name)))

    def items(
        self, kind: Kind, namespace: str | None = None, fields: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a list, page by page."""
        return list(self._pages(kind, namespace, fields))

    def _pages(self, kind: Kind, namespace: str | None, fields: dict[str, str] | None) -> Iterator[dict[str, Any]]:
        query: dict[str, Any] = {"limit": PAGE}
        if fields:
            query["fieldSelector"] = ",".join(f"{k}={v}" for k, v in fields.items())
        for _ in range(MAX_PAGES):
            page = self.request("GET", kind.path(namespace), query)
            yield from page.get("items") or []
            after = (page.get("metadata") or {}).get("continue")
            if not after:
                return
            query["continue"] = after
        raise TransportError(f"list of {kind.plural} longer than {PAGE * MAX_PAGES} items")

    def _write_query(self, dry_run: bool) -> dict[str, Any]:
        query: dict[str, Any] = {"fieldManager": self._field_manager}
        if dry_run:
            query = {"dryRun": "All", **query}
        return query

    def patch(self, kind: Kind, name: str, patch: dict[str, Any], namespace: str | None = None, *,
              dry_run: bool = False) -> dict[str, Any]:  # fmt: skip
        """A JSON merge patch; the object as it stands after it."""
        return dict(self.request("PATCH", kind.path(namespace, name), self._write_query(dry_run), patch,
                                 "application/merge-patch+json"))  # fmt: skip

    def create(self, kind: Kind, body: dict[str, Any], namespace: str | None = None, *,
               dry_run: bool = False) -> dict[str, Any]:  # fmt: skip
        return dict(self.request("POST", kind.path(namespace), self._write_query(dry_run), body))

    def delete(self, kind: Kind, name: str, namespace: str | None = None, *, dry_run: bool = False,
               grace_period: int | None = None) -> None:  # fmt: skip
        query: dict[str, Any] = {"dryRun": "All"} if dry_run else {}
        if grace_period is not None:
            query["gracePeriodSeconds"] = grace_period
        self.request("DELETE", kind.path(namespace, name), query)

    def log(self, name: str, namespace: str, container: str, tail_lines: int) -> str:
        query = {"container": container, "tailLines": tail_lines}
        return str(self.request("GET", POD.path(namespace, name, "log"), query))

    def close(self) -> None:
        self._pool.clear()


def _message(text: str) -> str:
    """The Status message of an error answer, or its text (a group nobody serves answers in plain text)."""
    try:
        status = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "no message"
    return str(status.get("message") or text)[:500] if isinstance(status, dict) else text[:500]


def _load_cert(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads a client certificate from files only: written to private temporary files for the load."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, data in (("cert.pem", cert), ("key.pem", key)):
            path = Path(folder) / name
            path.touch(mode=0o600)
            path.write_bytes(data)
            paths.append(str(path))
        context.load_cert_chain(paths[0], paths[1])
