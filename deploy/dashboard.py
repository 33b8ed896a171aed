"""The stage's CloudWatch dashboard and alarms, built from the metrics the code emits.

    python -m deploy.dashboard --stage prod          # `make deploy` runs it after `chalice deploy`
    python -m deploy.dashboard --stage prod --print  # the dashboard body and the alarms, as JSON

Every widget queries a metric name and dimension set of `chalicelib.metrics.EMITTED`; a test
checks that, and that each one has a widget, so a renamed metric cannot leave a blank graph.
Alarms: failed actions, events the responder could not understand, failed notifications, and
errors of every function (an invocation that failed outright: EventBridge retries it twice,
then drops it). They notify the stage's SNS topic when it has one. Idempotent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chalicelib import functions
from chalicelib import metrics as m

ROOT = Path(__file__).resolve().parents[1]
PERIOD = 300


def name(stage: str) -> str:
    return f"eks-responder-{stage}"


def _search(metric: str, stat: str, label: str) -> dict[str, Any]:
    """Every dimension value of one metric (sources, actions, ...), one line each."""
    dims = ",".join(m.EMITTED[metric][1])
    query = f"SEARCH('{{{m.NAMESPACE},{dims}}} MetricName=\"{metric}\"', '{stat}', {PERIOD})"
    return {"expression": query, "label": label, "id": f"{metric.lower()}_{stat.lower()}"}


def _graph(title: str, queries: list[dict[str, Any]], x: int, y: int, *, stacked: bool = False) -> dict[str, Any]:
    return {
        "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
        "properties": {"title": title, "view": "timeSeries", "stacked": stacked, "period": PERIOD,
                       "region": "${region}", "metrics": [[q] for q in queries]},
    }  # fmt: skip


def _fixed(metric: str, stat: str = "Sum") -> list[Any]:
    return [m.NAMESPACE, metric, *[v for k in m.EMITTED[metric][1] for v in (k, m.SERVICE[k])], {"stat": stat}]


def dashboard(region: str) -> dict[str, Any]:
    contained = [_search(m.TIME_TO_CONTAIN, stat, label) for stat, label in (("p50", "p50"), ("p90", "p90"),
                                                                            ("Maximum", "max"))]  # fmt: skip
    waiting = {"id": "waiting", "label": "", "expression": (
        f"SEARCH('{{{m.NAMESPACE},action,status}} MetricName=\"{m.ACTIONS}\" status=\"awaiting-approval\"', "
        f"'Sum', {PERIOD})")}  # fmt: skip
    totals = [_fixed(x) for x in (m.FAILED_ACTIONS, m.DUPLICATES, m.REJECTED_EVENTS, m.FLOW_RECORDS,
                                  m.FLOW_RECORDS_MALFORMED, m.FLOW_RECORDS_NO_DATA, m.FLOW_FINDINGS,
                                  m.FLOW_DELIVERIES_DAMAGED)]  # fmt: skip
    widgets = [
        _graph("Findings by source and severity", [_search(m.INCIDENTS, "Sum", "")], 0, 0, stacked=True),
        _graph("Incidents: acted, reported, failed", [_search(m.OUTCOMES, "Sum", "")], 12, 0, stacked=True),
        _graph("Actions by kind and status", [_search(m.ACTIONS, "Sum", "")], 0, 6),
        _graph("Time to contain (seconds): p50, p90, max", contained, 12, 6),
        _graph("Approvals pending (steps waiting for a human)", [waiting], 0, 12),
        _graph("Failed notifications by channel", [_search(m.NOTIFIER_FAILURES, "Sum", "")], 12, 12),
        {"type": "metric", "x": 0, "y": 18, "width": 24, "height": 6,
         "properties": {"title": "Totals: failed actions, duplicates suppressed, rejected events, flow logs",
                        "view": "timeSeries", "period": PERIOD, "region": "${region}", "metrics": totals}},
    ]  # fmt: skip
    body: dict[str, Any] = json.loads(json.dumps({"widgets": widgets}).replace("${region}", region))
    return body


def alarms(stage: str, topic: str | None) -> list[dict[str, Any]]:
    actions = {"AlarmActions": [topic], "OKActions": [topic]} if topic else {}
    found = []
    for metric, what in ((m.FAILED_ACTIONS, "a response step failed"),
                         (m.REJECTED_EVENTS, "an event could not be understood (logged with its id, not acted on)"),
                         (m.FLOW_DELIVERIES_DAMAGED, "a flow-log delivery could not be read whole")):  # fmt: skip
        found.append({
            "AlarmName": f"{name(stage)}-{metric}", "AlarmDescription": f"eks-responder {stage}: {what}",
            "Namespace": m.NAMESPACE, "MetricName": metric,
            "Dimensions": [{"Name": k, "Value": m.SERVICE[k]} for k in m.EMITTED[metric][1]],
            "Statistic": "Sum", "Period": PERIOD, "EvaluationPeriods": 1, "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching", **actions,
        })  # fmt: skip
    for function in functions.FUNCTIONS:
        lambda_name = f"{functions.APP_NAME}-{stage}-{function.name}"
        found.append({
            "AlarmName": f"{name(stage)}-{function.name}-errors",
            "AlarmDescription": f"eks-responder {stage}: {function.name} failed an invocation ({function.summary})",
            "Namespace": "AWS/Lambda", "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": lambda_name}],
            "Statistic": "Sum", "Period": PERIOD, "EvaluationPeriods": 1, "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching", **actions,
        })  # fmt: skip
    return found


def _stage_env(stage: str) -> dict[str, str]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {**config.get("environment_variables", {}), **config["stages"][stage].get("environment_variables", {})}


def apply(session: Any, stage: str, topic: str | None) -> dict[str, Any]:
    cloudwatch = session.client("cloudwatch")
    body = json.dumps(dashboard(session.region_name))
    cloudwatch.put_dashboard(DashboardName=name(stage), DashboardBody=body)
    made = alarms(stage, topic)
    for alarm in made:
        cloudwatch.put_metric_alarm(**alarm)
    return {"dashboard": name(stage), "alarms": [a["AlarmName"] for a in made]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.dashboard", description=__doc__)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--region", help="default: your AWS configuration's region")
    parser.add_argument("--print", action="store_true", help="print the dashboard and alarms instead")
    args = parser.parse_args(argv)
    import boto3

    session = boto3.session.Session(region_name=args.region)
    if not session.region_name:
        sys.stderr.write("no region: pass --region or configure one\n")
        return 2
    topic = _stage_env(args.stage).get("SNS_TOPIC_ARN") or None
    if args.print:
        out = {"dashboard": dashboard(session.region_name), "alarms": alarms(args.stage, topic)}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    done = apply(session, args.stage, topic)
    sys.stdout.write(f"dashboard {done['dashboard']}, {len(done['alarms'])} alarms\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
