"""What every setting means: the configuration reference (docs/configuration.md) is generated from
this table, and a test fails when a variable the settings read has no entry here, or an entry
names one they do not read. Not imported at run time."""

from __future__ import annotations

# (variables, as the page names them; default; meaning), in the page's order
REFERENCE: tuple[tuple[str, str, str], ...] = (
    ("`STAGE`", "`local`", "The stage name (set per stage in `.chalice/config.json`); recorded in evidence manifests."),
    (
        "`DRY_RUN`",
        "`true`",
        "Global dry-run switch. `true` in the `dev` stage, `false` in `prod`. In dry-run the responder still reads the cluster and sends every write with server-side `dryRun=All`, so a dry run is validated and authorised exactly like the real request, and nothing changes.",
    ),
    ("`RULES_FILE`", "packaged `chalicelib/policy/rules.yaml`", "Your rules file."),
    (
        "`PROTECTED_NAMESPACES`",
        "`kube-system,kube-public,kube-node-lease,amazon-guardduty`",
        "No pod is isolated or deleted there (labels and captures still happen). The responder's own namespace is always added.",
    ),
    ("`RESPONDER_NAMESPACE`", "`eks-responder`", "The responder's own namespace (protected)."),
    ("`PROTECTED_NODES`", "–", "Node name globs never cordoned or labelled."),
    (
        "`PROTECTED_IMAGES`",
        "–",
        "Image reference globs `k8s:block-image` never blocks, e.g. shared base images (`public.ecr.aws/docker/library/*`) or `111122223333.dkr.ecr.us-east-1.amazonaws.com/prod/*`. A block is by digest, so the content decides: a digest that a repository these globs cover, in the same ECR registry, also holds is never blocked, whichever repository the finding names; so is one held by a repository where an accepted risk covers the finding's CVE, and one whose places cannot be read.",
    ),
    ("`PROTECTED_NODE_LABELS`", "–", "`key` or `key=value`; nodes carrying one are never touched."),
    ("`PROTECTED_CLUSTERS`", "–", "Cluster name globs where nothing is ever done (plans only say why)."),
    (
        "`PROTECTED_INSTANCES`",
        "–",
        "Instance id globs never protected, snapshotted or isolated (an instance tagged `eks-responder:protected=true` is protected too).",
    ),
    (
        "`PROTECTED_PRINCIPALS`",
        "–",
        "Exact IAM role or user ARNs never revoked (their sessions, keys or access entries), e.g. your break-glass roles and the cluster creator's role (`arn:aws:iam::111122223333:role/platform-admin`); the generated policies deny the writes on them too. A glob or a bare name is refused at start-up: anyone who may create a role could give it a matching name and be spared.",
    ),
    (
        "`PROTECTED_PRINCIPAL_TAG`",
        "`eks-responder:protected`",
        "A role or user carrying this tag with the value `true` is never revoked (checked before each step, and denied in the generated policies). Let only administrators set it: an SCP denying `iam:TagRole`, `iam:TagUser`, `iam:UntagRole`, `iam:UntagUser` and `iam:CreateRole`/`iam:CreateUser` with `aws:TagKeys` naming it, except for your administrators' roles.",
    ),
    (
        "`PUBLIC_ENDPOINT_CIDRS`",
        "–",
        "The CIDR blocks `eks:restrict-public-endpoint` limits a cluster's public API endpoint to, once a human approves: your operators', CI's and this responder's egress ranges. Without it the step changes nothing and says what the endpoint is open to.",
    ),
    (
        "`MANAGED_ACCOUNTS`",
        "–",
        "Member accounts the responder acts in through their spoke role: account ids, organizational unit or root ids (`ou-…`, `r-…`: every active account in them and their nested units, read from Organizations and kept 15 minutes; a unit that cannot be read manages nothing), or `*` (any account whose finding reaches it). A finding from another account is reported and nothing is done (`skipped`, said); without the setting, only the responder's own account is acted in.",
    ),
    (
        "`ACCOUNT_OVERRIDES`",
        "–",
        'JSON: per member account, settings that differ from the stage\'s, e.g. `{"111122223333": {"DRY_RUN": "true", "PROTECTED_NAMESPACES": "kube-system,payments", "MAX_NODES_CORDONED_PER_HOUR": "1"}}`. Only the guardrail, cap, protection, approval and `DRY_RUN` settings may differ; an account can be made drier than the stage, never wetter.',
    ),
    (
        "`SPOKE_ROLE_NAME`",
        "`eks-responder-spoke`",
        "The spoke role's name in every member account (assumed with `sts:AssumeRole`, once per account per credential lifetime).",
    ),
    ("`SPOKE_EXTERNAL_ID`", "–", "The external ID the spoke roles' trust policies require."),
    (
        "`ALLOWED_ACCOUNTS`",
        "–",
        "Accounts (besides the finding's) whose identities may be revoked; anything else is left alone.",
    ),
    (
        "`CLUSTERS`",
        "–",
        "The clusters this deployment serves: their secrets encryption key and node volume keys are protected KMS keys, and image scan incidents look for the image in each of them.",
    ),
    ("`PROTECTED_KEYS`", "–", "KMS key ids, ARNs or globs whose tampering is reversed."),
    ("`PROTECTED_KEY_TAG`", "–", "`key` or `key=value`: KMS keys with this tag are protected too."),
    (
        "`KMS_ADMIN_PRINCIPALS`",
        "–",
        "Exact IAM role or user ARNs of key administrators: their KMS changes are reported, not reversed (globs are refused, as for `PROTECTED_PRINCIPALS`).",
    ),
    ("`SLACK_WEBHOOK_SECRET`", "–", "Secrets Manager secret holding the Slack incoming webhook URL."),
    ("`SLACK_WEBHOOK_PARAMETER`", "–", "Or an SSM SecureString parameter holding it."),
    ("`SNS_TOPIC_ARN`", "–", "SNS topic for incident reports."),
    (
        "`EVENT_BUS_NAME`",
        "–",
        "An EventBridge bus (name or ARN) that gets the responder's own events: every incident, step outcome, approval and release, `source: eks-responder` (docs/integrations/eventbridge.md).",
    ),
    (
        "`PAGERDUTY_ROUTING_KEY_SECRET`",
        "–",
        "Secrets Manager secret holding a PagerDuty Events API v2 integration key (docs/integrations/pagerduty.md).",
    ),
    (
        "`PAGERDUTY_EVENTS_URL`",
        "`https://events.pagerduty.com/v2/enqueue`",
        "The Events API endpoint (`https://events.eu.pagerduty.com/v2/enqueue` for an EU account).",
    ),
    (
        "`TEAMS_WEBHOOK_SECRET`",
        "–",
        "Secrets Manager secret holding a Microsoft Teams Workflows webhook URL (docs/integrations/teams.md).",
    ),
    (
        "`WEBHOOK_URL`",
        "–",
        "A generic webhook (https) that gets each event signed with HMAC-SHA256 (docs/integrations/webhook.md); needs `WEBHOOK_SIGNING_SECRET`.",
    ),
    ("`WEBHOOK_SIGNING_SECRET`", "–", "Secrets Manager secret holding the webhook's HMAC key."),
    (
        "`SERVICENOW_INSTANCE_URL`",
        "–",
        "`https://<instance>.service-now.com`: one ticket per incident, a work note per report (docs/integrations/servicenow.md); needs `SERVICENOW_CREDENTIALS_SECRET`.",
    ),
    (
        "`SERVICENOW_CREDENTIALS_SECRET`",
        "–",
        'Secrets Manager secret holding `{"username": ..., "password": ...}` or `{"token": ...}` (OAuth).',
    ),
    (
        "`SERVICENOW_TABLE`",
        "`incident`",
        "The table tickets go into (`sn_si_incident` with Security Incident Response).",
    ),
    (
        "`WRITEBACK_SOURCES`",
        "–",
        "Sources whose Security Hub finding gets its workflow status from the responder (`guardduty`, `securityhub`, `inspector`): NOTIFIED when acted on, RESOLVED when released, with a note naming the incident (docs/integrations/security-hub.md).",
    ),
    (
        "`ARCHIVE_GUARDDUTY_FINDINGS`",
        "`false`",
        "Also archive the GuardDuty finding once its incident is released (needs `WRITEBACK_SOURCES`).",
    ),
    (
        "`INCIDENTS_TABLE`",
        "–",
        "DynamoDB table (partition key `id`, string) for exactly-once handling, incident records and the blast-radius cap leases. Set it in every deployed stage: without it the caps are counted per invocation only.",
    ),
    (
        "`FAILURE_QUEUE_URL`",
        "the stage's `eks-responder-<stage>-failures` queue",
        "The SQS queue where events that failed for good wait (Lambda's on-failure destination and the EventBridge rules' dead-letter queue; `make prerequisites` creates it and sets this). `eks-responder redrive` reads it.",
    ),
    (
        "`APPROVAL_DEFAULT`",
        "`auto`",
        "Whether a step waits for approval when neither its rule nor the rules file's `approvals` decide: `auto` or `required`.",
    ),
    (
        "`APPROVAL_MINUTES`",
        "`240`",
        "How long a plan waits for approval; after that its steps expire and nothing runs.",
    ),
    (
        "`APPROVERS`",
        "–",
        "Slack user ids (`U…`, `W…`) and user-group ids (`S…`) whose clicks approve, reject or release; anyone else is told no, and the attempt is logged. A group's members are asked of Slack (`usergroups.users.list`, cached five minutes); a group that cannot be read approves nobody.",
    ),
    (
        "`SLACK_BOT_TOKEN_SECRET`",
        "–",
        "Secrets Manager secret holding a Slack bot token with `usergroups:read`: needed only when `APPROVERS` lists user groups.",
    ),
    ("`SLACK_API_URL`", "`https://slack.com/api/`", "Slack's Web API (a proxy, or a local server in tests)."),
    (
        "`SLACK_SIGNING_SECRET`",
        "–",
        "Secrets Manager secret holding the Slack app's signing secret: turns on the approval route (`POST /slack/actions`).",
    ),
    ("`EKS_RESPONDER_METRICS`", "–", "`on` to emit EMF metrics outside Lambda (they are always on inside)."),
    (
        "`KEY_POLICY_BUCKET`",
        "`EVIDENCE_BUCKET`",
        "Where the hourly snapshot keeps each protected key's last known good policy.",
    ),
    (
        "`NEVER_BLOCK`",
        "public DNS resolvers",
        "CIDRs `ec2:block-ip` never denies (Google, Cloudflare, Quad9, OpenDNS, IPv4 and IPv6; the VPC's own NAT gateways and the AWS-managed prefix lists of the region are spared on top, looked up at block time). Setting it replaces the list: keep the resolvers and add endpoints' and partners' ranges.",
    ),
    (
        "`MAX_ACL_DENIES_PER_SUBNET`",
        "`20`",
        "Deny entries `ec2:block-ip` lets one network ACL hold before its allow rules; beyond it, blocks are `skipped` with the cap named.",
    ),
    (
        "`MAX_INSTANCES_ISOLATED_PER_HOUR`",
        "`3`",
        "Blast-radius cap per cluster (account, region and name). With `INCIDENTS_TABLE`, each isolation takes one of N hour-long leases with a conditional write, so concurrent invocations can never exceed it; without it, counted from the `eks-responder:isolated-at` tags.",
    ),
    (
        "`MAX_NODES_CORDONED_PER_HOUR`",
        "`3`",
        "Blast-radius cap per cluster (account, region and name). With `INCIDENTS_TABLE`, each cordon takes one of N hour-long leases with a conditional write (atomic across concurrent invocations); without it, counted from the `eks-responder.io/cordoned-at` annotations.",
    ),
    (
        "`EVIDENCE_BUCKET` / `EVIDENCE_PREFIX`",
        "– / `evidence`",
        "Where `k8s:capture-pod` writes. Without a bucket (and without `EVIDENCE_DIR`) captures are `skipped`, said so.",
    ),
    ("`EVIDENCE_DIR`", "–", "A local folder instead of S3 (replay)."),
    ("`LOG_TAIL_LINES`", "`200`", "Default log lines per container for captures."),
    (
        "`KUBECONFIG`",
        "–",
        "Use this kubeconfig instead of looking clusters up with `eks:DescribeCluster`. A finding uses only the context named like its cluster or like its EKS ARN (`arn:aws:eks:<region>:<account>:cluster/<name>`, as `aws eks update-kubeconfig` writes it; the account and region must be the finding's); with no such context its Kubernetes steps fail. The current context is never a fallback.",
    ),
    (
        "`KUBE_TIMEOUT_SECONDS`",
        "`10`",
        "Timeout of one Kubernetes API call. A timeout, a dropped connection, 429 or 5xx is retried twice (exponential backoff with full jitter, at most 3 attempts), then the action is `failed` with the reason.",
    ),
    (
        "`AWS_MAX_ATTEMPTS`",
        "`5`",
        "Attempts per AWS call in botocore's standard retry mode (throttling and 5xx, exponential backoff with jitter; 5 s connect and 30 s read timeouts), then the action is `failed` with the reason.",
    ),
    (
        "`POLICY_ACCOUNT_ID`, `POLICY_REGION`",
        "`${aws:PrincipalAccount}`, `*`",
        "Read by the policy generator only: the account and region in the generated IAM resource ARNs (`make prerequisites` writes both). Without an account id, ARNs use the policy variable that IAM resolves to the function's own account.",
    ),
    (
        "`AVML_SHA256`",
        "–",
        "SHA-256 of the AVML binary you put at `<EVIDENCE_PREFIX>/tools/avml` in the evidence bucket: turns `ec2:capture-memory` on (the node checks the hash before running it).",
    ),
    (
        "`FORENSICS_EGRESS`",
        "–",
        "Security groups (`sg-…`) of the VPC's SSM/S3 interface endpoints and prefix lists (`pl-…`, the S3 gateway endpoint) the isolation group still lets a node reach on TCP 443, so a capture finishes after isolation. Nothing else is allowed; a group of another VPC is not used there.",
    ),
    (
        "`FLOW_LOGS_BUCKET`",
        "–",
        "The bucket flow logs are delivered to: scopes the generated `s3:GetObject`. Required for S3 delivery: objects of other buckets, and every object while it is unset, are ignored (so load-balancer or application `.log.gz` files never raise alerts). With many accounts, `{account}` (and `{region}`) in the name give each account its own bucket (`acme-flow-logs-{account}`); a bucket is read in the account that owns it (see [Many accounts](accounts.md#many-accounts-hub-and-spoke)).",
    ),
    (
        "`FLOW_LOG_FORMAT`",
        "the default (v2) format",
        "The flow log's `LogFormat` (`${version} ${srcaddr} …`), for CloudWatch Logs deliveries and files without a header line.",
    ),
    (
        "`THREAT_LIST`",
        "–",
        "`s3://bucket/key` or a file path: one address or CIDR per line, `#` comments. Reloaded every 15 minutes.",
    ),
    (
        "`FLOW_INTERNAL_CIDRS`",
        "–",
        "Public ranges that are yours, treated like private ones: an IPv6 cluster's VPC block (pods have global IPv6 addresses), public IPv4 used inside the VPC.",
    ),
    (
        "`FLOW_DETECTORS`",
        "all seven",
        "Which detectors run: `threat-list`, `mining-pool`, `admin-from-internet`, `port-scan`, `address-sweep`, `forbidden-destination`, `egress-volume`.",
    ),
    (
        "`FLOW_MINING_PORTS`",
        "`3333,4444,5555,5588,7777,8888,9999,14433,14444,45560,45700`",
        "Destination ports of mining pools.",
    ),
    ("`FLOW_ADMIN_PORTS`", "`22,3389`", "Ports whose accepted connections from the internet are flagged."),
    ("`FLOW_SCAN_MIN_PORTS`", "`100`", "Distinct probed ports (below 32768) that make one source a port scanner."),
    ("`FLOW_SCAN_MAX_BYTES`", "`1000`", "A flow bigger than this is not a probe."),
    (
        "`FLOW_SWEEP_MIN_ADDRESSES`",
        "`64`",
        "Distinct internal addresses one of ours must probe (bare TCP) to be sweeping.",
    ),
    (
        "`FLOW_FORBIDDEN_DESTINATIONS`",
        "–",
        "Comma-separated `CIDR`, `CIDR:port`, `CIDR:first-last` (IPv6 `[CIDR]:port`) ours must never reach; a bad entry is named when the function starts.",
    ),
    (
        "`FLOW_EGRESS_BYTES`",
        "`1073741824`",
        "Bytes one address may send to public addresses in one delivery before it is flagged.",
    ),
)
