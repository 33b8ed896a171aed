"""Which failures are passing (worth delivering the event again) and which last.

Read by duck typing, so the response layer names no SDK: botocore's errors carry their code and
HTTP status in `response`, its connection errors are known by name, and the Kubernetes client's
by their class (kube_http's TransportError, ApiError with a status).
"""

from __future__ import annotations

THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "RequestThrottled", "RequestThrottledException", "SlowDown",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalError", "InternalFailure", "InternalServerError",
    "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "TransactionInProgressException",
})  # fmt: skip
CONNECTION = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "ConnectionError", "TimeoutError", "TransportError", "ConnectionResetError",
    "ConnectionRefusedError", "BrokenPipeError", "DeadlineError",
})  # fmt: skip
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def transient(exc: BaseException | None) -> bool:
    """A timeout, a dropped connection, throttling or a server error (here, or what it wraps)."""
    seen = 0
    while exc is not None and seen < 5:  # noqa: PLR2004 - a chain is a few links at most
        if type(exc).__name__ in CONNECTION or any(c.__name__ in CONNECTION for c in type(exc).__mro__):
            return True
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if error.get("Code") in THROTTLING or status in TRANSIENT_STATUS:
                return True
        # Not 403: the Kubernetes client already retried a starting server's; a refusal that lasts
        # is the RBAC's, and delivering the event again would only tell it twice more.
        code = getattr(exc, "code", None)
        if type(exc).__name__ == "ApiError" and isinstance(code, int) and code in TRANSIENT_STATUS:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
