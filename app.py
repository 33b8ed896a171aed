"""eks-responder: AWS findings about EKS in, containment out. Handlers only; logic is in chalicelib."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from chalice.app import Chalice, CloudWatchEvent, ConvertToMiddleware

from chalicelib import wiring
from chalicelib.lambda_events import TolerantCloudWatchEvent
from chalicelib.sources import patterns

app = Chalice(app_name="eks-responder")
logger = Logger(service="eks_responder")
app.register_middleware(ConvertToMiddleware(logger.inject_lambda_context(correlation_id_path="id", clear_state=True)))

# Load and validate the rules file now: a bad file fails the cold start, not an incident.
wiring.rules()


@app.on_cw_event(patterns.GUARDDUTY_FINDING, name="on_guardduty_finding")
def on_guardduty_finding(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.handle_event(event.to_dict())


# Malformed events must reach intake (which logs them with their id) instead of failing in Chalice.
on_guardduty_finding.event_class = TolerantCloudWatchEvent
