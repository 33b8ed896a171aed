"""How every event reaches a function, or the failure queue: the stage's delivery guarantees as data.

EventBridge and CloudWatch Logs invoke the functions asynchronously. Each asynchronously invoked
function gets bounded retries and event age and an on-failure destination; each EventBridge rule
target a retry policy and a dead-letter queue; each function a reserved concurrency, so a burst
queues in Lambda instead of overrunning the API server. Everything that fails for good lands in
one encrypted SQS queue per stage (`eks-responder redrive` replays it). `make deploy`
(deploy/delivery.py after `chalice deploy`) and the template `make package` writes both apply
exactly these values; a test keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib import functions
from chalicelib.interfaces import IAMStatement

RETENTION_SECONDS = 14 * 86400  # the longest SQS keeps a message: two weeks to redrive
# Lambda's own retries of a failed asynchronous invocation (0-2) and how long an event may wait in
# its queue (throttled, or between retries) before it goes to the failure queue instead.
MAX_RETRY_ATTEMPTS = 2
MAX_EVENT_AGE_SECONDS = 3 * 3600
# EventBridge's retries when it cannot hand the event to Lambda at all (the function deleted, its
# permission gone, the service failing), and for how long.
RULE_RETRY_ATTEMPTS = 20
RULE_EVENT_AGE_SECONDS = 3 * 3600
# Concurrent invocations per function: enough for a burst, few enough that a hundred findings at
# once cannot all hit the API server and the AWS APIs together (the rest wait in Lambda's queue).
RESERVED_CONCURRENCY = {
    "on_guardduty_finding": 10,
    "on_securityhub_finding": 5,
    "on_kms_api_call": 5,
    "on_kms_key_event": 2,
    "on_ecr_image_scan": 5,
    "on_inspector_finding": 5,
    "on_flow_log_object": 5,
    "on_flow_logs": 5,
    "on_memory_capture_status": 2,
    "refresh_key_policies": 1,
    "expire_plans": 1,
    "api_handler": 5,
}


@dataclass(frozen=True)
class Delivery:
    function: functions.Function
    reserved_concurrency: int

    @property
    def asynchronous(self) -> bool:
        """Invoked by EventBridge or a CloudWatch Logs subscription (not the API Gateway route)."""
        return self.function.kind != "approvals"

    @property
    def rule(self) -> bool:
        """Subscribed through an EventBridge rule (a pattern or a schedule) that Chalice makes."""
        return self.asynchronous and self.function.name != "on_flow_logs"


def queue_name(stage: str) -> str:
    return f"{functions.APP_NAME}-{stage}-failures"


def queue_arn(stage: str, region: str = "{region}", account: str = "{account}") -> str:
    return f"arn:aws:sqs:{region}:{account}:{queue_name(stage)}"


def rule_name(stage: str, function: functions.Function) -> str:
    """The rule `chalice deploy` makes for an event or schedule handler."""
    return f"{functions.APP_NAME}-{stage}-{function.name}-event"


def function_name(stage: str, function: functions.Function) -> str:
    return f"{functions.APP_NAME}-{stage}-{function.name}"


DELIVERIES = tuple(Delivery(f, RESERVED_CONCURRENCY[f.name]) for f in functions.FUNCTIONS)
BY_FUNCTION = {d.function.name: d for d in DELIVERIES}


def permissions(function: functions.Function) -> list[IAMStatement]:
    """An asynchronous function sends what failed for good to its stage's failure queue (Lambda's
    on-failure destination uses the function's own role)."""
    if not BY_FUNCTION[function.name].asynchronous:
        return []
    return [IAMStatement(("sqs:SendMessage",), (queue_arn("{stage}"),))]
