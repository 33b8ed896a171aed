"""`eks-responder redrive`: what waits in the stage's failure queue, shown, and replayed.

Two kinds of message land there (chalicelib.entry.delivery): Lambda's on-failure records (the original
event under `requestPayload`, the function under `requestContext.functionArn`, why under
`requestContext.condition` and `responsePayload`), and EventBridge's dead letters (the event itself,
the rule and target in message attributes). Each is replayed through the same path it failed on:
the deployed function, invoked and awaited, or with `--local` this process's handler. Its
exactly-once record makes a replay of something that was done after all a duplicate. A message is
deleted only once its replay succeeded; `--dry-run` lists and deletes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib import functions

MAX_MESSAGES = 1000  # one run looks at this many at most; run again for the rest


@dataclass(frozen=True)
class Parked:
    receipt: str
    message_id: str
    function: str | None  # the function it failed in; None when the message does not say
    event: Any
    why: str
    kind: str  # "lambda" (on-failure destination) or "rule" (EventBridge dead letter)


def _function_of(arn: str) -> str | None:
    """`arn:aws:lambda:…:function:eks-responder-prod-on_guardduty_finding[:$LATEST]` -> the handler name."""
    name = arn.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in arn else arn
    return next((f.name for f in functions.FUNCTIONS if name.endswith(f"-{f.name}")), None)


def read(message: dict[str, Any]) -> Parked:
    body = message.get("Body") or ""
    attributes = {k: v.get("StringValue", "") for k, v in (message.get("MessageAttributes") or {}).items()}
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    receipt, message_id = str(message.get("ReceiptHandle") or ""), str(message.get("MessageId") or "")
    if isinstance(document, dict) and "requestContext" in document and "requestPayload" in document:
        context = document.get("requestContext") or {}
        response = document.get("responsePayload") or {}
        error = f"{response.get('errorType', '')}: {response.get('errorMessage', '')}".strip(": ") if isinstance(
            response, dict) else str(response)[:300]  # fmt: skip
        why = f"{context.get('condition', '?')} after {context.get('approximateInvokeCount', '?')} attempt(s)"
        return Parked(receipt, message_id, _function_of(str(context.get("functionArn") or "")),
                      document["requestPayload"], f"{why}: {error or 'no error given'}"[:500], "lambda")  # fmt: skip
    if attributes.get("RULE_ARN") or attributes.get("TARGET_ARN"):
        target = attributes.get("TARGET_ARN", "")
        code, text = attributes.get("ERROR_CODE", "?"), attributes.get("ERROR_MESSAGE", "")
        why = f"EventBridge could not invoke it ({code}: {text}; {attributes.get('EXHAUSTED_RETRY_CONDITION', '')})"
        return Parked(receipt, message_id, _function_of(target), document, why[:500], "rule")
    return Parked(receipt, message_id, None, document, "a message of neither kind: not replayed", "unknown")


def messages(sqs: Any, queue_url: str, limit: int = MAX_MESSAGES) -> Iterator[dict[str, Any]]:
    """The queue's messages, each received once in this run (hidden for the run's length)."""
    seen = 0
    while seen < limit:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                    VisibilityTimeout=900, MessageAttributeNames=["All"])  # fmt: skip
        found = batch.get("Messages") or []
        if not found:
            return
        for message in found:
            seen += 1
            yield message


Deliver = Callable[[str, Any], str | None]  # (function, event) -> None when handled, else why not


def run(
    sqs: Any, queue_url: str, deliver: Deliver, *, dry_run: bool, limit: int = MAX_MESSAGES
) -> list[dict[str, Any]]:
    """Each parked event with what became of it; deleted only when its replay succeeded."""
    results = []
    for message in messages(sqs, queue_url, limit):
        parked = read(message)
        said: dict[str, Any] = {"message": parked.message_id, "function": parked.function, "kind": parked.kind,
                                "why": parked.why, "event_id": _event_id(parked.event)}  # fmt: skip
        if dry_run or parked.function is None:
            said["outcome"] = "listed" if dry_run else "kept: no function to replay it in"
            if dry_run:
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=parked.receipt, VisibilityTimeout=0)
            results.append(said)
            continue
        problem = deliver(parked.function, parked.event)
        if problem is None:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=parked.receipt)
            said["outcome"] = "replayed: handled, deleted from the queue"
        else:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=parked.receipt, VisibilityTimeout=0)
            said["outcome"] = f"still failing, kept: {problem[:300]}"
        results.append(said)
    return results


def _event_id(event: Any) -> str | None:
    value = event.get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def lambda_deliver(lambda_: Any, stage: str) -> Deliver:
    """Replay in the deployed function (its own role and code), awaited: handled when it did not fail."""

    def deliver(function: str, event: Any) -> str | None:
        name = f"{functions.APP_NAME}-{stage}-{function}"
        answer = lambda_.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(event))
        if answer.get("FunctionError"):
            return f"{answer['FunctionError']}: {answer['Payload'].read().decode(errors='replace')[:300]}"
        return None

    return deliver


def local_deliver() -> Deliver:
    """Replay in this process, through the handler the function runs (the local stack, or an operator's shell)."""
    from chalicelib.entry import wiring
    from chalicelib.invocation import LocalContext

    handlers: dict[str, Callable[[Any], Any]] = {
        "on_flow_log_object": lambda e: wiring.handle_flow_log_objects(e, LocalContext()),
        "on_flow_logs": lambda e: wiring.handle_flow_log_payload(e, LocalContext()),
        "on_memory_capture_status": wiring.handle_capture_status,
        "refresh_key_policies": lambda _: wiring.refresh_key_policies(),
        "expire_plans": lambda _: wiring.expire_plans(),
    }

    def deliver(function: str, event: Any) -> str | None:
        handler = handlers.get(function) or (lambda e: wiring.handle_event(e, LocalContext()))
        try:
            handler(event)
        except Exception as exc:  # noqa: BLE001 - the message stays for the next redrive
            return f"{type(exc).__name__}: {exc}"
        return None

    return deliver
