"""The stage's CloudWatch dashboard and alarms, built from the metrics the code emits.

    python -m deploy.dashboard --stage prod          # `make deploy` runs it after `chalice deploy`
    python -m deploy.dashboard --stage prod --print  # the dashboard body and the alarms, as JSON

Every widget queries a metric name and dimension set of `chalicelib.notifiers.metrics.EMITTED`; a test
checks that, and that each one has a widget, so a renamed metric cannot leave a blank graph.
Alarms: failed actions, events the responder could not understand, failed notifications,
errors of every function, and delivery (chalicelib.entry.delivery): throttles, dropped events, failed
deliveries to the failure queue, rules that could not invoke their function, and anything waiting
in the failure queue. They notify the stage's SNS topic when it has one. Idempotent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chalicelib import functions
from chalicelib.notifiers import metrics as m

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


def _delivery_widget(stage: str, y: int) -> dict[str, Any]:
    """Throttles, dropped events and the failure queue's depth: what the delivery alarms watch."""
    from chalicelib.entry import delivery

    prefix = f"{functions.APP_NAME}-{stage}-"
    lambdas = [{"expression": f"SEARCH('{{AWS/Lambda,FunctionName}} MetricName=\"{metric}\" "
                              f"FunctionName=\"{prefix}\"', 'Sum', {PERIOD})", "label": "", "id": metric.lower()}
               for metric in ("Throttles", "AsyncEventsDropped", "DestinationDeliveryFailures")]  # fmt: skip
    queue = ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", delivery.queue_name(stage),
             {"stat": "Maximum", "label": "failure queue"}]  # fmt: skip
    widget = _graph("Delivery: throttled, dropped, failure queue depth", lambdas, 0, y)
    widget["properties"]["metrics"].append(queue)
    widget["width"] = 24
    return widget


def dashboard(region: str, stage: str = "dev") -> dict[str, Any]:
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
        _delivery_widget(stage, 24),
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
    return [*found, *delivery_alarms(stage, topic)]


def _alarm(
    stage: str,
    key: str,
    what: str,
    namespace: str,
    metric: str,
    dimension: tuple[str, str],
    actions: dict[str, Any],
    stat: str = "Sum",
) -> dict[str, Any]:
    return {
        "AlarmName": f"{name(stage)}-{key}", "AlarmDescription": f"eks-responder {stage}: {what}",
        "Namespace": namespace, "MetricName": metric, "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
        "Statistic": stat, "Period": PERIOD, "EvaluationPeriods": 1, "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching", **actions,
    }  # fmt: skip


def delivery_alarms(stage: str, topic: str | None) -> list[dict[str, Any]]:
    """An event waiting out its age, dropped, not delivered to the failure queue, or that never
    reached a function; and anything in the failure queue (redrive it)."""
    from chalicelib.entry import delivery

    actions = {"AlarmActions": [topic], "OKActions": [topic]} if topic else {}
    queue = delivery.queue_name(stage)
    found = [_alarm(stage, "failure-queue", f"events failed for good and wait in {queue}: "
                    "`eks-responder redrive` shows and replays them", "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible", ("QueueName", queue), actions, "Maximum")]  # fmt: skip
    for wanted in delivery.DELIVERIES:
        function = wanted.function
        lambda_name = delivery.function_name(stage, function)
        found.append(_alarm(stage, f"{function.name}-throttles", f"{function.name} was throttled (its reserved "
                            "concurrency is in use: events wait in Lambda's queue)", "AWS/Lambda", "Throttles",
                            ("FunctionName", lambda_name), actions))  # fmt: skip
        if not wanted.asynchronous:
            continue
        found.append(_alarm(stage, f"{function.name}-dropped", f"{function.name} dropped events (older than "
                            f"{delivery.MAX_EVENT_AGE_SECONDS} s, or out of retries) with nowhere to send them",
                            "AWS/Lambda", "AsyncEventsDropped", ("FunctionName", lambda_name), actions))  # fmt: skip
        found.append(_alarm(stage, f"{function.name}-destination-failures", f"{function.name} could not put a "
                            "failed event in the failure queue", "AWS/Lambda", "DestinationDeliveryFailures",
                            ("FunctionName", lambda_name), actions))  # fmt: skip
        if wanted.rule:
            rule = delivery.rule_name(stage, function)
            found.append(_alarm(stage, f"{function.name}-rule-failed", f"EventBridge could not invoke "
                                f"{function.name} (rule {rule}): the event went to the failure queue",
                                "AWS/Events", "FailedInvocations", ("RuleName", rule), actions))  # fmt: skip
    return found


def _stage_env(stage: str) -> dict[str, str]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {**config.get("environment_variables", {}), **config["stages"][stage].get("environment_variables", {})}


def apply(session: Any, stage: str, topic: str | None) -> dict[str, Any]:
    cloudwatch = session.client("cloudwatch")
    body = json.dumps(dashboard(session.region_name, stage))
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
        out = {"dashboard": dashboard(session.region_name, args.stage), "alarms": alarms(args.stage, topic)}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    done = apply(session, args.stage, topic)
    sys.stdout.write(f"dashboard {done['dashboard']}, {len(done['alarms'])} alarms\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
