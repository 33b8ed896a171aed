"""`eks-responder doctor`: is this stage ready to respond? One line per check, each problem with
how to fix it. Run it with the responder's own credentials (a Lambda role's, assumed), so what it
finds is what the functions will meet: the credentials, the configuration and the rules, the
incident table, the topic, the secrets and the buckets, the memory-capture set-up, and in every
cluster of CLUSTERS, each permission the generated ClusterRole grants, asked of the API server
itself (SelfSubjectAccessReview) as that identity."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib.settings import Settings

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    status: str
    what: str
    said: str
    fix: str = ""

    def line(self) -> str:
        tail = f" — {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<4} {self.what}: {self.said}{tail}"


MAX_SAID = 600  # an error's text in one line of the report; longer ones end at a word, with an ellipsis


def _brief(exc: BaseException) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return f"{code or type(exc).__name__}: {words(str(exc), MAX_SAID)}"


def words(text: str, limit: int) -> str:
    """`text`, or its first words within `limit` characters and an ellipsis: never cut mid-word."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return f"{cut} …"


def _try(what: str, fix: str, call: Callable[[], str]) -> Check:
    try:
        return Check(OK, what, call())
    except Exception as exc:  # noqa: BLE001 - every failure is a line of the report, never a crash
        return Check(FAIL, what, _brief(exc), fix)


def run(current: Settings, session: Any, kube: Any = None) -> list[Check]:
    """Every check, in the order a newcomer meets the problems."""
    return list(_checks(current, session, kube))


def _checks(current: Settings, session: Any, kube: Any) -> Iterator[Check]:
    identity = _try("AWS credentials", "configure credentials (the responder's role: --role-arn)",
                    lambda: _caller(session))  # fmt: skip
    yield identity
    yield _rules(current)
    yield _stage(current)
    if identity.status == FAIL:
        return
    yield from _stores(current, session)
    yield _delivery(current, session)
    yield from _capture(current, session)
    yield from _clusters(current, kube)


_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


