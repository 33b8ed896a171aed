"""Security Hub as an intake: GuardDuty findings that reach the responder through Security Hub.

Both of Security Hub's event forms are read: `Security Hub Findings - Imported` (ASFF) and
`Findings Imported V2` (OCSF). Only a finding GuardDuty produced is taken (ASFF: the product ARN
`…::product/aws/guardduty`, which only GuardDuty can import under; OCSF: the product uid
`…::productv2/aws/guardduty`, likewise, and a GuardDuty finding ARN; a product *name* is never
enough), or one of Inspector's on an ECR image (rewritten into Inspector's own
event and parsed by its code, so the finding ARN and image are checked there); anything else is
an error that says so.

The incident's id is the GuardDuty finding id, so a native `GuardDuty Finding` event and its
Security Hub copy are one incident: whichever comes second is a duplicate. The copy names
less than the native finding (no pods, no workloads), so the responder reads the native finding
from GuardDuty (`guardduty:GetFindings`, in the finding's account) before acting, and acts on
the copy's own facts only when that read fails, saying so.
"""

from __future__ import annotations

import re
from typing import Any

from chalicelib.errors import EventError
from chalicelib.incident import Incident, Principal, PrincipalKind, PrincipalRole, ResourceKind, Severity

SOURCE = "securityhub"
ASFF = "Security Hub Findings - Imported"
OCSF = "Findings Imported V2"
_FINDING_ARN = re.compile(
    r"^arn:aws[a-z-]*:guardduty:([a-z0-9-]+):(\d{12}):detector/([0-9a-zA-Z]{1,300})/finding/([0-9a-zA-Z]{1,300})$"
)
_GUARDDUTY_PRODUCT = re.compile(r"^arn:aws[a-z-]*:securityhub:[a-z0-9-]+::product/aws/guardduty$")
_INSPECTOR_PRODUCT = re.compile(r"^arn:aws[a-z-]*:securityhub:[a-z0-9-]+::product/aws/inspector$")
# Security Hub's OCSF form names the product by a `productv2` ARN in `metadata.product.uid`; like
# ASFF's `product/aws/...`, only AWS's own service can import under it. The product *name* is free
# text any importer sets, so it is never enough on its own.
_OCSF_PRODUCT = re.compile(r"^arn:aws[a-z-]*:securityhub:[a-z0-9-]+::productv2/aws/(guardduty|inspector)$")
# ASFF writes a GuardDuty type's "/" as "-" inside its own "/"-separated Types:
# TTPs/Execution/Execution:Runtime-ReverseShell
_ASFF_TYPE = re.compile(r"^([A-Za-z]+):([A-Za-z0-9]+)-(.+)$")
_OCSF_SEVERITY = {1: 2.0, 2: 2.0, 3: 5.0, 4: 8.0, 5: 9.5, 6: 9.5}  # Informational … Fatal, as GuardDuty scores
_LABEL_SCORE = {"INFORMATIONAL": 1.0, "LOW": 2.0, "MEDIUM": 5.0, "HIGH": 8.0, "CRITICAL": 9.5}


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"{where} is {type(value).__name__}, not an object")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _one_finding(event: dict[str, Any]) -> dict[str, Any]:
    findings = _dict(event.get("detail"), "detail").get("findings")
    if not isinstance(findings, list) or len(findings) != 1:
        count = len(findings) if isinstance(findings, list) else "no"
        raise EventError(f"a Security Hub event carries one finding; this one carries {count}")
    return _dict(findings[0], "detail.findings[0]")


def _guardduty_arn(value: str) -> tuple[str, str, str, str]:
    """(region, account, detector id, finding id) of a GuardDuty finding ARN."""
    match = _FINDING_ARN.match(value)
    if match is None:
        raise EventError(f"not a GuardDuty finding ARN: {value[:200]!r}")
    region, account, detector, finding = match.groups()
    return region, account, detector, finding


def _type_from_asff(types: Any) -> str | None:
    for entry in _items(types):
        last = _text(entry).rsplit("/", 1)[-1]
        match = _ASFF_TYPE.match(last)
        if match:
            return f"{match.group(1)}:{match.group(2)}/{match.group(3)}"
    return None


def _normalized_label(value: Any) -> str:
    """The label Security Hub documents for a `Normalized` severity (0-100), the only one older ASFF
    findings carry: 0 informational, 1-39 low, 40-69 medium, 70-89 high, 90-100 critical."""
    try:
        normalized = float(value)
    except (TypeError, ValueError):
        return ""
    if not 0 <= normalized <= 100:  # noqa: PLR2004
        return ""
    bounds = ((90, "CRITICAL"), (70, "HIGH"), (40, "MEDIUM"), (1, "LOW"))
    return next((label for low, label in bounds if normalized >= low), "INFORMATIONAL")


