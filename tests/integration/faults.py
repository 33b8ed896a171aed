"""A fault-injecting HTTP proxy between the responder and a real local server (loopback only).

It terminates TLS with the API server's own serving certificate (the CA the kubeconfig trusts),
so it can answer like the server would: a status code, a stall, or a dropped connection, for the
first N requests (or all of them), and pass everything else through to the real server.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Fault:
    kind: str  # "status", "stall", "reset"
    times: int  # how many requests it hits; -1 for all
    status: int = 503
    methods: tuple[str, ...] = ("GET", "POST", "PATCH", "PUT", "DELETE")
    body: bytes | None = None  # default: a Kubernetes Status
    when: bytes | None = None  # only requests whose body contains this
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = field(default=0)


class FaultProxy:
    def __init__(self, upstream: str, *, cert: Path | None = None, key: Path | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self.times: list[float] = []  # when each request came (time.monotonic)
        self.release = threading.Event()  # stalled requests wait for it (set at close)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                proxy.times.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = next(
                    (f for f in proxy.faults if self.command in f.methods and (f.times < 0 or f.hits < f.times)
                     and (f.when is None or f.when in body)),
                    None,
                )  # fmt: skip
                if fault is not None:
                    fault.hits += 1
                    if fault.kind == "reset":
                        self.close_connection = True
                        self.connection.close()
                        return
                    if fault.kind == "stall":
                        proxy.release.wait(30)  # the client's timeout fires first; released at close
                        self.close_connection = True
                        return
                    self._answer(
                        fault.status, fault.body or _status_body(fault.status), fault.content_type, fault.headers
                    )
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                up = proxy.upstream
                if up.scheme == "https":
                    context = ssl.create_default_context(cafile=str(cert))
                    conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                        up.hostname or "127.0.0.1", up.port, context=context, timeout=30
                    )
                else:
                    conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _answer(
                self,
                status: int,
                body: bytes,
                content_type: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if cert is not None and key is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert), str(key))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def inject(
        self,
        kind: str,
        times: int = -1,
        status: int = 503,
        methods: tuple[str, ...] | None = None,
        body: bytes | None = None,
        when: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Fault:
        fault = Fault(kind, times, status, methods or Fault.methods, body, when, content_type, headers or {})
        self.faults.append(fault)
        return fault

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _status_body(code: int) -> bytes:
    """What a Kubernetes API server answers with an error."""
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": f"injected {code}", "code": code}
    return json.dumps(status).encode()


def ec2_error(code: str) -> bytes:
    """What EC2 (a query-protocol API) answers with an error, e.g. RequestLimitExceeded when throttling."""
    return (
        f"<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message></Error></Errors>"
        "<RequestID>injected</RequestID></Response>"
    ).encode()


def ec2_accepted(operation: str) -> bytes:
    """EC2's answer that a write succeeded (what an endpoint that then does not apply it says)."""
    return (
        f'<{operation}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>injected</requestId><return>true</return></{operation}Response>"
    ).encode()