def _delivery(current: Settings, session: Any) -> Check:
    """The failure queue, each function's on-failure destination and each rule's dead letters,
    as deployed (a bare `chalice deploy` rewrites the rules' targets without them)."""
    from chalicelib.entry import delivery

    fix = f"run `make deploy STAGE={current.stage}` (or `python -m deploy.delivery --stage {current.stage}`)"
    missing: list[str] = []
    try:
        queue_url = current.failure_queue_url or session.client("sqs").get_queue_url(
            QueueName=delivery.queue_name(current.stage))["QueueUrl"]  # fmt: skip
        queue = session.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        arn = queue["Attributes"]["QueueArn"]
        lambda_, events = session.client("lambda"), session.client("events")
        for wanted in delivery.DELIVERIES:
            if not wanted.asynchronous:
                continue
            name = delivery.function_name(current.stage, wanted.function)
            try:
                config = lambda_.get_function_event_invoke_config(FunctionName=name)
            except lambda_.exceptions.ResourceNotFoundException:
                config = {}
            if (config.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination") != arn:
                missing.append(f"{wanted.function.name} has no on-failure destination")
            if wanted.rule:
                try:
                    targets = events.list_targets_by_rule(Rule=delivery.rule_name(current.stage, wanted.function))
                except events.exceptions.ResourceNotFoundException:
                    missing.append(f"{wanted.function.name} has no rule (not deployed)")
                    continue
                if any((t.get("DeadLetterConfig") or {}).get("Arn") != arn for t in targets["Targets"]):
                    missing.append(f"the rule of {wanted.function.name} has no dead-letter queue")
    except Exception as exc:  # noqa: BLE001 - a line of the report, never a crash
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
        if code in _DENIED:
            return Check(WARN, "delivery", f"not checked: {_brief(exc)}", "run doctor with the deploying identity")
        return Check(FAIL, "delivery", _brief(exc), fix)
    if missing:
        return Check(FAIL, "delivery", f"{len(missing)} missing: {'; '.join(missing[:4])}", fix)
    return Check(OK, "delivery", f"failure queue {delivery.queue_name(current.stage)}; every function and rule "
                 "sends what fails for good there")  # fmt: skip


def _caller(session: Any) -> str:
    found = session.client("sts").get_caller_identity()
    return f"{found['Arn']} (account {found['Account']})"


def _rules(current: Settings) -> Check:
    from chalicelib.policy.loader import load_rules

    def load() -> str:
        rules = load_rules(current.rules_file)
        return f"{current.rules_file}: {len(rules.rules)} rules"

    return _try("rules", "fix the file (`eks-responder check-rules FILE` says where)", load)


def _stage(current: Settings) -> Check:
    if current.dry_run:
        return Check(WARN, "mode", f"stage {current.stage} is in dry run: nothing is changed",
                     "set DRY_RUN=false once the plans look right")  # fmt: skip
    return Check(OK, "mode", f"stage {current.stage} acts (DRY_RUN=false)")


def _stores(current: Settings, session: Any) -> Iterator[Check]:
    prerequisites = f"run `make prerequisites STAGE={current.stage}`"
    if current.incidents_table:
        table = current.incidents_table

        def describe() -> str:
            found = session.client("dynamodb").describe_table(TableName=table)["Table"]
            keys = {k["AttributeName"]: k["KeyType"] for k in found["KeySchema"]}
            if keys != {"id": "HASH"}:
                raise ValueError(f"its key is {keys}, not the partition key `id`")
            return f"{table} ({found['TableStatus']})"

        yield _try("incident table", prerequisites, describe)
    else:
        yield Check(WARN, "incident table", "INCIDENTS_TABLE is unset: no exactly-once, no approvals, caps per "
                    "invocation only", prerequisites)  # fmt: skip
    if current.sns_topic_arn:
        topic = current.sns_topic_arn
        yield _try("SNS topic", prerequisites,
                   lambda: session.client("sns").get_topic_attributes(TopicArn=topic) and topic)  # fmt: skip
    secrets = (("Slack webhook secret", current.slack_webhook_secret),
               ("Slack signing secret", current.slack_signing_secret),
               ("Teams webhook secret", current.teams_webhook_secret),
               ("PagerDuty routing key secret", current.pagerduty_routing_key_secret),
               ("webhook signing secret", current.webhook_signing_secret),
               ("ServiceNow credentials secret", current.servicenow_credentials_secret))  # fmt: skip
    if current.event_bus_name:
        bus = current.event_bus_name
        yield _try("event bus", f"create the bus: aws events create-event-bus --name {bus}",
                   lambda: session.client("events").describe_event_bus(Name=bus)["Name"])  # fmt: skip
    for name, secret in secrets:
        if secret:
            yield _try(name, f"create the secret {secret} in Secrets Manager",
                       lambda secret=secret: session.client("secretsmanager").describe_secret(SecretId=secret)["Name"])  # type: ignore[misc]  # fmt: skip
    from chalicelib.notifiers import outputs

    if not outputs.build(current, lambda: session):
        yield Check(WARN, "notifications", "no output is configured: incidents are only logged",
                    "set SLACK_WEBHOOK_SECRET or SNS_TOPIC_ARN (docs/integrations/)")  # fmt: skip
    if current.evidence_bucket:
        yield _evidence(current.evidence_bucket, session, prerequisites)
    else:
        yield Check(WARN, "evidence bucket", "EVIDENCE_BUCKET is unset: captures are skipped", prerequisites)
    if current.flow_logs_bucket and "{" not in current.flow_logs_bucket:
        bucket = current.flow_logs_bucket
        yield _try("flow-log bucket", "check FLOW_LOGS_BUCKET",
                   lambda: session.client("s3").head_bucket(Bucket=bucket) and bucket)  # fmt: skip


def _evidence(bucket: str, session: Any, fix: str) -> Check:
    from chalicelib.executors.evidence import evidence_bucket_problems

    def check() -> str:
        s3 = session.client("s3")
        s3.head_bucket(Bucket=bucket)
        problems = evidence_bucket_problems(s3, bucket)
        if problems:
            raise ValueError("; ".join(problems))
        return f"{bucket} (Object Lock, no public access)"

    return _try("evidence bucket", fix, check)


def _capture(current: Settings, session: Any) -> Iterator[Check]:
    """ec2:capture-memory: the document, and the tool in the bucket with the hash configured."""
    from chalicelib.actions.ec2 import memory_document

    if not current.avml_sha256:
        yield Check(WARN, "memory capture", "AVML_SHA256 is unset: ec2:capture-memory is skipped",
                    "docs/memory-capture.md: put AVML in the evidence bucket and set its hash")  # fmt: skip
        return
    document = memory_document.document_name(current.stage)
    yield _try("memory-capture document", f"run `make prerequisites STAGE={current.stage}`",
               lambda: session.client("ssm").describe_document(Name=document)["Document"]["Name"])  # fmt: skip
    if current.evidence_bucket:
        bucket, key = current.evidence_bucket, f"{current.evidence_prefix}/{memory_document.TOOL_KEY}"

        def tool() -> str:
            body = session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            digest = hashlib.sha256(body).hexdigest()
            if digest != current.avml_sha256:
                raise ValueError(f"s3://{bucket}/{key} has SHA-256 {digest}, not AVML_SHA256")
            return f"s3://{bucket}/{key} matches AVML_SHA256"

        yield _try("AVML in the evidence bucket", "upload AVML there and set its SHA-256", tool)


def _clusters(current: Settings, kube: Any) -> Iterator[Check]:
    from chalicelib.generate.permissions import rbac_rules

    if not current.clusters:
        yield Check(WARN, "clusters", "CLUSTERS is unset: no cluster checked", "set CLUSTERS to the clusters served")
        return
    rules = rbac_rules()
    for cluster in current.clusters:
        where = f"cluster {cluster}"
        try:
            gateway = kube.gateway(cluster, None, dry_run=True)
            missing = [f"{r.resource}{'/' + n if n else ''} {verb}" + (f" ({r.api_group})" if r.api_group else "")
                       for r in rules for n in (r.resource_names or ("",)) for verb in r.verbs
                       if not gateway.can(r.api_group, r.resource, verb, n or None)]  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - unreachable is a finding, not a crash
            yield Check(FAIL, where, f"not reachable as this identity ({_brief(exc)})",
                        "map the role with an EKS access entry (docs/deploy.md, step 4)")  # fmt: skip
            continue
        if missing:
            yield Check(FAIL, where, f"{len(missing)} permission(s) missing: {', '.join(missing[:8])}"
                        f"{' …' if len(missing) > 8 else ''}",  # noqa: PLR2004
                        "apply deploy/rbac/clusterrole.yaml and bind its group to this role")  # fmt: skip
        else:
            yield Check(OK, where, f"every permission of the generated ClusterRole ({len(rules)} rules) granted")
