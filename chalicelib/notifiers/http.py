"""One JSON request to an output's HTTP endpoint, with the standard library (no client to import
at cold start); a URL that is a secret never appears in an error."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 5
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def checked_url(url: str, what: str) -> str:
    """HTTPS only, except to this machine (the local stack's stand-ins)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url
    raise RuntimeError(f"{what}: only https URLs are sent to (http only to this machine)")


def send(url: str, body: Any, *, what: str, headers: dict[str, str] | None = None, method: str = "POST",
         secret_url: bool = False, raw: bytes | None = None) -> tuple[int, Any]:  # fmt: skip
    """Send `body` as JSON (or `raw` bytes as they are); the status and the parsed answer. Anything
    but 2xx raises, naming `what` and never the URL when it is a secret."""
    from chalicelib.invocation import check_deadline

    checked_url(url, what)
    check_deadline(what)  # nothing is sent once the invocation has no time left to hear the answer
    data = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
    request = urllib.request.Request(url, data=data if method != "GET" else None, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    where = what if secret_url else f"{what} ({urlsplit(url).hostname})"
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - checked above
            text = response.read(1 << 20)
            status = response.status
    except urllib.error.HTTPError as exc:
        said = exc.read(300).decode(errors="replace") if exc.fp else ""
        if secret_url:
            said = said.replace(url, "<secret url>").replace(urlsplit(url).path, "<secret path>")
        raise RuntimeError(f"{where} answered {exc.code}: {' '.join(said.split())[:200]}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"{where} not reached: {type(reason).__name__}") from None
    try:
        return status, json.loads(text) if text.strip() else None
    except ValueError:
        return status, text.decode(errors="replace")[:200]
