"""`eks-responder`: replay events, approve, reject and release stored plans, check the set-up
(doctor), report an incident's timeline, redrive the failure queue, check a rules file."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from chalicelib.errors import ConfigError, EventError, ResponderError, RetryLaterError
from chalicelib.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chalicelib.entry.intake import Ledger
    from chalicelib.notifiers.base import Notifier
    from chalicelib.response.execute import Responder
    from chalicelib.response.report import Mode

MAX_EVENT_BYTES = 10 * 1024 * 1024  # far above EventBridge's 256 KiB; anything larger is a mistake
EXIT_NOT_UNDERSTOOD = 2
EXIT_ACTION_FAILED = 1


FLOW_LOG_SUFFIXES = (".log", ".log.gz", ".gz")


def _inputs(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.is_file() and (p.suffix == ".json" or _is_flow_file(p)))
            yield from sorted(found)
        else:
            yield path


def _is_flow_file(path: Path) -> bool:
    return path.name.endswith(FLOW_LOG_SUFFIXES)


def _is_flow_event(event: Any) -> bool:
    """A CloudWatch Logs subscription payload, or an S3 "Object Created" event / notification."""
    if not isinstance(event, dict):
        return False
    records = event.get("Records")
    s3_notification = isinstance(records, list) and any(isinstance(r, dict) and "s3" in r for r in records)
    return "awslogs" in event or event.get("source") == "aws.s3" or s3_notification


def _read(path: Path) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EventError(f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise EventError("empty file")
    if size > MAX_EVENT_BYTES:
        raise EventError(f"file is {size} bytes, more than the {MAX_EVENT_BYTES} a single event may be")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EventError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise EventError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise EventError("JSON nested too deeply to be an event") from None


def _human(result: dict[str, Any], out: TextIO) -> None:
    out.write(f"\n{result['event']}\n")
    if "error" in result:
        out.write(f"  ERROR: {result['error']}\n")
        _human_extras(result, out)
        return
    if "not_handled" in result:  # a real event of a kind the responder does not respond to
        out.write(f"  not handled: {result['not_handled']}\n")
        return
    if result.get("duplicate"):  # the incident table has it already (a redelivery, or another copy of it)
        out.write(f"  duplicate of incident {result['incident_id']}: {result['reason']}\n")
        return
    if "capture" in result or "ignored" in result:  # a memory capture's end, described or not ours
        capture = result.get("capture")
        line = (
            (
                f"memory capture on {capture['instance']} (SSM command {capture['command']}) ended: "
                f"{capture['status']}; {result['note']}"
            )
            if capture
            else f"not reported: {result['ignored']}"
        )
        out.write(f"  {line}\n")
        return
    if "incident" not in result:  # a flow-log delivery with nothing found
        out.write(f"  {result.get('reason') or result.get('delivery')}\n")
        return
    inc = result["incident"]
    out.write(f"  {inc['type']}  severity {inc['severity']} ({inc['score']})  mode {result['mode']}\n")
    where = [f"{k} {inc[k]}" for k in ("cluster", "namespace", "workload", "node", "instance_id") if inc.get(k)]
    if inc["pods"]:
        where.append("pods " + ", ".join(inc["pods"]))
    out.write(f"  {'  '.join(where) or 'no cluster resource named'}\n")
    if inc.get("details", {}).get("attribution"):
        out.write(f"  attribution: {inc['details']['attribution']}\n")
    if inc["sample"]:
        out.write("  sample finding: nothing will be changed\n")
    out.write(f"  rule: {result['rule'] or '(none)'}\n")
    if result.get("reason"):
        out.write(f"  no action: {result['reason']}\n")
    for note in result.get("notes", []):
        out.write(f"  note: {note}\n")
    for action in result["actions"]:
        step = f"{action['step']:>2}. " if action.get("step") is not None else ""
        out.write(f"    {step}{action['status']:<9} {action['action']:<16} {action['target']}: {action['detail']}\n")
    _human_extras(result, out)


def _human_extras(result: dict[str, Any], out: TextIO) -> None:
    from chalicelib.notifiers import slack_message

    for delivery in result.get("notifications", []):
        state = "sent" if delivery["delivered"] else f"FAILED ({delivery['error']})"
        out.write(f"  notified {delivery['notifier']}: {state}\n")
    if "message" in result:
        text = slack_message.render_text(result["message"])
        out.write("  slack message:\n" + "".join(f"  | {line}\n" for line in text.splitlines()))


def replay(args: argparse.Namespace, out: TextIO) -> int:
    from chalicelib.entry import wiring
    from chalicelib.policy.loader import load_rules

    settings = Settings.from_env()
    if args.rules:
        settings = replace(settings, rules_file=Path(args.rules))
    if args.kubeconfig:
        settings = replace(settings, kubeconfig=Path(args.kubeconfig))
    rules = load_rules(settings.rules_file)
    mode = _mode(args)
    responder: Responder = wiring.build_responder(settings, rules)
    # Messages are sent only by a live replay; a plan can still show them (--show-messages).
    notifiers = wiring.build_notifiers(settings, args.slack_webhook) if args.live else []
    ledger = wiring.build_ledger(settings) if args.live else None

    try:
        return _replay_all(args, out, responder, mode, notifiers, ledger)
    finally:
        responder.close()


def _replay_all(
    args: argparse.Namespace,
    out: TextIO,
    responder: Responder,
    mode: Mode,
    notifiers: list[Notifier],
    ledger: Ledger | None,
) -> int:
    worst = 0
    for path in _inputs(args.paths):
        try:
            worst = max(worst, _replay_one(args, out, path, responder, mode, notifiers, ledger))
        except ResponderError as exc:  # bad input or configuration (a format without addresses): said plainly
            _emit(args, out, {"event": str(path), "error": str(exc)[:500]})
            worst = EXIT_NOT_UNDERSTOOD
        except Exception as exc:  # noqa: BLE001 - one input's failure never stops the others, and is told
            _emit(args, out, {"event": str(path), "error": f"internal error: {type(exc).__name__}: {exc}"[:500]})
            worst = EXIT_NOT_UNDERSTOOD
    return worst


def _replay_one(
    args: argparse.Namespace,
    out: TextIO,
    path: Path,
    responder: Responder,
    mode: Mode,
    notifiers: list[Notifier],
    ledger: Ledger | None,
) -> int:
    from chalicelib.entry import intake
    from chalicelib.notifiers import slack_message
    from chalicelib.sources.envelope import split_document

    if _is_flow_file(path):
        return _replay_flows(args, out, _flow_file(args, path, responder, mode, ledger, notifiers))
    try:
        document = _read(path)
        if _is_flow_event(document):
            return _replay_flows(args, out, _flow_event(args, document, responder, mode, ledger, notifiers))
        events = split_document(document)
    except EventError as exc:
        _emit(args, out, {"event": str(path), "error": str(exc)})
        return EXIT_NOT_UNDERSTOOD
    worst = 0
    for index, event in enumerate(events):
        ref = str(path) if len(events) == 1 else f"{path}#{index}"
        if _is_capture_status(event):
            _emit(args, out, {"event": ref, **_capture_status(args, event)})
            continue
        try:
            result = intake.handle(event, responder, mode, raw_ref=ref, ledger=ledger, notifiers=notifiers)
        except RetryLaterError as exc:  # another invocation holds the incident: Lambda would retry; say so
            result = {"error": f"{exc}: replay it again later"}
        if args.show_messages and "duplicate" not in result and "not_handled" not in result:
            result["message"] = slack_message.build(result)
        result.pop("event_id", None)
        if "error" in result:
            result = {k: v for k, v in result.items() if k in {"error", "notifications", "message"}}
            worst = EXIT_NOT_UNDERSTOOD
        elif any(a["status"] == "failed" for a in result.get("actions", [])):
            worst = max(worst, EXIT_ACTION_FAILED)
        _emit(args, out, {"event": ref, **result})
    return worst


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes (a caller may have replaced it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _audit_to_stderr(*, verbose: bool) -> None:
    """`-v`: the responder's records (the audit trail among them) as JSON lines on stderr."""
    logger = logging.getLogger("eks_responder")
    for handler in [h for h in logger.handlers if isinstance(h, _Stderr)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.NOTSET)
    logger.propagate = not verbose  # said once, as JSON, not again by the root logger's plain handler
    if verbose:
        handler = _Stderr()
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)


