"""Image scan results: ECR basic scanning ("ECR Image Scan") and Amazon Inspector ("Inspector2 Finding").

Formats: the ECR user guide's EventBridge examples and the Inspector2 finding schema. Both become
incidents about one image digest (`<registry>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:...`).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, field

from chalicelib.errors import EventError
from chalicelib.incident import SCAN_BANDS, SCAN_SCORES, SCAN_SEVERITIES, Incident, ResourceKind, Severity
from chalicelib.validation import Finite, Lenient, ValidationError, describe, parse

ORDER, BAND, SCORE = SCAN_SEVERITIES, SCAN_BANDS, SCAN_SCORES
# ECR / Inspector events that carry no vulnerability: understood, reported, never acted on.
NO_VULNERABILITY = {"ECR Image Action": "ImageAction", "ECR Scan Resource Change": "ScanResourceChange",
                    "Inspector2 Coverage": "Coverage"}  # fmt: skip
_DIGEST = r"^sha256:[0-9A-Za-z]+$"


class ECRScanModel(Lenient, frozen=True):
    scan_status: str = field(name="scan-status")
    repository_name: Annotated[str, Meta(min_length=1)] = field(name="repository-name")
    image_digest: Annotated[str, Meta(pattern=_DIGEST)] = field(name="image-digest")
    image_tags: list[str] = field(default_factory=list, name="image-tags")
    counts: dict[str, int] = field(default_factory=dict, name="finding-severity-counts")


class InspectorImageModel(Lenient, frozen=True, kw_only=True):
    repository_name: str = field(name="repositoryName")
    registry: str | None = None
    image_hash: Annotated[str, Meta(pattern=_DIGEST)] = field(name="imageHash")
    image_tags: list[str] = field(default_factory=list, name="imageTags")


class InspectorResourceDetailsModel(Lenient, frozen=True):
    image: InspectorImageModel = field(name="awsEcrContainerImage")


class InspectorResourceModel(Lenient, frozen=True, kw_only=True):
    type: str
    id: str
    region: str | None = None
    details: InspectorResourceDetailsModel


class InspectorFindingModel(Lenient, frozen=True, kw_only=True):
    finding_arn: Annotated[str, Meta(min_length=1)] = field(name="findingArn")
    account: str = field(name="awsAccountId")
    type: str
    title: str = ""
    severity: str
    status: str = "ACTIVE"
    fix_available: str | None = field(default=None, name="fixAvailable")
    exploit_available: str | None = field(default=None, name="exploitAvailable")
    inspector_score: Finite | None = field(default=None, name="inspectorScore")
    epss: dict[str, Finite] | None = None
    package_details: dict[str, Any] | None = field(default=None, name="packageVulnerabilityDetails")
    resources: Annotated[list[InspectorResourceModel], Meta(min_length=1)]


class ImageEventModel(Lenient, frozen=True, kw_only=True):
    id: str | None = None
    source: str
    detail_type: str = field(name="detail-type")
    account: str  # EventBridge always names both; the image's registry and the console link come from them
    region: str
    detail: dict[str, Any]


def _known(region: str | None) -> str:
    """A region, or "" where an event says it does not know one (AWS's own examples write "N/A")."""
    return "" if region in {None, "", "N/A"} else str(region)


def image_ref(registry: str | None, region: str | None, repository: str, digest: str) -> str:
    host = f"{registry}.dkr.ecr.{region}.amazonaws.com/" if registry and region else ""
    return f"{host}{repository}@{digest}"


def to_incident(event: dict[str, Any], raw_ref: str | None = None) -> Incident:
    try:
        envelope = parse(event, ImageEventModel)
    except ValidationError as exc:
        raise EventError(f"not a valid image scan event: {describe(exc)}") from None
    if envelope.detail_type in NO_VULNERABILITY:
        return _informational(envelope, raw_ref)
    try:
        if envelope.detail_type in {"ECR Image Scan", "Inspector2 Scan"}:
            return _basic(envelope, parse(envelope.detail, ECRScanModel), raw_ref)
        if envelope.detail_type == "Inspector2 Finding":
            return _inspector(envelope, parse(envelope.detail, InspectorFindingModel), raw_ref)
    except ValidationError as exc:
        raise EventError(f"not a valid {envelope.detail_type} event: {describe(exc)}") from None
    raise EventError(f"unsupported image event detail-type {envelope.detail_type!r}")


def _informational(envelope: ImageEventModel, raw_ref: str | None) -> Incident:
    kind = NO_VULNERABILITY[envelope.detail_type]
    return Incident(
        id=f"ecr-{kind}-{envelope.id or ''}",
        source="ecr" if envelope.source == "aws.ecr" else "inspector",
        type=f"ECR:{kind}",
        title=envelope.detail_type,
        severity=Severity.LOW,
        score=0.0,
        account=envelope.account or "",
        region=envelope.region or "",
        resource_kind=ResourceKind.OTHER,
        details={k: str(v) for k, v in envelope.detail.items() if isinstance(v, str)},
        event_id=envelope.id,
        raw_ref=raw_ref,
    )


def _basic(envelope: ImageEventModel, scan: ECRScanModel, raw_ref: str | None) -> Incident:
    # Inspector's scan summary names the repository by ARN; ECR's by name.
    repository = scan.repository_name.split(":repository/", 1)[-1]
    scan = msgspec.structs.replace(scan, repository_name=repository)
    enhanced = envelope.detail_type == "Inspector2 Scan"
    worst = next((level for level in ORDER if scan.counts.get(level)), None)
    severity = BAND.get(worst or "", Severity.LOW)
    counts = ", ".join(f"{level} {scan.counts[level]}" for level in ORDER if scan.counts.get(level)) or "no findings"
    details = {"repository": scan.repository_name, "digest": scan.image_digest, "scan_status": scan.scan_status,
               "severity_counts": counts, "tags": ",".join(scan.image_tags)}  # fmt: skip
    return Incident(
        id=f"{'inspector' if enhanced else 'ecr'}-scan-{scan.repository_name}@{scan.image_digest}",
        source="inspector" if enhanced else "ecr",
        type="Inspector2:Scan" if enhanced else "ECR:ImageScan",
        title=f"ECR scan of {scan.repository_name}: {counts}",
        severity=severity,
        score=SCORE[severity],
        account=envelope.account or "",
        region=envelope.region or "",
        resource_kind=ResourceKind.IMAGE,
        images=(image_ref(envelope.account, envelope.region, scan.repository_name, scan.image_digest),),
        details=details,
        event_id=envelope.id,
        raw_ref=raw_ref,
    )


def _inspector(envelope: ImageEventModel, finding: InspectorFindingModel, raw_ref: str | None) -> Incident:
    resource = next((r for r in finding.resources if r.type == "AWS_ECR_CONTAINER_IMAGE"), None)
    if resource is None:
        raise EventError("Inspector2 finding is not about an ECR container image")
    image = resource.details.image
    severity = BAND.get(finding.severity.upper(), Severity.LOW)
    package = finding.package_details or {}
    cve = str(package.get("vulnerabilityId") or finding.title.split(" ", 1)[0])
    details = {
        "repository": image.repository_name,
        "digest": image.image_hash,
        "cve": cve,
        "status": finding.status,
        "fix_available": (finding.fix_available or "").lower(),
        "exploit_available": (finding.exploit_available or "").lower(),
        "inspector_score": "" if finding.inspector_score is None else str(finding.inspector_score),
        "epss": str((finding.epss or {}).get("score", "")),
        "tags": ",".join(image.image_tags),
    }
    return Incident(
        # One incident per image: many CVE events for one image are one incident.
        id=f"inspector-{image.repository_name}@{image.image_hash}",
        source="inspector",
        type=f"Inspector2:{finding.type}",
        title=finding.title,
        severity=severity,
        score=finding.inspector_score if finding.inspector_score is not None else SCORE[severity],
        account=finding.account,
        region=_known(resource.region) or _known(envelope.region),
        resource_kind=ResourceKind.IMAGE,
        images=(
            image_ref(
                image.registry,
                _known(resource.region) or _known(envelope.region),
                image.repository_name,
                image.image_hash,
            ),
        ),
        details=details,
        failed=finding.status == "CLOSED",
        event_id=envelope.id,
        raw_ref=raw_ref or finding.finding_arn,
        finding_arn=finding.finding_arn,
    )
