"""eks-responder: AWS findings about EKS in, containment out. Handlers only; logic is in chalicelib."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from chalice.app import Chalice, CloudWatchEvent, ConvertToMiddleware, Rate, Response

from chalicelib.entry import wiring
from chalicelib.entry.lambda_events import TolerantCloudWatchEvent
from chalicelib.sources import patterns

app = Chalice(app_name="eks-responder")
logger = Logger(service="eks_responder")
app.register_middleware(ConvertToMiddleware(logger.inject_lambda_context(correlation_id_path="id", clear_state=True)))

# Load and validate the rules file now: a bad file fails the cold start, not an incident.
wiring.rules()


@app.on_cw_event(patterns.GUARDDUTY_FINDING, name="on_guardduty_finding")
def on_guardduty_finding(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_event(event.to_dict(), event.context)


@app.on_cw_event(patterns.SECURITYHUB_GUARDDUTY_FINDING, name="on_securityhub_finding")
def on_securityhub_finding(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_event(event.to_dict(), event.context)


@app.on_cw_event(patterns.KMS_API_CALL, name="on_kms_api_call")
def on_kms_api_call(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_event(event.to_dict(), event.context)


@app.on_cw_event(patterns.KMS_KEY_EVENT, name="on_kms_key_event")
def on_kms_key_event(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_event(event.to_dict(), event.context)


@app.on_cw_event(patterns.ECR_IMAGE_SCAN, name="on_ecr_image_scan")
def on_ecr_image_scan(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_event(event.to_dict(), event.context)


@app.on_cw_event(patterns.INSPECTOR_IMAGE_FINDING, name="on_inspector_finding")
def on_inspector_finding(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_event(event.to_dict(), event.context)


@app.on_cw_event(patterns.FLOW_LOG_OBJECT, name="on_flow_log_object")
def on_flow_log_object(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_flow_log_objects(event.to_dict(), event.context)


@app.on_cw_event(patterns.MEMORY_CAPTURE_STATUS, name="on_memory_capture_status")
def on_memory_capture_status(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_capture_status(event.to_dict())


# Chalice has no CloudWatch Logs subscription decorator: `make flow-logs` (deploy/flow_logs.py) connects it.
@app.lambda_function(name="on_flow_logs")
def on_flow_logs(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return wiring.handle_flow_log_payload(event, context)


@app.schedule(Rate(1, unit=Rate.HOURS), name="refresh_key_policies")
def refresh_key_policies(event: CloudWatchEvent) -> dict[str, Any]:  # noqa: ARG001 - a schedule has no payload
    return wiring.refresh_key_policies()


@app.schedule(Rate(15, unit=Rate.MINUTES), name="expire_plans")
def expire_plans(event: CloudWatchEvent) -> dict[str, Any]:  # noqa: ARG001 - a schedule has no payload
    return wiring.expire_plans()


# Slack's Approve and Reject buttons (the app's Interactivity request URL): signed requests only.
@app.route("/slack/actions", methods=["POST"], content_types=["application/x-www-form-urlencoded"])
def slack_actions() -> Response:
    return wiring.slack_action(app.current_request)


# Malformed events must reach intake (which logs them with their id) instead of failing in Chalice.
for _handler in (
    on_guardduty_finding,
    on_securityhub_finding,
    on_kms_api_call,
    on_kms_key_event,
    on_ecr_image_scan,
    on_inspector_finding,
    on_flow_log_object,
    on_memory_capture_status,
):
    _handler.event_class = TolerantCloudWatchEvent