def _score(value: Any, label: Any, normalized: Any = None) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = _LABEL_SCORE.get((_text(label) or _normalized_label(normalized)).upper(), 0.0)
    if not 0.0 <= score <= 10.0:  # noqa: PLR2004
        raise EventError(f"severity {value!r} is not a GuardDuty score (0-10)")
    return score


def _asff(finding: dict[str, Any]) -> dict[str, Any]:
    product = _text(finding.get("ProductArn"))
    if not _GUARDDUTY_PRODUCT.match(product):
        raise EventError(f"not a GuardDuty finding (product {product[:120]!r}): only GuardDuty's are acted on")
    region, account, detector, finding_id = _guardduty_arn(_text(finding.get("Id")))
    provider = _obj(finding.get("FindingProviderFields"))
    severity, plain = _obj(provider.get("Severity")), _obj(finding.get("Severity"))
    cluster, instance, user = None, None, _kubernetes_user(finding)
    for resource in map(_obj, _items(finding.get("Resources"))):
        kind, rid = _text(resource.get("Type")), _text(resource.get("Id"))
        if kind == "AwsEksCluster":
            eks = _obj(_obj(resource.get("Details")).get("AwsEksCluster"))
            cluster = _text(eks.get("Name")) or rid.rsplit("/", 1)[-1] or None
        elif kind == "AwsEc2Instance":
            instance = rid.rsplit("/", 1)[-1] or None
    return {
        "region": region, "account": account, "detector": detector, "id": finding_id,
        "type": _type_from_asff(provider.get("Types") or finding.get("Types")),
        # Older findings carry {Product, Normalized} and no Label: GuardDuty's own score is `Product`.
        "score": _score(severity.get("Original", plain.get("Original", plain.get("Product"))),
                        severity.get("Label") or plain.get("Label"), plain.get("Normalized")),
        "title": _text(finding.get("Title")), "cluster": cluster, "instance": instance, "form": "ASFF",
        "user": user,
    }  # fmt: skip


_K8S_NAME = re.compile(r"^[A-Za-z0-9:@._/=+-]{1,256}$")


