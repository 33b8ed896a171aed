"""One incident's timeline, for people: from its audit trail (the JSON lines the functions log, or
`replay -v`) and, when the incident table has it, its plan (who approved, rejected or released
what, and when). Rendered as one self-contained HTML page (no script, no external resource) or
as Markdown for a ticket.

Every value comes from an event or from what the responder wrote about it: all of it is text,
escaped, never markup. The only links are to S3 objects the responder wrote (the console URL is
built from a checked bucket name and key).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from chalicelib.incident import timestamp
from chalicelib.notifiers.facts import contained_text

_S3 = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/([A-Za-z0-9/_.=-]{1,900})")
_STATUS_COLOUR = {"succeeded": "#1a7f37", "failed": "#cf222e", "skipped": "#6e7781", "planned": "#0969da",
                  "awaiting-approval": "#9a6700", "rejected": "#8250df", "approved": "#1a7f37",
                  "released": "#1a7f37", "release failed": "#cf222e", "release skipped": "#6e7781"}  # fmt: skip
MAX_ENTRIES = 500


@dataclass(frozen=True)
class Entry:
    at: str | None
    what: str  # finding, response, approved, release, expiry, capture
    action: str
    target: str
    status: str
    detail: str
    by: str | None = None
    step: int | None = None  # the plan's step number, where known


@dataclass
class Timeline:
    incident_id: str
    facts: dict[str, str] = field(default_factory=dict)
    rule: str | None = None
    mode: str | None = None
    observed_at: str | None = None
    time_to_contain: float | None = None
    entries: list[Entry] = field(default_factory=list)
    decisions: list[Entry] = field(default_factory=list)
    logged: list[Entry] = field(default_factory=list)  # decisions from the audit lines: shown when no plan history

    @property
    def empty(self) -> bool:
        return not self.entries and not self.facts and not self.logged


def _text(value: Any, limit: int = 2000) -> str:
    return str(value)[:limit] if value is not None else ""


def from_audit(lines: Iterable[str], incident_id: str) -> Timeline:
    """The incident's records among audit log lines (other lines and other incidents are skipped)."""
    found = Timeline(incident_id)
    what = "response"
    by: str | None = None
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("incident_id") != incident_id:
            continue
        if record.get("message") == "incident":
            what, by = _text(record.get("what") or "response", 40), record.get("by")
            _incident(found, record)
        elif record.get("message") == "decision" and len(found.logged) < MAX_ENTRIES:
            steps = ", ".join(str(i) for i in record.get("steps") or [] if isinstance(i, int))
            found.logged.append(Entry(timestamp(record.get("at")) or timestamp(record.get("timestamp")), "decision",
                                      "", _text(f"step(s) {steps}", 200), _text(record.get("what"), 40),
                                      _text(record.get("said")), _text(record.get("by"), 200) or None))  # fmt: skip
        elif record.get("message") == "action" and len(found.entries) < MAX_ENTRIES:
            at = timestamp(record.get("at")) or timestamp(record.get("timestamp"))
            step = record.get("step") if isinstance(record.get("step"), int) else None
            # A step's line says what it was part of; older lines follow their incident's line.
            part, who = (record.get("what"), record.get("by")) if "what" in record else (what, by)
            found.entries.append(Entry(at, _text(part or "response", 40), _text(record.get("action"), 80),
                                       _text(record.get("target"), 300), _text(record.get("status"), 40),
                                       _text(record.get("detail")), _text(who, 200) or None, step))  # fmt: skip
    return found


def _incident(found: Timeline, record: dict[str, Any]) -> None:
    for key, label in (("finding_type", "Finding"), ("severity", "Severity"), ("title", "Title"),
                       ("source", "Source"), ("account", "Account"), ("region", "Region"),
                       ("cluster", "Cluster"), ("event", "Event")):  # fmt: skip
        if record.get(key) and label not in found.facts:
            found.facts[label] = _text(record[key], 500)
    found.rule = found.rule or _text(record.get("rule"), 80) or None
    # A live response after a dry run of the same finding is what happened: its mode is the timeline's.
    found.mode = "live" if record.get("mode") == "live" else found.mode or _text(record.get("mode"), 20) or None
    follows = record.get("follows_dry_run")
    if isinstance(follows, dict) and "Follows" not in found.facts:
        found.facts["Follows"] = _text(f"a dry run of this finding at {follows.get('at')}", 200)
    found.observed_at = found.observed_at or timestamp(record.get("observed_at"))
    ttc = record.get("time_to_contain_seconds")
    if found.time_to_contain is None and isinstance(ttc, int | float) and not isinstance(ttc, bool):
        found.time_to_contain = float(ttc)


