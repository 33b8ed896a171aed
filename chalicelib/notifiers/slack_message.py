"""The Slack message for an incident: Block Kit, where no value from an event is structure.

Pure: a report in, a message out. Escaping `&`, `<` and `>` stops `<!channel>` and `<@U123>`, but
Slack would still auto-link a bare `http://evil.example` inside it and format `*bold*` or `_x_`.
So every value that comes from an event is shown as a literal: escaped, its backticks
neutralised, inside an inline code span (or a code block, for lines), where Slack neither formats
nor links it; headers are `plain_text`. The only links are the ones built here, from validated
parts: AWS console pages and NVD.
"""

from __future__ import annotations

import re
from typing import Any

from chalicelib.notifiers import facts
from chalicelib.notifiers.facts import console_link

SEVERITY_STYLE = {
    "critical": ("#7b0000", ":rotating_light:"),
    "high": ("#d50200", ":red_circle:"),
    "medium": ("#ff9900", ":large_orange_circle:"),
    "low": ("#2a7ab0", ":large_blue_circle:"),
}
STATUS_MARK = {"succeeded": ":white_check_mark:", "planned": ":memo:", "skipped": ":fast_forward:", "failed": ":x:",
               "awaiting-approval": ":hourglass_flowing_sand:", "rejected": ":no_entry_sign:"}  # fmt: skip

# Slack's limits (Block Kit reference): header text 150, section text 3000, field 2000, 10 fields, 50 blocks.
HEADER_LIMIT = 150
TEXT_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
MAX_ACTION_LINES = 25


