"""Local stand-ins for the services the responder tells: PagerDuty, a Teams Workflows webhook, a
webhook receiver, ServiceNow, and the AWS APIs moto does not serve (Security Hub's
BatchUpdateFindings, GuardDuty's ArchiveFindings).

Each is a real HTTP server on loopback that checks every request against the service's documented
format (a JSON Schema written from the vendor's documentation under `devstack/schemas/`; for AWS,
botocore's own service model), records it, and answers as the service does; a request that does
not conform is refused with the reasons, as the service would refuse it, and kept in `refused`.
Used by the tests and by `make demo`.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMAS = Path(__file__).parent / "schemas"
EVENT_SCHEMA = Path(__file__).parent.parent / "docs" / "schemas" / "event-detail.schema.json"
TEAMS_LIMIT = 28 * 1024  # a Teams message's size limit


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None


@dataclass
class Answer:
    status: int
    body: Any = None


def schema_errors(value: Any, schema: dict[str, Any], ref: str | None = None) -> list[str]:
    """Every way `value` breaks `schema` (or one of its `$defs`), as `path: message`."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    wanted = {"$ref": f"#/$defs/{ref}", "$defs": schema.get("$defs", {})} if ref else schema
    validator = Draft202012Validator(wanted)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"[:300]
                  for e in validator.iter_errors(value))  # fmt: skip


def load_schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((EVENT_SCHEMA if name == "event-detail" else SCHEMAS / f"{name}.schema.json")
                                       .read_text())  # fmt: skip
    return found