class JsonLines(logging.Formatter):
    """One JSON object per record, with its extra fields, as Powertools writes them in Lambda: the
    audit trail `report --from` reads."""

    _STANDARD = frozenset({*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime"})

    def format(self, record: logging.LogRecord) -> str:
        from datetime import UTC, datetime

        data: dict[str, Any] = {
            "level": record.levelname,
            "message": record.getMessage(),
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
        }
        data.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        return json.dumps(data, default=str)


class _Version(argparse.Action):
    """`--version`, read from the installed package's metadata only when asked (reading it costs
    every command a fortieth of a second)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write(f"eks-responder {_version()}\n")  # on stdout, as argparse's own version action
        parser.exit()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("eks-responder")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "(not installed)"


def _is_capture_status(event: Any) -> bool:
    from chalicelib.entry.captures import DETAIL_TYPE

    return isinstance(event, dict) and event.get("source") == "aws.ssm" and event.get("detail-type") == DETAIL_TYPE


def _capture_status(args: argparse.Namespace, event: dict[str, Any]) -> dict[str, Any]:
    """A memory capture's end: reported (manifest, audit, message) with --live; described otherwise."""
    from chalicelib.actions.ec2.memory_document import document_name
    from chalicelib.entry import wiring
    from chalicelib.entry.captures import NotOursError, parse

    settings = Settings.from_env()
    if args.live:
        reported = wiring.handle_capture_status(event, settings)
        reported.pop("event_id", None)
        return reported
    try:
        ended = parse(event, document_name(settings.stage))
    except NotOursError as exc:
        return {"ignored": str(exc)}
    return {"capture": {"command": ended.command, "instance": ended.instance, "status": ended.status},
            "note": "a memory capture ended: --live writes its manifest and tells it"}  # fmt: skip


def _flow_settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if args.flow_format:
        text = _format_text(args.flow_format)
        settings = replace(settings, flow_log_format=text.strip())
    return settings


def _flow_file(
    args: argparse.Namespace, path: Path, responder: Responder, mode: Mode, ledger: Ledger | None,
    notifiers: list[Notifier],
) -> dict[str, Any]:  # fmt: skip
    """A flow-log file as S3 delivers it (gzip or plain text, header line or not)."""
    from chalicelib.entry import flow_logs as batch
    from chalicelib.entry import wiring
    from chalicelib.flowlogs.incidents import Batch

    settings = _flow_settings(args)
    region = wiring.region("")
    scanner = wiring.scanner(settings)
    shown = not args.json and sys.stderr.isatty()  # progress on a terminal only: never in --json output
    with path.open("rb") as raw:
        stream: Any = _Progress(raw, scanner, sys.stderr) if shown else raw
        delivery = batch.scan_object(stream, path.name, wiring.flow_layout(settings), scanner,
                                     Batch("", region, str(path), batch.now(), replay=True))  # fmt: skip
    if shown:
        stream.done()
    return batch.respond(delivery, wiring.flow_intake(responder, mode, region, ledger, notifiers))


class _Progress:
    """A file that says, twice a second on one updating line, how many records were scanned."""

    EVERY = 0.5

    def __init__(self, stream: Any, scanner: Any, out: TextIO) -> None:
        import time

        self._stream, self._scanner, self._out, self._clock = stream, scanner, out, time.monotonic
        self._start = self._last = self._clock()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        now = self._clock()
        if now - self._last >= self.EVERY:
            self._last = now
            self._out.write(f"\r  {self._line(now)}")
            self._out.flush()
        return data

    def _line(self, now: float) -> str:
        records = self._scanner.records
        return f"scanned {records:,} records ({records / max(now - self._start, 1e-6):,.0f} records/s)"

    def done(self) -> None:
        self._out.write(f"\r  {self._line(self._clock())}\n")
        self._out.flush()


def _flow_event(
    args: argparse.Namespace, event: dict[str, Any], responder: Responder, mode: Mode, ledger: Ledger | None,
    notifiers: list[Notifier],
) -> dict[str, Any]:  # fmt: skip
    """A CloudWatch Logs payload, or an S3 event whose objects are read from the configured endpoint."""
    from chalicelib.entry import flow_logs as batch
    from chalicelib.entry import wiring

    settings = _flow_settings(args)
    region = wiring.region("")
    intake = wiring.flow_intake(responder, mode, region, ledger, notifiers)
    if "awslogs" in event:
        layout, scanner = wiring.flow_layout(settings), wiring.scanner(settings)
        try:
            delivery = batch.scan_payload(event, layout, scanner, batch.now(), region, replay=True)
        except EventError as exc:
            return {"origin": "cloudwatch-logs-payload", "error": str(exc), "results": []}
        return batch.respond(delivery, intake)
    return wiring.flow_log_objects(event, settings, intake)


def _replay_flows(args: argparse.Namespace, out: TextIO, delivered: dict[str, Any]) -> int:
    """One line per incident of each delivery; a delivery without any says what was scanned."""
    from chalicelib.notifiers import slack_message

    worst = 0
    for found in delivered.get("deliveries", [delivered]):
        summary = {k: v for k, v in found.items() if k not in {"results", "error_report"}}
        origin = str(found.get("origin", "-"))
        if found.get("error"):
            worst = EXIT_NOT_UNDERSTOOD
            _emit(args, out, {"event": origin, "error": found["error"], "delivery": summary})
        results = found.get("results") or []
        if not results and not found.get("error"):
            why = summary.get("ignored") or f"no finding in {found.get('records', 0)} record(s)"
            if found.get("malformed"):
                why += f"; {found['malformed']} line(s) did not fit the format (--flow-format / FLOW_LOG_FORMAT?)"
            _emit(args, out, {"event": origin, "delivery": summary, "reason": why})
        for result in results:
            if args.show_messages and "duplicate" not in result:
                result["message"] = slack_message.build(result)
            result.pop("event_id", None)
            if any(a["status"] == "failed" for a in result.get("actions", [])):
                worst = max(worst, EXIT_ACTION_FAILED)
            _emit(args, out, {"event": origin, "delivery": summary, **result})
    return worst


def _mode(args: argparse.Namespace) -> Mode:
    """Plan offline; --live reads and dry-runs every write; only --apply changes anything.

    A replay that changes a cluster or an account is always asked for by name (--apply), and
    DRY_RUN=true in the environment still wins over it.
    """
    from chalicelib.response.report import Mode

    if not args.live:
        return Mode.PLAN
    if not args.apply:
        return Mode.DRY_RUN
    if os.environ.get("DRY_RUN") and Settings.from_env().dry_run:
        sys.stderr.write("eks-responder: DRY_RUN is true in the environment: --apply sends dry runs only\n")
        return Mode.DRY_RUN
    return Mode.LIVE


def _emit(args: argparse.Namespace, out: TextIO, result: dict[str, Any]) -> None:
    if args.json:
        out.write(json.dumps(result, sort_keys=False) + "\n")
    else:
        _human(result, out)
    out.flush()


def check_rules(args: argparse.Namespace, out: TextIO) -> int:
    from chalicelib.policy.loader import load_rules

    path = Path(args.file) if args.file else Settings.from_env().rules_file
    rules = load_rules(path)
    out.write(f"{path}: {len(rules.rules)} rules, valid\n")
    return 0


def decide(args: argparse.Namespace, out: TextIO) -> int:
    """`approve` / `reject`: the same decision a Slack button records, for teams without Slack."""
    from chalicelib.entry import wiring

    current = Settings.from_env()
    if args.kubeconfig:
        current = replace(current, kubeconfig=Path(args.kubeconfig))
    if not current.incidents_table:
        raise ConfigError("approve and reject need INCIDENTS_TABLE (where plans wait)")
    who = f"cli:{args.who or os.environ.get('USER') or 'unknown'}"
    actor = wiring.build_responder(current, wiring.rules())

    def run(incident_id: str) -> dict[str, Any]:
        return wiring.carry_out(incident_id, current, actor, wiring.build_notifiers(current))

    steps = tuple(args.step) if args.step else None
    result = wiring.decide(args.incident, approve=args.approve, steps=steps, who=who, current=current, run=run)
    if args.json:
        out.write(json.dumps(result, default=str) + "\n")
    else:
        out.write(f"{result.get('message') or result.get('error')}\n")
        done = result.get("carried_out")
        if isinstance(done, dict) and done.get("incident"):
            _human({"event": f"approved steps of {args.incident}", **done}, out)
    return 1 if "error" in result else 0


_INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def _format_text(value: str) -> str:
    """A flow-log format given as a file's path or as the format itself (a long field list is no path)."""
    try:
        given = Path(value)
        return given.read_text() if given.is_file() else value
    except OSError:  # the name is too long, or otherwise no file: the value is the format
        return value


def report(args: argparse.Namespace, out: TextIO) -> int:
    """`report`: one incident's timeline from its audit trail, and its plan when the table keeps it."""
    from chalicelib.commands import timeline
    from chalicelib.entry import wiring

    if not _INCIDENT_ID.match(args.incident):
        raise ConfigError(f"{args.incident[:80]!r} is not an incident id")
    current = Settings.from_env()
    if args.sources:
        lines: list[str] = []
        for source in args.sources:
            try:
                lines.extend(Path(source).read_text(errors="replace").splitlines())
            except OSError as exc:
                raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
        looked = ", ".join(args.sources)
    else:
        lines, looked = _audit_from_cloudwatch(current, args.incident)
    found = timeline.from_audit(lines, args.incident)
    store = wiring.build_plans(current)
    stored = store.get(args.incident) if store is not None else None
    if stored is not None:
        found = timeline.with_plan(found, stored[0])
        looked += f" and the incident table {current.incidents_table}"
    if found.empty:
        raise ConfigError(f"no record of incident {args.incident} in {looked}")
    text = timeline.to_html(found) if args.format == "html" else timeline.to_markdown(found)
    target = args.output or (f"incident-{args.incident}.html" if args.format == "html" else "-")
    if target == "-":
        out.write(text)
        return 0
    Path(target).write_text(text)
    out.write(f"{args.format} timeline of incident {args.incident} ({len(found.entries)} steps): {target}\n")
    return 0


def _audit_from_cloudwatch(current: Settings, incident_id: str) -> tuple[list[str], str]:
    """The stage's functions' log lines that name the incident (CloudWatch Logs, FilterLogEvents)."""
    from chalicelib import functions
    from chalicelib.entry import wiring

    logs = wiring.aws_session().client("logs")
    lines: list[str] = []
    groups = [f.log_group(current.stage) for f in functions.FUNCTIONS]
    for group in groups:
        try:
            pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group,
                                                                     filterPattern=f'"{incident_id}"')  # fmt: skip
            lines.extend(e["message"] for page in pages for e in page.get("events", []))
        except logs.exceptions.ResourceNotFoundException:
            continue
    return lines, f"the log groups of stage {current.stage}"


def release(args: argparse.Namespace, out: TextIO) -> int:
    """`release`: undo the steps of an incident from the prior state they recorded."""
    from chalicelib.entry import decisions, wiring

    current = Settings.from_env()
    if args.kubeconfig:
        current = replace(current, kubeconfig=Path(args.kubeconfig))
    store = wiring.build_plans(current)
    if store is None:
        raise ConfigError("release needs INCIDENTS_TABLE (where plans and their results are kept)")
    who = f"cli:{args.who or os.environ.get('USER') or 'unknown'}"
    actor = wiring.build_responder(current, wiring.rules())
    steps = tuple(args.step) if args.step else None
    result = decisions.release(store, actor, args.incident, steps=steps, who=who, dry_run=args.dry_run,
                               force=args.force, notifiers=wiring.build_notifiers(current))  # fmt: skip
    if args.json:
        out.write(json.dumps(result, default=str) + "\n")
    else:
        if result.get("said"):
            out.write(f"{result['said']}\n")
        if result.get("actions"):
            _human({"event": f"release of {args.incident}", **result}, out)
    return 1 if any(a.get("status") == "failed" for a in result.get("actions", [])) else 0


def redrive(args: argparse.Namespace, out: TextIO) -> int:
    """`redrive`: the failure queue's events, shown and replayed through the path they failed on."""
    from chalicelib.commands import redrive as parked
    from chalicelib.entry import delivery, wiring

    current = Settings.from_env()
    session = wiring.aws_session()
    sqs = session.client("sqs")
    url = args.queue_url or current.failure_queue_url
    if not url:
        try:
            url = sqs.get_queue_url(QueueName=delivery.queue_name(current.stage))["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            raise ConfigError(f"no failure queue {delivery.queue_name(current.stage)} (set FAILURE_QUEUE_URL or "
                              "--queue-url; `make prerequisites` creates it)") from None  # fmt: skip
    deliver = parked.local_deliver() if args.local else parked.lambda_deliver(session.client("lambda"), current.stage)
    results = parked.run(sqs, url, deliver, dry_run=args.dry_run, limit=args.limit)
    for found in results:
        if args.json:
            out.write(json.dumps(found) + "\n")
            continue
        out.write(f"{found['function'] or '?'}  event {found['event_id'] or '-'}  ({found['kind']}) {found['why']}\n"
                  f"  {found['outcome']}\n")  # fmt: skip
    kept = [f for f in results if f["outcome"].startswith(("still failing", "kept"))]
    if not args.json:
        out.write(f"{len(results)} in {url}: {len(results) - len(kept) if not args.dry_run else 0} replayed, "
                  f"{len(kept)} kept\n")  # fmt: skip
    return 1 if kept else 0


def doctor(args: argparse.Namespace, out: TextIO) -> int:
    """`doctor`: one line per check of the stage's set-up, with how to fix each problem."""
    from chalicelib.commands import doctor as checks
    from chalicelib.entry import wiring

    current = Settings.from_env()
    if args.stage:
        # As the stage's functions see it: its variables from .chalice/config.json, the shell's for the rest.
        from chalicelib.settings import stage_environment

        current = Settings.from_env({**os.environ, **stage_environment(Path(args.config), args.stage)})
        out.write(f"stage {current.stage} from {args.config}\n")
    if args.kubeconfig:
        current = replace(current, kubeconfig=Path(args.kubeconfig))
    session = wiring.aws_session()
    if args.role_arn:
        session = _assumed(session, args.role_arn)
    from chalicelib.executors.kube import ClusterConnector

    connector = ClusterConnector(kubeconfig=current.kubeconfig, aws_session=lambda: session,
                                 region=session.region_name, timeout=current.kube_timeout)  # fmt: skip
    found = checks.run(current, session, connector)
    connector.close()
    for check in found:
        out.write(check.line() + "\n")
    failed = [c for c in found if c.status == checks.FAIL]
    out.write(f"{len(found)} checks: {len(failed)} failed, {sum(c.status == checks.WARN for c in found)} warnings\n")
    return 1 if failed else 0


def _assumed(session: Any, role_arn: str) -> Any:
    """A session with the given role's credentials (the responder's own, to check as it)."""
    import boto3

    granted = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="eks-responder-doctor")
    keys = granted["Credentials"]
    return boto3.session.Session(aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                                 aws_session_token=keys["SessionToken"], region_name=session.region_name)  # fmt: skip


def _report_parser(sub: Any) -> None:
    dr = sub.add_parser("doctor", help="check the stage's set-up as the responder would meet it, with fixes")
    dr.add_argument("--role-arn", metavar="ARN", help="check as this role (the responder's), assumed first")
    dr.add_argument("--kubeconfig", metavar="FILE", help="use this kubeconfig for every cluster")
    dr.add_argument(
        "--stage", metavar="STAGE", help="check this stage's variables from --config (as make deploy reads them)"
    )
    dr.add_argument(
        "--config",
        metavar="FILE",
        default=".chalice/config.json",
        help="the Chalice config the stage is read from (default: .chalice/config.json)",
    )
    dr.set_defaults(func=doctor)

    tl = sub.add_parser("report", help="one incident's timeline: a self-contained HTML page, or Markdown for a ticket")
    tl.add_argument("incident", metavar="INCIDENT", help="the incident id")
    tl.add_argument(
        "--from",
        dest="sources",
        action="append",
        metavar="FILE",
        help="an audit log (JSON lines: `replay -v`, the functions' logs); default: CloudWatch Logs",
    )
    tl.add_argument("--format", choices=("html", "markdown"), default="html",
                    help="html: a self-contained page (default); markdown: for a ticket or a chat")  # fmt: skip
    tl.add_argument("--output", metavar="PATH", help="where to write it (default: incident-<id>.html; markdown: -)")
    tl.set_defaults(func=report)


_AWS_SETUP_ERRORS = {"NoRegionError", "NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    parser = argparse.ArgumentParser(prog="eks-responder", description=__doc__)
    parser.add_argument("--version", action=_Version, nargs=0, help="show the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser(
        "replay", help="run events through the rules: plan offline by default, --live to dry-run, --apply to act"
    )
    rp.add_argument("paths", nargs="+", metavar="PATH", help="event files or folders (searched recursively)")
    rp.add_argument(
        "--live",
        action="store_true",
        help="read the configured cluster and AWS endpoints and dry-run every write; nothing changes",
    )
    rp.add_argument(
        "--apply",
        action="store_true",
        help="with --live (implied): change things for real, unless DRY_RUN=true is set",
    )
    rp.add_argument("--json", action="store_true", help="one JSON object per input on stdout")
    rp.add_argument("--rules", metavar="FILE", help="rules file (default: RULES_FILE or the packaged rules)")
    rp.add_argument("--kubeconfig", metavar="FILE", help="use this kubeconfig for every cluster")
    rp.add_argument("-v", "--verbose", action="store_true", help="log every action as JSON on stderr")
    rp.add_argument("--show-messages", action="store_true", help="render the Slack message of each incident")
    rp.add_argument(
        "--slack-webhook", metavar="URL", help="with --live, post the messages to this webhook (a local test hook)"
    )
    rp.add_argument(
        "--flow-format",
        metavar="FORMAT",
        help="flow-log format (string or file) for files without a header line (default: FLOW_LOG_FORMAT or v2)",
    )
    rp.set_defaults(func=replay)

    for verb, says in (("approve", "approve the steps of a stored plan and carry them out"),
                       ("reject", "reject the steps of a stored plan: they never run")):  # fmt: skip
        dp = sub.add_parser(verb, help=f"{says} (INCIDENTS_TABLE, AWS credentials)")
        dp.add_argument("incident", metavar="INCIDENT", help="the incident id the message or replay named")
        dp.add_argument("--step", type=int, action="append", metavar="N", help="only step N (repeat for more)")
        dp.add_argument("--as", dest="who", metavar="NAME", help="who decides, for the audit trail (default: $USER)")
        dp.add_argument("--kubeconfig", metavar="FILE", help="use this kubeconfig for every cluster")
        dp.add_argument("--json", action="store_true", help="the result as one JSON object")
        dp.add_argument("-v", "--verbose", action="store_true", help=AUDIT_HELP)
        dp.set_defaults(func=decide, approve=verb == "approve")

    rl = sub.add_parser("release", help="undo what an incident's steps changed (INCIDENTS_TABLE, AWS credentials)")
    rl.add_argument("incident", metavar="INCIDENT", help="the incident id")
    rl.add_argument("--step", type=int, action="append", metavar="N", help="only step N (repeat for more)")
    rl.add_argument("--dry-run", action="store_true", help="check every undo with the APIs' dry run; change nothing")
    rl.add_argument("--force", action="store_true", help="undo even what someone changed since (see docs/release.md)")
    rl.add_argument("--as", dest="who", metavar="NAME", help="who releases, for the audit trail (default: $USER)")
    rl.add_argument("--kubeconfig", metavar="FILE", help="use this kubeconfig for every cluster")
    rl.add_argument("--json", action="store_true", help="the result as one JSON object")
    rl.add_argument("-v", "--verbose", action="store_true", help=AUDIT_HELP)
    rl.set_defaults(func=release)

    _report_parser(sub)

    rd = sub.add_parser("redrive", help="show and replay the events in the stage's failure queue (AWS credentials)")
    rd.add_argument("--dry-run", action="store_true", help="list what waits and why; replay and delete nothing")
    rd.add_argument(
        "--local",
        action="store_true",
        help="replay through this process's handlers (the local stack) instead of the deployed functions",
    )
    rd.add_argument("--queue-url", metavar="URL", help="default: FAILURE_QUEUE_URL, or the stage's queue by name")
    rd.add_argument("--limit", type=int, default=1000, metavar="N", help="look at N messages at most (default 1000)")
    rd.add_argument("--json", action="store_true", help="one JSON object per message")
    rd.set_defaults(func=redrive)

    cr = sub.add_parser("check-rules", help="validate a rules file")
    cr.add_argument("file", nargs="?", help="rules file (default: RULES_FILE or the packaged rules)")
    cr.set_defaults(func=check_rules)

    args = parser.parse_args(argv)
    if getattr(args, "apply", False):
        args.live = True
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr, format="%(levelname)s %(message)s")
    _audit_to_stderr(verbose=getattr(args, "verbose", False))
    return _run(args)


AUDIT_HELP = "the audit trail (the decision, every step run or released) as JSON lines on stderr, for `report --from`"


def _run(args: argparse.Namespace) -> int:
    """The command, with its errors as one line each (a traceback only for a bug)."""
    try:
        code: int = args.func(args, sys.stdout)
    except ResponderError as exc:
        sys.stderr.write(f"eks-responder: {exc}\n")
        return EXIT_NOT_UNDERSTOOD
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as exc:
        # No region or no credentials (botocore's own errors): one line that says what to set.
        if type(exc).__module__.startswith("botocore") and type(exc).__name__ in _AWS_SETUP_ERRORS:
            hint = "set AWS_REGION and credentials; report reads files with --from"
            sys.stderr.write(f"eks-responder: AWS: {exc} ({hint})\n")
            return EXIT_NOT_UNDERSTOOD
        raise
    return code


if __name__ == "__main__":
    sys.exit(main())