def with_plan(found: Timeline, plan: Any) -> Timeline:
    """Add what the stored plan knows: the decisions on each step, by whom and when."""
    found.rule = found.rule or plan.rule
    found.mode = found.mode or plan.mode
    incident = plan.incident
    for label, value in (("Finding", incident.type), ("Severity", incident.severity.label), ("Title", incident.title),
                         ("Account", incident.account), ("Region", incident.region),
                         ("Cluster", incident.cluster)):  # fmt: skip
        if value and label not in found.facts:
            found.facts[label] = _text(value, 500)
    found.observed_at = found.observed_at or incident.observed_at
    found.decisions.append(
        Entry(
            timestamp(plan.created_at),
            "plan",
            "",
            "",
            "planned",
            f"rule {plan.rule}: {len(plan.steps)} step(s); approval expires {plan.expires_at}",
        )
    )
    for step in plan.steps:
        # Every decision and run the step went through, from its history; a plan stored before
        # steps kept one has only the latest decision.
        history = [e for e in step.history if e.get("what") != "planned"]
        for entry in history:
            what = entry.get("what", "")
            detail = f"step {step.index}" + (f": {entry['detail']}" if entry.get("detail") else "")
            found.decisions.append(Entry(timestamp(entry.get("at")), _kind(what), step.action, step.label,
                                         _text(what, 60), _text(detail), entry.get("by"), step.index))  # fmt: skip
        if not history and (step.decided_at or step.decided_by):
            found.decisions.append(Entry(timestamp(step.decided_at), "decision", step.action, step.label,
                                         step.state.value, f"step {step.index}", step.decided_by))  # fmt: skip
    return found


def _kind(what: str) -> str:
    """The timeline's "what" column for a history entry: a human's decision, or the responder's run."""
    if what == "ran":
        return "execution"
    if what.startswith(("release", "let go")) and what != "release requested":
        return "release"
    return "decision"


def _ordered(found: Timeline) -> list[Entry]:
    # The plan's history has every decision step by step; the audit lines' are for when it is not read.
    from_plan = any(e.what in ("decision", "execution", "release") for e in found.decisions)
    # A run or release the audit lines already show (same step) is not shown again from the history.
    logged = {(e.step, "release" if e.what == "release" else "execution") for e in found.entries
              if e.step and e.status != "awaiting-approval"}  # fmt: skip
    decisions = [e for e in found.decisions if (e.step, e.what) not in logged]
    entries = [*found.entries, *decisions, *([] if from_plan else found.logged)]
    if found.observed_at:
        entries.append(Entry(found.observed_at, "finding", "", "", "observed", "the finding's last update"))
    return sorted(entries, key=lambda e: e.at or "9999")


def _links(detail: str) -> str:
    """The escaped detail, with the S3 objects the responder wrote as console links."""
    out, last = [], 0
    for match in _S3.finditer(detail):
        out.append(html.escape(detail[last : match.start()]))
        bucket, key = match.groups()
        url = f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key, safe='/')}"
        out.append(f'<a href="{html.escape(url)}">{html.escape(match.group(0))}</a>')
        last = match.end()
    out.append(html.escape(detail[last:]))
    return "".join(out)