def _kubernetes_user(finding: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """The Kubernetes user an ASFF copy carries in `Resources[].Details.Other` (a map of strings):
    its key ending `username` and, when there, its `groups` (comma-separated or a JSON list)."""
    import json

    for resource in map(_obj, _items(finding.get("Resources"))):
        other = _obj(_obj(resource.get("Details")).get("Other"))
        names = [v for k, v in other.items() if k.lower().endswith("username") and isinstance(v, str)]
        if not names or not _K8S_NAME.match(names[0]):
            continue
        raw = next((v for k, v in other.items() if k.lower().endswith("groups") and isinstance(v, str)), "")
        try:
            listed = json.loads(raw) if raw.startswith("[") else raw.split(",")
        except ValueError:
            listed = []
        groups = tuple(g.strip() for g in listed if isinstance(g, str) and _K8S_NAME.match(g.strip()))
        return names[0], groups
    return None


def _ocsf_product(finding: dict[str, Any]) -> str:
    """`guardduty` or `inspector` when the OCSF copy's product is AWS's own; an error otherwise."""
    product = _obj(_obj(finding.get("metadata")).get("product"))
    uid, vendor = _text(product.get("uid")), _text(product.get("vendor_name"))
    match = _OCSF_PRODUCT.match(uid)
    if not match or vendor not in {"", "AWS"}:
        raise EventError(
            f"not a finding of AWS's own GuardDuty or Inspector (product uid {uid[:120]!r}, "
            f"name {_text(product.get('name'))[:60]!r}): only theirs are acted on"
        )
    return match.group(1)


def _ocsf(finding: dict[str, Any]) -> dict[str, Any]:
    info = _dict(finding.get("finding_info"), "finding_info")
    region, account, detector, finding_id = _guardduty_arn(_text(info.get("uid")))
    types = _items(info.get("types"))
    kind = next((t for t in map(_text, types) if ":" in t and "/" in t), None) or _type_from_asff(types)
    severity_id = finding.get("severity_id")
    score = _OCSF_SEVERITY.get(severity_id, 0.0) if isinstance(severity_id, int) else 0.0
    cluster, instance = None, None
    for resource in map(_obj, _items(finding.get("resources"))):
        rtype, uid = _text(resource.get("type")), _text(resource.get("uid"))
        if rtype in {"AWS::EKS::Cluster", "AwsEksCluster"}:
            cluster = _text(resource.get("name")) or uid.rsplit("/", 1)[-1] or None
        elif rtype in {"AWS::EC2::Instance", "AwsEc2Instance"}:
            instance = uid.rsplit("/", 1)[-1] or None
    return {
        "region": region, "account": account, "detector": detector, "id": finding_id, "type": kind, "score": score,
        "title": _text(info.get("title")), "cluster": cluster, "instance": instance, "form": "OCSF",
    }  # fmt: skip


def _inspector_event(event: dict[str, Any], finding: dict[str, Any]) -> dict[str, Any]:
    """An Inspector finding on an ECR image, as ASFF carries it, in the shape of Inspector's own
    `Inspector2 Finding` event: parsed by the same code, it is the same incident (one per image)."""
    images = [r for r in map(_obj, _items(finding.get("Resources"))) if r.get("Type") == "AwsEcrContainerImage"]
    if not images:
        raise EventError("an Inspector finding from Security Hub that is not about an ECR image: not acted on")
    image = _obj(_obj(images[0].get("Details")).get("AwsEcrContainerImage"))
    vulnerability = _obj(next(iter(_items(finding.get("Vulnerabilities"))), {}))
    fields = _obj(finding.get("ProductFields"))
    closed = _obj(finding.get("Workflow")).get("Status") == "RESOLVED" or finding.get("RecordState") == "ARCHIVED"
    detail = {
        "findingArn": finding.get("Id"), "awsAccountId": finding.get("AwsAccountId"),
        "type": "PACKAGE_VULNERABILITY", "title": _text(finding.get("Title")),
        "severity": _text(_obj(finding.get("Severity")).get("Label")) or "UNTRIAGED",
        "status": "CLOSED" if closed else "ACTIVE",
        "fixAvailable": vulnerability.get("FixAvailable"), "exploitAvailable": vulnerability.get("ExploitAvailable"),
        "packageVulnerabilityDetails": {"vulnerabilityId": vulnerability.get("Id")},
        "resources": [{"type": "AWS_ECR_CONTAINER_IMAGE", "id": images[0].get("Id"), "region": finding.get("Region"),
                       "details": {"awsEcrContainerImage": {
                           "repositoryName": image.get("Name") or image.get("RepositoryName"),
                           "registry": image.get("RegistryId"), "imageHash": image.get("ImageDigest"),
                           "imageTags": image.get("ImageTags") or []}}}],
    }  # fmt: skip
    score = fields.get("aws/inspector/inspectorScore")
    if isinstance(score, str) and re.fullmatch(r"\d{1,2}(\.\d+)?", score):
        detail["inspectorScore"] = float(score)
    epss = vulnerability.get("EpssScore")
    if isinstance(epss, (int, float)) and not isinstance(epss, bool):
        detail["epss"] = {"score": float(epss)}
    return {"id": event.get("id"), "source": "aws.inspector2", "detail-type": "Inspector2 Finding",
            "account": event.get("account"), "region": event.get("region"),
            "detail": {k: v for k, v in detail.items() if v is not None}}  # fmt: skip


_OCSF_IMAGE_TYPES = {"AWS::ECR::ContainerImage", "AwsEcrContainerImage"}
_ECR_IMAGE_ARN = re.compile(r"^arn:aws[a-z-]*:ecr:[a-z0-9-]+:(\d{12}):repository/(.{2,256})/(sha256:[0-9a-f]{64})$")
_OCSF_LABEL = {1: "INFORMATIONAL", 2: "LOW", 3: "MEDIUM", 4: "HIGH", 5: "CRITICAL", 6: "CRITICAL"}
_OCSF_CLOSED = {3, 4}  # Suppressed, Resolved


def _yes_no(value: Any) -> str | None:
    return ("YES" if value else "NO") if isinstance(value, bool) else None


def _inspector_ocsf_event(event: dict[str, Any], finding: dict[str, Any]) -> dict[str, Any]:
    """An Inspector image finding as Security Hub's OCSF form carries it (a Vulnerability Finding),
    in the shape of Inspector's own event, like the ASFF form."""
    images = [r for r in map(_obj, _items(finding.get("resources"))) if _text(r.get("type")) in _OCSF_IMAGE_TYPES]
    if not images:
        raise EventError("an Inspector finding from Security Hub that is not about an ECR image: not acted on")
    uid, data = _text(images[0].get("uid")), _obj(images[0].get("data"))
    match = _ECR_IMAGE_ARN.match(uid)
    registry, repository, digest = match.groups() if match else (None, None, None)
    info = _dict(finding.get("finding_info"), "finding_info")
    vulnerability = _obj(next(iter(_items(finding.get("vulnerabilities"))), {}))
    cve = _obj(vulnerability.get("cve"))
    severity_id, status_id = finding.get("severity_id"), finding.get("status_id")
    label = _OCSF_LABEL.get(severity_id, "") if isinstance(severity_id, int) else ""
    closed = (isinstance(status_id, int) and status_id in _OCSF_CLOSED) or _text(finding.get("status")) in {
        "Suppressed", "Resolved"}  # fmt: skip
    detail = {
        "findingArn": info.get("uid"), "awsAccountId": _obj(_obj(finding.get("cloud")).get("account")).get("uid"),
        "type": "PACKAGE_VULNERABILITY", "title": _text(info.get("title")),
        "severity": label or _text(finding.get("severity")).upper() or "UNTRIAGED",
        "status": "CLOSED" if closed else "ACTIVE",
        "fixAvailable": _yes_no(vulnerability.get("is_fix_available")),
        "exploitAvailable": _yes_no(vulnerability.get("is_exploit_available")),
        "packageVulnerabilityDetails": {"vulnerabilityId": cve.get("uid")},
        "resources": [{"type": "AWS_ECR_CONTAINER_IMAGE", "id": uid, "region": images[0].get("region"),
                       "details": {"awsEcrContainerImage": {
                           "repositoryName": data.get("repositoryName") or repository,
                           "registry": data.get("registry") or registry,
                           "imageHash": data.get("imageHash") or digest,
                           "imageTags": data.get("imageTags") or []}}}],
    }  # fmt: skip
    epss = _obj(cve.get("epss")).get("score")
    if isinstance(epss, (int, float)) and not isinstance(epss, bool):
        detail["epss"] = {"score": float(epss)}
    return {"id": event.get("id"), "source": "aws.inspector2", "detail-type": "Inspector2 Finding",
            "account": event.get("account"), "region": event.get("region"),
            "detail": {k: v for k, v in detail.items() if v is not None}}  # fmt: skip


def to_incident(event: dict[str, Any], raw_ref: str | None = None) -> Incident:
    """The Security Hub copy as an incident with the GuardDuty finding's id (the responder reads the
    native finding before acting, see the module's docstring), or an Inspector image finding as
    Inspector's own event would make it."""
    from dataclasses import replace

    from chalicelib.sources import ecr

    detail_type = event.get("detail-type")
    finding = _one_finding(event)
    if detail_type == ASFF and _INSPECTOR_PRODUCT.match(_text(finding.get("ProductArn"))):
        native = ecr.to_incident(_inspector_event(event, finding), raw_ref)
        return replace(native, details={**native.details, "via": "Security Hub (ASFF)"})
    if detail_type == OCSF and _ocsf_product(finding) == "inspector":
        native = ecr.to_incident(_inspector_ocsf_event(event, finding), raw_ref)
        return replace(native, details={**native.details, "via": "Security Hub (OCSF)"})
    if detail_type == ASFF:
        facts = _asff(finding)
    elif detail_type == OCSF:
        facts = _ocsf(finding)
    else:
        raise EventError(f"not a Security Hub findings event: detail-type {detail_type!r}")
    kind = ResourceKind.CLUSTER if facts["cluster"] else ResourceKind.NODE if facts["instance"] else ResourceKind.OTHER
    principals: tuple[Principal, ...] = ()
    if facts.get("user"):
        name, groups = facts["user"]
        anonymous = name == "system:anonymous" or "system:unauthenticated" in groups
        user_kind = PrincipalKind.ANONYMOUS if anonymous else PrincipalKind.KUBERNETES_USER
        principals = (Principal(user_kind, name, groups=groups, involved_as=PrincipalRole.CALLER),)
    finding_type = facts["type"] or "Unknown:SecurityHub/GuardDutyFinding"
    arn = f"arn:aws:guardduty:{facts['region']}:{facts['account']}:detector/{facts['detector']}/finding/{facts['id']}"
    return Incident(
        id=facts["id"],
        source=SOURCE,
        type=finding_type,
        title=facts["title"][:500] or finding_type,
        severity=Severity.from_score(facts["score"]),
        score=facts["score"],
        account=facts["account"],
        region=facts["region"],
        resource_kind=kind,
        cluster=facts["cluster"],
        instance_ids=(facts["instance"],) if facts["instance"] else (),
        principals=principals,
        event_id=event.get("id") if isinstance(event.get("id"), str) else None,
        raw_ref=raw_ref or arn,
        finding_arn=arn,
        details={"via": f"Security Hub ({facts['form']})", "guardduty_detector": facts["detector"]},
    )
