"""The outputs: what each service is told about a report (Slack, Teams, PagerDuty, SNS, the event
bus, webhooks, ServiceNow, the finding write-back), the Slack approval buttons' interactivity, and the
metrics."""