def _chart(entries: list[Entry]) -> str:
    """A time axis with one mark per timed entry: an inline SVG, no script."""
    # The response's own steps: the finding can be hours older, which would squeeze them into a dot.
    timed = [(datetime.fromisoformat(e.at.replace("Z", "+00:00")), e) for e in entries if e.at and e.what != "finding"]
    if not timed:
        return '<p class="muted">No timed step to chart.</p>'
    start, end = timed[0][0], timed[-1][0]
    span = max((end - start).total_seconds(), 0.001)
    width, row, left = 1040, 18, 250  # the labels' column fits the longest action name
    height = row * len(timed) + 30
    marks = []
    for index, (when, entry) in enumerate(timed):
        x = left + (width - left - 260) * (when - start).total_seconds() / span
        y = 20 + index * row
        colour = _STATUS_COLOUR.get(entry.status, "#57606a")
        label = html.escape(entry.action or entry.what)
        target = html.escape(_short(entry.target, 38))
        marks.append(f'<text x="4" y="{y + 4}" class="lbl">{label}</text>'
                     f'<line x1="{left}" y1="{y}" x2="{x:.1f}" y2="{y}" stroke="#d0d7de"/>'
                     f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{colour}"><title>{html.escape(entry.at or "")} '
                     f"{label} {html.escape(entry.target)} {html.escape(entry.status)}</title></circle>"
                     f'<text x="{x + 9:.1f}" y="{y + 4}" class="lbl">{target}</text>')  # fmt: skip
    axis = (f'<text x="{left}" y="{height - 4}" class="lbl">{html.escape(timed[0][1].at or "")}</text>'
            f'<text x="{width - 260}" y="{height - 4}" class="lbl" text-anchor="end">+{span:.3f} s</text>')  # fmt: skip
    return (f'<svg class="chart" role="img" aria-label="timeline" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}">{"".join(marks)}{axis}</svg>')  # fmt: skip


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.status{font-weight:600}.muted{color:#6e7781}.lbl{font:11px monospace;fill:#57606a}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
code{font:12px monospace;overflow-wrap:anywhere}td.time code{white-space:nowrap}
td.action{min-width:9rem}td.action code{overflow-wrap:normal}td.target{min-width:10rem}
.summary{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;background:#f6f8fa}.summary p{margin:.2rem 0}
.legend span{margin-right:1rem;white-space:nowrap}.warn{color:#9a6700}
"""


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


REPLAY_GAP = 3600  # seconds between the finding's last update and the response past which the time means little


def _named(entry: Entry) -> str:
    return f"step {entry.step or '?'} {entry.action} on {entry.target}"


def summary(found: Timeline, entries: list[Entry]) -> list[str]:
    """What a person on call reads first: contained or not and in how long, what waits for a
    human, what failed; and a time that cannot be the response's own, said to be so."""
    said = []
    latest: dict[tuple[int | str | None, str, str], Entry] = {}
    for entry in entries:
        if entry.action and entry.what != "decision":
            latest[(entry.step, entry.action, entry.target)] = entry
    waiting = [e for e in latest.values() if e.status == "awaiting-approval"]
    failed = [e for e in latest.values() if e.status in {"failed", "release failed"}]
    late = found.time_to_contain is not None and found.time_to_contain > REPLAY_GAP
    if found.time_to_contain is None:
        said.append("Not contained: no containment step succeeded live.")
    elif late:
        said.append(f"Contained, {contained_text(found.time_to_contain)}: too long for a live response, so a "
                    "replay of an old finding or a delivery held back; not a time to contain.")  # fmt: skip
    else:
        said.append(f"Contained {contained_text(found.time_to_contain)}.")
    if waiting:
        said.append("Waits for a human: " + "; ".join(_named(e) for e in waiting))
    if failed:
        said.append("Failed: " + "; ".join(_named(e) for e in failed))
    if not waiting and not failed:
        said.append("Nothing waits for a human; no step failed.")
    return said


def _shown(at: str | None) -> str:
    """`2026-12-01 22:59:03.495`: the time to the millisecond, in UTC."""
    return at.replace("T", " ").replace("Z", "")[:23] if at else "-"


def to_html(found: Timeline) -> str:
    entries = _ordered(found)
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in found.facts.items())
    extra = [("Rule", found.rule), ("Mode", found.mode), ("Observed", found.observed_at),
             ("Contained", contained_text(found.time_to_contain))]  # fmt: skip
    facts += "".join(f"<dt>{k}</dt><dd>{html.escape(v)}</dd>" for k, v in extra if v)
    told = "".join(f"<p>{html.escape(line)}</p>" for line in summary(found, entries))
    shown = {e.status for e in entries}
    legend = "".join(f'<span><b style="color:{c}">&#9679;</b> {html.escape(s)}</span>'
                     for s, c in _STATUS_COLOUR.items() if s in shown)  # fmt: skip
    rows = []
    for entry in entries:
        colour = _STATUS_COLOUR.get(entry.status, "#57606a")
        rows.append(
            f'<tr class="step"><td class="time"><code>{html.escape(_shown(entry.at))}</code></td>'
            f"<td>{html.escape(entry.what)}</td>"
            f'<td class="action"><code>{html.escape(entry.action)}</code></td>'
            f'<td class="target"><code>{html.escape(entry.target)}</code></td>'
            f'<td class="status" style="color:{colour}">{html.escape(entry.status)}</td>'
            f"<td>{_links(entry.detail)}</td><td>{html.escape(entry.by or '')}</td></tr>"
        )  # fmt: skip
    title = f"Incident {html.escape(found.incident_id)}"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head><body>'
        f'<h1>{title}</h1><section class="summary">{told}</section><dl>{facts}</dl><h2>Timeline</h2>'
        f'<p class="legend">{legend}</p>{_chart(entries)}'
        f"<h2>Every step</h2><table><thead><tr><th>Time</th><th>What</th><th>Action</th><th>Target</th>"
        f"<th>Status</th><th>Detail</th><th>By</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p class="muted">Generated by eks-responder report from the audit trail'
        f"{' and the incident table' if found.decisions else ''}.</p></body></html>\n"
    )


def _md(value: str) -> str:
    """Text in a Markdown table cell: no HTML (ticket systems render some), no cell break, no code span."""
    return html.escape(value, quote=False).replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _code(value: str) -> str:
    return f"`{_md(value)}`" if value else ""


def to_markdown(found: Timeline) -> str:
    lines = [f"### Incident `{_md(found.incident_id)}`", ""]
    lines += [f"- **{k}**: {_md(v)}" for k, v in found.facts.items()]
    if found.rule:
        lines.append(f"- **Rule**: `{_md(found.rule)}` ({_md(found.mode or '-')})")
    lines[1:1] = [f"> {_md(line)}" for line in summary(found, _ordered(found))] + [""]
    lines += ["", "| Time | What | Action | Target | Status | Detail | By |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {_md(e.at or '-')} | {_md(e.what)} | {_code(e.action)} | {_code(e.target)} | {_md(e.status)} | "
              f"{_md(e.detail)} | {_md(e.by or '')} |" for e in _ordered(found)]  # fmt: skip
    return "\n".join(lines) + "\n"