def escape(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def literal(value: Any, limit: int = 1000) -> str:
    """An event value as inline code: nothing in it formats, links or mentions."""
    text = " ".join(escape(str(value)[:limit]).replace("`", "'").split())
    return f"`{text}`" if text else "`-`"


def block(value: Any, limit: int = 2500) -> str:
    """Lines of event values as a code block that nothing in them can close."""
    return "```" + escape(str(value)[:limit]).replace("`", "'") + "```"


def cut(text: str, limit: int) -> str:
    """At most `limit` characters; a code span or block cut open is closed again, so no event text
    that was inside it can escape into formatting."""
    if len(text) <= limit:
        return text
    kept = text[: limit - 5] + "…"
    fences = kept.count("```")
    if fences % 2:
        return kept + "```"
    if kept.replace("```", "").count("`") % 2:
        return kept + "`"
    return kept


_CVE = re.compile(r"^CVE-\d{4}-\d{4,7}$")
_RUNNING = re.compile(r"\d+ pod\(s\) run ")


def _vulnerability(incident: dict[str, Any]) -> str:
    """Image scans: the CVE (linked, only when it is a well-formed id), or the severity counts."""
    details = incident.get("details") or {}
    cve = str(details.get("cve") or "")
    facts = []
    if cve:
        facts.append(literal(cve))
    if details.get("severity_counts"):
        facts.append(literal(details["severity_counts"]))
    for label, key in (("fix", "fix_available"), ("exploit", "exploit_available")):
        if details.get(key):
            facts.append(f"{label} {literal(details[key])}")
    for label, key in (("score", "inspector_score"), ("EPSS", "epss")):
        if details.get(key):
            facts.append(f"{label} {literal(details[key])}")
    text = ", ".join(facts)
    worst = str(details.get("worst_cves") or "")
    if worst:
        text += "\nWorst:\n" + "\n".join(_linked(line) for line in worst.splitlines())
    elif _CVE.match(cve):
        text += f"\n{_nvd(cve, f'{cve} at NVD')}"
    if details.get("accepted_cves"):
        text += f"\nAccepted risks left out: {literal(details['accepted_cves'])}"
    if details.get("findings_error"):
        text += f"\nCVE list not read: {literal(details['findings_error'])}"
    return text


def _nvd(cve: str, label: str) -> str:
    # The link is ours: only a strict CVE id goes into it.
    return f"<https://nvd.nist.gov/vuln/detail/{cve}|{label}>"


def _linked(line: str) -> str:
    """`CVE-2021-3711 CRITICAL CVSS 9.8 openssl 1.1.1k` with the id linked when it is a strict CVE id."""
    first, _, rest = line.partition(" ")
    head = _nvd(first, first) if _CVE.match(first) else literal(first)
    return f"• {head} {literal(rest) if rest.strip() else ''}".rstrip()


def _flows(incident: dict[str, Any]) -> str:
    """Flow-log incidents: who is behind the address, the biggest flows, where the records came from."""
    if incident.get("source") != "flowlogs":
        return ""
    details = incident.get("details") or {}
    parts = []
    if details.get("attribution"):
        parts.append(f"*Attribution*\n{literal(details['attribution'])}")
    if details.get("ports"):
        parts.append(f"*Ports*\n{literal(details['ports'])}")
    if details.get("top_flows"):
        parts.append(f"*Top flows* ({literal(details.get('records', '?'))} records)\n{block(details['top_flows'])}")
    if details.get("origin"):
        parts.append(f"*From* {literal(details['origin'])}")
    return "\n".join(parts)


def running_pods(report: dict[str, Any]) -> str:
    """The pods found running a scanned image, per cluster, as the responder noted them."""
    return "\n".join(literal(note) for note in report.get("notes") or [] if _RUNNING.search(str(note)))


def _workloads(incident: dict[str, Any]) -> list[str]:
    # A Pod "workload" is already listed among the pods.
    return [w for w in incident.get("workloads") or [] if not str(w).startswith("Pod/")]


def _file(details: dict[str, Any]) -> str | None:
    """A Runtime finding's file: `Write /etc/cron.d/x` (SensitiveFileModified), a library or script."""
    path = details.get("file_path") or details.get("library_path") or details.get("script_path")
    if not path:
        return None
    return f"{details['file_operation']} {path}" if details.get("file_operation") else str(path)


def _fields(incident: dict[str, Any], alias: Any, contained: Any = None) -> list[dict[str, str]]:
    # The shared facts, each as a literal; the vulnerability as Slack can show it (linked CVE ids).
    shown = [(name, literal(value)) for name, value in facts.fields(incident, alias, contained)
             if name != "Vulnerability"]  # fmt: skip
    vulnerability = _vulnerability(incident)  # already mrkdwn: escaped values and a link of ours
    if vulnerability:
        shown.append(("Vulnerability", vulnerability))
    fields = [{"type": "mrkdwn", "text": cut(f"*{name}*\n{text}", FIELD_LIMIT)} for name, text in shown]
    return fields[:MAX_FIELDS]


def _action_line(action: dict[str, Any]) -> str:
    step = f"{action['step']}. " if action.get("step") is not None else ""
    return (f"{STATUS_MARK.get(action['status'], '')} {step}{literal(action['action'])} {literal(action['target'])}: "
            f"{literal(action['detail'])}")  # fmt: skip


def _action_sections(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every step in full, in as many sections as Slack's 3,000 characters per section need: a
    line is never cut, so an approver sees the whole of each step a button acts on."""
    sections: list[list[str]] = [[]]
    for action in actions:
        line = cut(_action_line(action), TEXT_LIMIT)
        if sections[-1] and len("\n".join([*sections[-1], line])) > TEXT_LIMIT:
            sections.append([])
        sections[-1].append(line)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}} for lines in sections if lines]


def changed_nothing(report: dict[str, Any]) -> bool:
    return not any(a["status"] == "succeeded" for a in report.get("actions", []))


def rejected(report: dict[str, Any]) -> dict[str, Any]:
    """An event the responder could not understand: said, with its id, so it is not lost."""
    if report.get("delivery_failure"):
        text = f":warning: Delivery failed for {literal(report.get('incident_id') or '?')}: {literal(report['error'])}"
    else:
        text = f":warning: Rejected event {literal(report.get('event_id') or 'no id')}: {literal(report['error'])}"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": cut(text, TEXT_LIMIT)}}]
    return {"text": cut(text, TEXT_LIMIT), "attachments": [{"color": "#808080", "blocks": blocks}]}


def build(report: dict[str, Any]) -> dict[str, Any]:
    """The webhook payload: `text` (notifications, screen readers) and a coloured attachment."""
    if "error" in report:
        return rejected(report)
    incident = report["incident"]
    severity = str(incident.get("severity", "low"))
    colour, emoji = SEVERITY_STYLE.get(severity, SEVERITY_STYLE["low"])
    dry = report.get("mode") != "live" or incident.get("sample")
    marker = "DRY-RUN: nothing was changed. " if dry and changed_nothing(report) else ""
    title = cut(f"{severity.upper()} {incident['type']}", HEADER_LIMIT)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(f"{emoji} {literal(incident.get('title', ''))}", TEXT_LIMIT)},
        },
    ]
    fields = _fields(incident, report.get("account_alias"), report.get("time_to_contain_seconds"))
    if fields:
        blocks.append({"type": "section", "fields": fields})
    flows = _flows(report.get("incident") or {})
    if flows:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": cut(flows, TEXT_LIMIT)}})
    pods = running_pods(report)
    if pods:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": cut(f"*Running*\n{pods}", TEXT_LIMIT)}})
    pages = _pages(report.get("actions") or [])
    if pages:
        blocks.extend(_action_sections(pages[0]))
    else:
        why = report.get("reason") or "no action"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(f"No action: {literal(why)}", TEXT_LIMIT)}}
        )
    context = [f"{marker}Rule {literal(report.get('rule') or 'none')}", f"incident {literal(incident['id'])}"]
    follows = report.get("follows_dry_run")
    if isinstance(follows, dict):
        context.append(f"follows a dry run of this finding at {literal(follows.get('at'))}")
    if report.get("evidence"):
        context.append(f"evidence {literal(report['evidence'])}")
    link = console_link(incident)
    if link:
        context.append(f"<{link}|open in the AWS console>")  # built by us, not from the event
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(t, FIELD_LIMIT)} for t in context]})
    blocks.extend(_decision_blocks(report, pages[0] if pages else [], last=len(pages) <= 1))
    where = incident.get("cluster") or incident.get("account")
    summary = f"{marker}{severity.upper()} {literal(incident['type'])} in {literal(where)}"
    message: dict[str, Any] = {"text": cut(summary, TEXT_LIMIT), "attachments": [{"color": colour, "blocks": blocks}]}
    if len(pages) > 1:
        # More steps than one message shows: the rest follow, each with the buttons of its own steps.
        message["followups"] = [_continued(report, page, colour, last=n == len(pages) - 1)
                                for n, page in enumerate(pages) if n]  # fmt: skip
    return message


def _pages(actions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [actions[i : i + MAX_ACTION_LINES] for i in range(0, len(actions), MAX_ACTION_LINES)]


def _continued(report: dict[str, Any], page: list[dict[str, Any]], colour: str, *, last: bool) -> dict[str, Any]:
    incident = report["incident"]
    first, final = page[0].get("step", "?"), page[-1].get("step", "?")
    title = cut(f"Steps {first} to {final} of incident {incident['id']}", HEADER_LIMIT)
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": title}}, *_action_sections(page),
              *_decision_blocks(report, page, last=last)]  # fmt: skip
    text = cut(f"{title} (continued)", TEXT_LIMIT)
    return {"text": text, "attachments": [{"color": colour, "blocks": blocks}]}


MAX_STEP_BUTTONS = 3  # per message: Slack allows 25 elements, but a wall of buttons invites the wrong click


def _decision_blocks(report: dict[str, Any], shown: list[dict[str, Any]], *, last: bool) -> list[dict[str, Any]]:
    """The buttons of one message: only for steps this message shows in full. "Approve all",
    "Reject" and "Release" appear only where every step they act on is shown; steps that wait
    beyond the per-step buttons are named with the command that approves them."""
    buttons = approval_buttons(report, {a.get("step") for a in shown})
    blocks: list[dict[str, Any]] = [buttons] if buttons else []
    waiting = set((report.get("approval") or {}).get("waiting") or [])
    undoable = set((report.get("undo") or {}).get("steps") or [])
    here = {a.get("step") for a in shown}
    offered = {int(b["action_id"].rsplit("-", 1)[1]) for b in (buttons or {}).get("elements", [])
               if b["action_id"].startswith("approve-step-")}  # fmt: skip
    incident = literal(report["incident"]["id"])
    said = []
    rest = sorted(i for i in waiting & here if i not in offered) if not waiting <= here else []
    if rest:
        listed = ", ".join(str(i) for i in rest)
        said.append(f"Step(s) {listed} wait too: `eks-responder approve` {incident} `--step N`")
    if last and undoable and not undoable <= here:
        said.append(f"Release: `eks-responder release` {incident} (its steps are in more than one message)")
    if said:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(t, FIELD_LIMIT)} for t in said]})
    return blocks


def action_value(incident_id: str, step: int | None = None, revision: str = "") -> str:
    """What a button carries: the incident, the step or `*` for every waiting step, and the revision of
    the plan the message showed (a decision binds to what the approver saw)."""
    return f"{incident_id}|{'*' if step is None else step}|{revision}"


def approval_buttons(report: dict[str, Any], shown: set[Any] | None = None) -> dict[str, Any] | None:
    """Approve and Reject for the steps waiting (and per step, for the first few), Release for the
    steps a release undoes: only for steps among `shown` (every step when None), and only when a
    table keeps the plan (the report carries `approval` / `undo` only then). The values name the
    incident, the step and the plan's revision; what a click may do is decided by the route."""
    waiting = (report.get("approval") or {}).get("waiting") or []
    undoable = (report.get("undo") or {}).get("steps") or []
    if shown is None:
        shown = {*waiting, *undoable}
    if not waiting and not undoable:
        return None
    incident_id = str(report["incident"]["id"])
    revision = str((report.get("approval") or {}).get("revision") or (report.get("undo") or {}).get("revision") or "")

    def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text},
                                 "action_id": action_id, "value": value}  # fmt: skip
        if style:
            found["style"] = style
        return found

    elements = []
    if waiting and set(waiting) <= shown:
        elements += [
            button(f"Approve {len(waiting)} step(s)", "approve", action_value(incident_id, None, revision), "primary"),
            button("Reject", "reject", action_value(incident_id, None, revision), "danger"),
        ]
    elements += [button(f"Approve step {i}", f"approve-step-{i}", action_value(incident_id, int(i), revision))
                 for i in [i for i in waiting if i in shown][:MAX_STEP_BUTTONS]]  # fmt: skip
    if undoable and set(undoable) <= shown:
        elements.append(
            button(f"Release {len(undoable)} step(s)", "release", action_value(incident_id, None, revision))
        )
    if not elements:
        return None
    return {"type": "actions", "block_id": "eks-responder-approval", "elements": elements}


def render_text(message: dict[str, Any]) -> str:
    """The message as a terminal would show it (replay, demo), with the messages that follow it."""
    lines = [message["text"]]
    for block in message["attachments"][0]["blocks"]:
        if block["type"] == "header":
            lines.append(f"== {block['text']['text']} ==")
        elif block["type"] == "section" and "text" in block:
            lines.append(block["text"]["text"])
        elif block["type"] == "section":
            lines.extend(f.get("text", "").replace("\n", ": ", 1) for f in block["fields"])
        elif block["type"] == "context":
            lines.append(" · ".join(e["text"] for e in block["elements"]))
        elif block["type"] == "actions":
            lines.append(" ".join(f"[{e['text']['text']}]" for e in block["elements"]))
    lines += [f"--- next message ---\n{render_text(more)}" for more in message.get("followups", [])]
    return "\n".join(lines)
