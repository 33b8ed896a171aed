"""The hostile-values corpus: every field of every source, replaced in turn by hostile values.

Where the mutation campaign (`mutations.py`) samples random edits, this corpus is exhaustive:
for every seed event (the project's events and the permitted samples), every leaf field, and for
flow logs every column of every record, is replaced by each value below, and the event runs
through its source's intake in plan mode, as the Lambda handler reaches it. Each outcome is
checked for what an attacker who writes the event wants:

- a **live mention** or a **foreign link** in the Slack message built from it;
- a **hostile request path**: a planned action whose target is not a plain identifier (it would
  be joined into a Kubernetes or AWS request);
- an **action on a malformed deciding field**: the field was given a value of another type (a
  string for a boolean, a number as a string, a non-finite number, an object...) and the plan
  now holds containment the original event did not plan. A field the responder does not read
  changes nothing; one it reads must make the event an error or a report.
- **invalid output**: a report strict JSON parsers refuse (NaN, Infinity).

`make hostile` runs the whole corpus; `make test` runs one seed per source through every field.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from tests.fuzzing.mutations import Harness, check, containment, seed_events

MARK = "PWNED"
TEXT = [
    f"<!channel> {MARK}",
    f"<http://evil.example|{MARK}>",
    f"x|pwn> <!channel> <http://evil.example {MARK}",
    f"*{MARK}* <@U024BE7LH>",
    "x/../kube-system",
    "../../api/v1/namespaces/kube-system/secrets",
    "%2e%2e%2fkube-system",
    f"arn:aws:kms:us-east-1:123456789012:key/../../{MARK}",
    f"[code]<b>{MARK}</b>[/code] {{{{DATE(2017-02-14T06:00:00Z)}}}} www.evil.example",
]
MALFORMED: list[Any] = ["true", "yes", 1, 0, "8", 1e999, math.nan, {}, [], None]
TOKENS = [f"<!channel>{MARK}", f"<http://evil.example|{MARK}>", "x/../kube-system", "1e999", "-1", "NaN"]
ALLOWED_HOSTS = re.compile(r"^https://([a-z]{2}(-gov)?-[a-z]+-\d\.console\.aws\.amazon\.com|nvd\.nist\.gov)/")
# Parts of the hostile values that must never reach a planned target (a request path or a
# resource name): plan-mode targets are descriptions such as "<instance of node running pod x>",
# so the check is for what the event wrote, not for a syntax.
HOSTILE_MARKERS = (MARK, "evil.example", "../", "%2e", "<!", "<@", "|")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number" if math.isfinite(value) else "non-finite"
    return type(value).__name__


def _leaves(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*prefix, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value[:3]):
            yield from _leaves(item, (*prefix, index))
    else:
        yield prefix


def _replaced(event: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(event)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return changed


def _get(event: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        event = event[step]
    return event


def _flow_lines(event: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """Each column of each record of a decoded CloudWatch Logs payload, replaced by each token."""
    events = event["awslogs"]["logEvents"]
    for index, record in enumerate(events[:12]):
        columns = record["message"].split()
        for column in range(len(columns)):
            for token in TOKENS:
                edited = copy.deepcopy(event)
                edited["awslogs"]["logEvents"][index]["message"] = " ".join(
                    [*columns[:column], token, *columns[column + 1 :]]
                )
                yield f"logEvents[{index}].message column {column}", columns[column], edited


def cases(seeds: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, Any, Any]]:
    """(seed, field, new value, event) for every leaf of every seed and every hostile value."""
    for seed in seeds:
        if "awslogs" in seed and isinstance(seed["awslogs"], dict) and "logEvents" in seed["awslogs"]:
            for field, old, edited in _flow_lines(seed):
                yield seed, field, (old, edited["awslogs"]), edited
            continue
        for path in _leaves(seed):
            if not path:
                continue
            old = _get(seed, path)
            values = [*TEXT, *MALFORMED] if isinstance(old, str) else [*MALFORMED, *TEXT]
            for value in values:
                yield seed, ".".join(map(str, path)), (old, value), _replaced(seed, path, value)


def _reports(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a message is built from: incident reports and rejected events (an S3 event's output
    names objects only; the bucket is read only when it equals FLOW_LOGS_BUCKET)."""
    found = []
    for output in outputs:
        for report in output.get("results", [output]):
            if "incident" in report or "error" in report:
                found.append(report)
    return found