class StandIn:
    """One service on loopback."""

    def __init__(self, name: str, answer: Callable[[Received], Answer]) -> None:
        self.name = name
        self.received: list[Received] = []
        self.refused: list[tuple[Received, Any]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body) if body.strip() else None
                except ValueError:
                    parsed = None
                request = Received(self.command, unquote(parts.path), parse_qs(parts.query),
                                   {k.lower(): v for k, v in self.headers.items()}, body, parsed)  # fmt: skip
                with stand_in._lock:
                    failing = stand_in._failures.pop(0) if stand_in._failures else None
                if failing is not None:
                    found = Answer(failing, {"message": f"{stand_in.name} is failing on purpose"})
                else:
                    found = answer(request)
                    with stand_in._lock:
                        if found.status >= 400:
                            stand_in.refused.append((request, found.body))
                        else:
                            stand_in.received.append(request)
                data = b"" if found.body is None else json.dumps(found.body).encode()
                self.send_response(found.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next `count` requests are answered `status` (an outage)."""
        with self._lock:
            self._failures.extend([status] * count)

    def bodies(self) -> list[Any]:
        return [r.json for r in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def slack() -> StandIn:
    """An incoming webhook: `<url>/services/T…/B…/<token>`, a message with text and attachments."""

    def answer(request: Received) -> Answer:
        body = request.json if isinstance(request.json, dict) else {}
        if not request.path.startswith("/services/") or not isinstance(body.get("text"), str):
            return Answer(400, {"error": "invalid_payload"})
        return Answer(200)

    return StandIn("slack", answer)


def pagerduty() -> StandIn:
    """The Events API v2 endpoint: `<url>/v2/enqueue`."""
    schema = load_schema("pagerduty-events-v2")

    def answer(request: Received) -> Answer:
        if request.method != "POST" or request.path != "/v2/enqueue":
            return Answer(404, {"message": "not found"})
        errors = schema_errors(request.json, schema)
        if errors:
            return Answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        accepted = {"status": "success", "message": "Event processed", "dedup_key": request.json.get("dedup_key")}
        return Answer(202, accepted)

    return StandIn("pagerduty", answer)


def teams() -> StandIn:
    """A Workflows webhook: `<url>/workflows/<signature>` (the path stands for the secret URL)."""
    schema = load_schema("teams-workflows-card")

    def answer(request: Received) -> Answer:
        if request.method != "POST" or not request.path.startswith("/workflows/"):
            return Answer(404, {"message": "not found"})
        if len(request.body) > TEAMS_LIMIT:
            return Answer(413, {"error": {"code": "MessageTooLarge", "message": f"{len(request.body)} bytes"}})
        errors = schema_errors(request.json, schema)
        if errors:
            return Answer(400, {"error": {"code": "InvalidRequestContent", "message": errors}})
        return Answer(202)

    return StandIn("teams", answer)


def receiver(key: str, clock: Callable[[], float] | None = None) -> StandIn:
    """A webhook receiver that checks the signature as docs/integrations/webhook.md tells one to."""
    from chalicelib.notifiers import webhook

    schema = load_schema("event-detail")
    seen: set[str] = set()

    def answer(request: Received) -> Answer:
        timestamp = request.headers.get(webhook.TIMESTAMP_HEADER.lower(), "")
        signed = request.headers.get(webhook.SIGNATURE_HEADER.lower(), "")
        now = clock() if clock else None
        if not webhook.verify(key.encode(), timestamp, request.body, signed, now):
            return Answer(401, {"error": "bad signature or stale timestamp"})
        delivery = request.headers.get(webhook.DELIVERY_HEADER.lower(), "")
        if delivery in seen:
            return Answer(200, {"duplicate": True})
        seen.add(delivery)
        event = request.json if isinstance(request.json, dict) else {}
        errors = schema_errors(event.get("detail"), schema)
        if event.get("source") != "eks-responder" or not event.get("detail-type"):
            errors.append("source and detail-type: not an eks-responder event")
        return Answer(400, {"errors": errors}) if errors else Answer(200, {"ok": True})

    return StandIn("webhook", answer)


@dataclass
class ServiceNowState:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


def servicenow(username: str = "eks-responder", password: str = "local-password") -> tuple[StandIn, ServiceNowState]:
    """The Table API of one instance's incident table, with basic authentication."""
    schema = load_schema("servicenow-incident")
    state = ServiceNowState()
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    query = re.compile(r"^correlation_id=(.+)$")

    def failure(status: int, message: str) -> Answer:
        return Answer(status, {"error": {"message": message}, "status": "failure"})

    def listed(request: Received) -> Answer:
        wanted = query.match((request.query.get("sysparm_query") or [""])[0])
        rows = [r for r in state.records.values() if wanted and r["correlation_id"] == wanted.group(1)]
        return Answer(200, {"result": [{"sys_id": r["sys_id"], "number": r["number"]} for r in rows[:1]]})

    def created(request: Received) -> Answer:
        errors = schema_errors(request.json, schema, "create")
        if errors:
            return failure(400, "; ".join(errors))
        sys_id = uuid.uuid4().hex
        record = {**request.json, "sys_id": sys_id, "number": f"INC{1000001 + len(state.records)}"}
        state.records[sys_id] = record
        state.notes[sys_id] = [request.json["work_notes"]] if request.json.get("work_notes") else []
        return Answer(201, {"result": {k: v for k, v in record.items() if k != "work_notes"}})

    def updated(request: Received, sys_id: str) -> Answer:
        errors = schema_errors(request.json, schema, "update")
        if errors:
            return failure(400, "; ".join(errors))
        state.notes[sys_id].append(request.json["work_notes"])
        return Answer(200, {"result": state.records[sys_id]})

    def answer(request: Received) -> Answer:
        if request.headers.get("authorization") != expected:
            return failure(401, "User Not Authenticated")
        parts = request.path.strip("/").split("/")
        if parts[:3] != ["api", "now", "table"] or len(parts) not in (4, 5):
            return failure(400, "Invalid table")
        if request.method in ("GET", "POST") and len(parts) == 4:
            return listed(request) if request.method == "GET" else created(request)
        if request.method == "PATCH" and parts[-1] in state.records:
            return updated(request, parts[-1])
        return failure(404, "No Record found")

    return StandIn("servicenow", answer), state


def _model_errors(value: Any, shape: Any, where: str) -> list[str]:
    """Where `value` (member names) breaks botocore's shape: required members, unknown members,
    types, enums, lengths and ranges, as the service validates them."""
    check = _CHECKS.get(shape.type_name)
    return check(value, shape, where) if check else []


def _bounds(count: float, meta: dict[str, Any], where: str) -> list[str]:
    errors = [f"{where}: below the minimum {meta['min']}"] if "min" in meta and count < meta["min"] else []
    return errors + ([f"{where}: above the maximum {meta['max']}"] if "max" in meta and count > meta["max"] else [])


def _structure(value: Any, shape: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: not a structure"]
    errors = [f"{where}.{name}: required" for name in shape.metadata.get("required", []) if name not in value]
    errors += [f"{where}.{name}: unknown member" for name in value if name not in shape.members]
    for name, item in value.items():
        if name in shape.members:
            errors += _model_errors(item, shape.members[name], f"{where}.{name}")
    return errors


def _list(value: Any, shape: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: not a list"]
    errors = _bounds(len(value), shape.metadata, where)
    for index, item in enumerate(value):
        errors += _model_errors(item, shape.member, f"{where}[{index}]")
    return errors


def _map(value: Any, shape: Any, where: str) -> list[str]:
    return _bounds(len(value), shape.metadata, where) if isinstance(value, dict) else [f"{where}: not a map"]


def _string(value: Any, shape: Any, where: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: not a string"]
    enum = shape.metadata.get("enum")
    errors = [f"{where}: {value!r} not one of {enum}"] if enum and value not in enum else []
    return errors + _bounds(len(value), shape.metadata, where)


def _number(value: Any, shape: Any, where: str) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [f"{where}: not a number"]
    return _bounds(value, shape.metadata, where)


def _boolean(value: Any, _: Any, where: str) -> list[str]:
    return [] if isinstance(value, bool) else [f"{where}: not a boolean"]


_CHECKS: dict[str, Callable[[Any, Any, str], list[str]]] = {
    "structure": _structure, "list": _list, "map": _map, "string": _string, "boolean": _boolean,
    "integer": _number, "long": _number, "float": _number, "double": _number,
}  # fmt: skip


def _member_names(value: Any, shape: Any) -> Any:
    """A rest-json body (wire names) in the model's member names."""
    if shape.type_name == "structure" and isinstance(value, dict):
        names = {m.serialization.get("name", n): n for n, m in shape.members.items()}
        return {names.get(k, k): _member_names(v, shape.members[names[k]]) if k in names else v
                for k, v in value.items()}  # fmt: skip
    if shape.type_name == "list" and isinstance(value, list):
        return [_member_names(v, shape.member) for v in value]
    return value


DETECTOR = "0" * 32  # the GuardDuty stand-in's one detector


@dataclass
class ModelCalls:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (operation, params by member name)
    detector: str = DETECTOR

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


def aws_model(service: str, answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]],
              forward: str | None = None) -> tuple[StandIn, ModelCalls]:  # fmt: skip
    """`service`'s rest-json API, for the operations in `answers`: each request is parsed back to
    its operation and parameters by botocore's service model and validated against the model's
    input shape before it is answered (in the model's output shape); any other operation goes to
    `forward` (moto) when given."""
    import botocore.session

    from chalicelib.executors.guardduty_findings import wire_names

    model = botocore.session.get_session().get_service_model(service)
    routes = []
    for name in answers:
        operation = model.operation_model(name)
        template = operation.http["requestUri"].split("?")[0]
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        routes.append((operation.http["method"], re.compile(f"^{pattern}$"), operation))
    recorded = ModelCalls()

    def answer(request: Received) -> Answer:
        for method, pattern, operation in routes:
            matched = pattern.match(request.path)
            if method != request.method or not matched:
                continue
            shape = operation.input_shape
            params = _member_names(request.json or {}, shape)
            for name, member in shape.members.items():
                location = member.serialization.get("location")
                wire = member.serialization.get("name", name)
                if location == "uri":
                    params[name] = unquote(matched.group(wire))
                elif location == "querystring" and wire in request.query:
                    raw = request.query[wire][0]
                    params[name] = int(raw) if member.type_name == "integer" else raw
            errors = _model_errors(params, shape, operation.name)
            if errors:
                return Answer(400, {"__type": "InvalidInputException", "message": "; ".join(errors)})
            recorded.calls.append((operation.name, params))
            out = answers[operation.name](params)
            return Answer(200, wire_names(out, operation.output_shape) if operation.output_shape else {})
        if forward:
            return _forwarded(forward, request)
        return Answer(404, {"message": f"{service} stand-in: no such operation"})

    return StandIn(service, answer), recorded


def _forwarded(base: str, request: Received) -> Answer:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    query = "&".join(f"{k}={v}" for k, values in request.query.items() for v in values)
    headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
    connection.request(request.method, request.path + (f"?{query}" if query else ""), request.body, headers)
    response = connection.getresponse()
    data = response.read()
    try:
        return Answer(response.status, json.loads(data) if data else None)
    except ValueError:
        return Answer(response.status, {"raw": data.decode(errors="replace")})


def security_hub(forward: str | None = None) -> tuple[StandIn, ModelCalls]:
    """BatchUpdateFindings: every finding named is processed."""

    def batch(params: dict[str, Any]) -> dict[str, Any]:
        return {"ProcessedFindings": params["FindingIdentifiers"], "UnprocessedFindings": []}

    return aws_model("securityhub", {"BatchUpdateFindings": batch}, forward)


def guardduty(forward: str | None = None) -> tuple[StandIn, ModelCalls]:
    """ListDetectors (the administrator's one detector) and ArchiveFindings."""
    return aws_model("guardduty", {"ListDetectors": lambda _: {"DetectorIds": [DETECTOR]},
                                   "ArchiveFindings": lambda _: {}}, forward)  # fmt: skip
