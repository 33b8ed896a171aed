"""Every output the responder tells, built from the settings: each is on when its setting is given.

The order is the order they are told in: the people first (Slack, Teams, PagerDuty), then the
systems (SNS, the event bus, the webhook, tickets, the finding itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.interfaces import IAMStatement

if TYPE_CHECKING:
    from chalicelib.notifiers.base import Notifier
    from chalicelib.settings import Settings


def build(current: Settings, session: Callable[[], Any], slack_url: str | None = None) -> list[Notifier]:
    """The outputs of these settings; `session` gives the AWS session (only when one needs it)."""
    from chalicelib.notifiers import secrets
    from chalicelib.notifiers.slack import SlackNotifier, secret_webhook

    found: list[Notifier] = []
    if slack_url:
        found.append(SlackNotifier(lambda: slack_url))
    elif current.slack_webhook_secret or current.slack_webhook_parameter:
        found.append(SlackNotifier(secret_webhook(current.slack_webhook_secret, current.slack_webhook_parameter)))
    if current.teams_webhook_secret:
        from chalicelib.notifiers.teams import TeamsNotifier

        found.append(TeamsNotifier(secrets.secret(current.teams_webhook_secret)))
    if current.pagerduty_routing_key_secret:
        from chalicelib.notifiers.pagerduty import PagerDutyNotifier

        found.append(PagerDutyNotifier(secrets.secret(current.pagerduty_routing_key_secret),
                                       current.pagerduty_events_url))  # fmt: skip
    if current.sns_topic_arn:
        from chalicelib.notifiers.sns import SNSNotifier

        found.append(SNSNotifier(session().client("sns"), current.sns_topic_arn))
    if current.event_bus_name:
        from chalicelib.notifiers.events_out import EventBusNotifier

        found.append(EventBusNotifier(session().client("events"), current.event_bus_name))
    if current.webhook_url and current.webhook_signing_secret:
        from chalicelib.notifiers.webhook import WebhookNotifier

        found.append(WebhookNotifier(current.webhook_url, secrets.secret(current.webhook_signing_secret)))
    if current.servicenow_instance_url and current.servicenow_credentials_secret:
        from chalicelib.notifiers.servicenow import ServiceNowNotifier

        found.append(ServiceNowNotifier(current.servicenow_instance_url,
                                        secrets.secret_json(current.servicenow_credentials_secret),
                                        current.servicenow_table))  # fmt: skip
    if current.writeback_sources:
        from chalicelib.notifiers.writeback import FindingWriteBack

        clients: dict[tuple[str, str], Any] = {}

        def client(service: str, region: str) -> Any:
            if (service, region) not in clients:
                clients[service, region] = session().client(service, region_name=region)
            return clients[service, region]

        found.append(FindingWriteBack(client, current.writeback_sources, archive=current.archive_guardduty_findings))
    return found


def permissions(stage_env: dict[str, str], *, write_back: bool = True) -> list[IAMStatement]:
    """What telling needs: every configured output's permissions (the finding write-back only
    where incidents are acted on, released or approved)."""
    from chalicelib.notifiers import events_out, pagerduty, servicenow, slack, sns, teams, webhook, writeback

    found = [*slack.permissions(stage_env), *teams.permissions(stage_env), *pagerduty.permissions(stage_env),
             *sns.permissions(stage_env), *events_out.permissions(stage_env), *webhook.permissions(stage_env),
             *servicenow.permissions(stage_env)]  # fmt: skip
    if write_back:
        found.extend(writeback.permissions(stage_env))
    return found