def mrkdwn(message: dict[str, Any]) -> list[str]:
    texts = [message["text"]]
    for block in message["attachments"][0]["blocks"]:
        text = block.get("text") or {}
        if text.get("type") == "mrkdwn":
            texts.append(text["text"])
        texts.extend(f["text"] for f in block.get("fields", []) if f.get("type") == "mrkdwn")
        texts.extend(e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn")
    return texts


def outside_code(text: str) -> str:
    """What Slack would format: the text with its code blocks and inline code spans removed."""
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    return re.sub(r"`[^`]*`", " ", text)


def slack_findings(message: dict[str, Any]) -> dict[str, list[str]]:
    """Live mentions, links to hosts other than the AWS console and NVD, and event text Slack would format."""
    found: dict[str, list[str]] = {"mentions": [], "foreign links": [], "formatted event text": []}
    for text in mrkdwn(message):
        live = outside_code(text)
        found["mentions"] += re.findall(r"<[!@][^>]*>", live)
        for link in re.findall(r"<([^!@>|][^>|]*)(?:\|[^>]*)?>", live):
            if not ALLOWED_HOSTS.match(link):
                found["foreign links"].append(link)
        if MARK in live or "evil.example" in live:
            found["formatted event text"].append(live[:120])
    return found


def every_field_report(value: str) -> dict[str, Any]:
    """A report with `value` in every field the message can show, for every source's layout."""
    keys = ("cve", "severity_counts", "fix_available", "exploit_available", "inspector_score", "epss",
            "accepted_cves", "findings_error", "attribution", "ports", "top_flows", "records", "origin",
            "repository", "digest")  # fmt: skip
    details = dict.fromkeys(keys, value)
    details["worst_cves"] = f"CVE-2024-0001 {value}\n{value} {value}"
    incident = {
        "id": value, "source": "flowlogs", "type": value, "title": value, "severity": "high", "score": 8.0,
        "account": value, "region": value, "cluster": value, "namespace": value, "workloads": [value],
        "pods": [value], "nodes": [value], "instance_ids": [value],
        "principals": [{"name": value, "arn": value}], "images": [value], "key_arns": [value],
        "details": details, "sample": False,
    }  # fmt: skip
    return {
        "incident": incident,
        "rule": value,
        "reason": value,
        "mode": "live",
        "actions": [{"action": value, "target": value, "status": "succeeded", "detail": value}],
        "notes": [f"cluster: 2 pod(s) run {value}"],
        "evidence": value,
    }


def _strings(value: Any, inside: str = "") -> Iterator[tuple[str, str]]:
    """(key, text) for every string in a JSON value, with the key it is under."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, inside)
    elif isinstance(value, str):
        yield inside, value


def _teams(card: Any, found: list[str]) -> None:
    """Event text only in TextRuns (which render no Markdown), none of it linkable, no mention
    entities, and every URL one of ours."""
    if isinstance(card, dict):
        if card.get("type") == "TextRun":
            text = str(card.get("text"))
            if re.search(r"(?i)[a-z]://|www\.|\{\{", text):
                found.append(f"teams text run: {text[:80]}")
        else:
            for key, item in card.items():
                if isinstance(item, str) and (MARK in item or "evil.example" in item):
                    found.append(f"teams {key}: {item[:80]}")
                elif key == "url" and isinstance(item, str) and not ALLOWED_HOSTS.match(item):
                    found.append(f"teams url: {item[:80]}")
                else:
                    _teams(item, found)
        if "entities" in card:
            found.append("teams: mention entities")
    elif isinstance(card, list):
        for item in card:
            _teams(item, found)


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def output_findings(report: dict[str, Any]) -> list[str]:
    """What escapes in any output other than Slack: markup, links or mentions in Teams, foreign
    links in PagerDuty or the event detail, a ServiceNow `[code]` tag, output that is not strict
    JSON, a write-back aimed at a finding of another account."""
    from chalicelib.notifiers import events_out, pagerduty, servicenow, teams, webhook, writeback
    from chalicelib.settings import WRITABLE_SOURCES

    # As a live run would report it (every planned step done), so the outputs that skip dry runs are checked too.
    steps = [{**a, "status": "succeeded"} for a in report.get("actions") or []]
    live = {**report, "mode": "live", "actions": steps} if "incident" in report else report
    found: list[str] = []
    _teams(teams.message(live), found)
    paged = pagerduty.event(live, "R" * 32) or {}
    found += [f"pagerduty link: {link.get('href')}" for link in paged.get("links", [])
              if not ALLOWED_HOSTS.match(str(link.get("href")))]  # fmt: skip
    if "images" in paged or "client_url" in paged:
        found.append("pagerduty: an image or client link")
    ticket = servicenow.wanted(live)
    if ticket is not None:
        written = [*servicenow.ticket(ticket).values(), servicenow.note(ticket)]
        found += [f"servicenow code tag: {str(w)[:80]}" for w in written if re.search(r"(?i)\[/?\s*code\s*\]", str(w))]
    for entry in events_out.entries(live, "bus"):
        detail = _strict(entry["Detail"])
        if detail.get("link") is not None and not ALLOWED_HOSTS.match(str(detail["link"])):
            found.append(f"event link: {detail['link']}")
    _strict(webhook.body(report).decode())
    incident = report.get("incident") or {}
    for call in writeback.calls(live, WRITABLE_SOURCES, archive=True):
        for named in call.params.get("FindingIdentifiers", []):
            if f":{incident.get('account')}:" not in named["Id"] or "../" in named["Id"]:
                found.append(f"write-back aimed at {named['Id']}")
    return found


def _plan(outputs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(str(a.get("action")), str(a.get("target"))) for a in containment(_reports(outputs))}


def _actions(plan: set[tuple[str, str]]) -> set[str]:
    """What containment a plan does. A missing optional value may change a target to one the
    playbook derives (the node of the pod when the sequence omits the instance id): that is the
    playbook, not the malformed value, deciding; a new kind of action is the value deciding."""
    return {action for action, _ in plan}


def campaign(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Run every case; count what escaped, with the first examples of each."""
    import logging

    from chalicelib.notifiers import slack_message

    logging.disable(logging.CRITICAL)  # every rejected event is logged: hundreds of thousands of lines
    harness = Harness()
    original = {id(seed): _plan(harness.run(_encoded(seed))) for seed in seeds}
    counts = dict.fromkeys(("events", "fields", "live_mentions", "foreign_links", "formatted_event_text",
                            "hostile_request_paths", "actions_on_malformed_deciding_fields", "invalid_output",
                            "uncaught", "output_escapes"), 0)  # fmt: skip
    examples: dict[str, list[str]] = {}
    fields: set[tuple[int, str]] = set()

    def escaped(kind: str, what: str) -> None:
        counts[kind] += 1
        if len(examples.setdefault(kind, [])) < 5:
            examples[kind].append(what)

    for seed, field, (old, new), event in cases(seeds):
        counts["events"] += 1
        fields.add((id(seed), field))
        where = f"{seed.get('source') or 'flowlogs'} {field} = {new!r:.60}"
        try:
            outputs = harness.run(_encoded(event))
        except Exception as exc:  # noqa: BLE001 - counted: the corpus's subject
            escaped("uncaught", f"{where}: {type(exc).__name__}: {exc}"[:200])
            continue
        try:
            check(outputs)
        except (AssertionError, ValueError):
            escaped("invalid_output", where)
        for report in _reports(outputs):
            found = slack_findings(slack_message.build(report))
            for name, key in (("mentions", "live_mentions"), ("foreign links", "foreign_links"),
                              ("formatted event text", "formatted_event_text")):  # fmt: skip
                if found[name]:
                    escaped(key, f"{where}: {found[name][0]}")
            try:
                others = output_findings(report)
            except (ValueError, TypeError, KeyError) as exc:
                others = [f"{type(exc).__name__}: {exc}"]
            if others:
                escaped("output_escapes", f"{where}: {others[0]}")
        plan = _plan(outputs)
        for action, target in plan:
            if any(marker in target for marker in HOSTILE_MARKERS):
                escaped("hostile_request_paths", f"{where}: {action} on {target!r}")
        added = _actions(plan) - _actions(original[id(seed)])
        if _kind(old) != _kind(new) and added:
            escaped("actions_on_malformed_deciding_fields", f"{where}: {sorted(added)}")
    logging.disable(logging.NOTSET)
    counts["fields"] = len(fields)
    return {**counts, "examples": examples}


def _encoded(event: dict[str, Any]) -> dict[str, Any]:
    """A decoded CloudWatch Logs payload is delivered encoded, as the service sends it."""
    if "awslogs" in event and isinstance(event["awslogs"], dict) and "data" not in event["awslogs"]:
        data = base64.b64encode(gzip.compress(json.dumps(event["awslogs"]).encode())).decode()
        return {"awslogs": {"data": data}}
    return event


def one_per_source(seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first seed of each source and detail type: what `make test` runs through every field."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for seed in seeds:
        key = (str(seed.get("source") or ("awslogs" if "awslogs" in seed else "s3")), str(seed.get("detail-type")))
        if "awslogs" in seed and "data" in seed["awslogs"]:
            continue  # its decoded twin reaches the records' columns
        chosen.setdefault(key, seed)
    return list(chosen.values())


def all_seeds() -> list[dict[str, Any]]:
    return [s for s in seed_events() if isinstance(s, dict) and not ("awslogs" in s and "data" in s["awslogs"])]


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="every field of every source, replaced by hostile values")
    parser.add_argument("--quick", action="store_true", help="one seed per source and detail type")
    args = parser.parse_args()
    seeds = all_seeds()
    result = campaign(one_per_source(seeds) if args.quick else seeds)
    print(json.dumps(result, indent=2))
    escapes = sum(v for k, v in result.items() if k not in ("events", "fields", "examples"))
    sys.exit(1 if escapes else 0)
