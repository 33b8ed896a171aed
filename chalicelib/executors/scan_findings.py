"""Reads an image's CVE list from ECR: the only module that calls `DescribeImageScanFindings`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.interfaces import IAMStatement, Vulnerability

IAM: tuple[IAMStatement, ...] = (
    IAMStatement(("ecr:DescribeImageScanFindings",), ("arn:aws:ecr:{region}:{account}:repository/*",)),
)
PAGE = 1000  # ECR's largest page
MAX_PAGES = 10  # ten thousand CVEs is more than any image has; the cap keeps one event bounded


class ScanFindingsReader:
    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session

    def findings(self, region: str, registry: str, repository: str, digest: str) -> tuple[list[Vulnerability], bool]:
        """The image's findings, worst first once folded, and whether the list is complete."""
        ecr = self._session().client("ecr", region_name=region or None)
        request: dict[str, Any] = {"repositoryName": repository, "imageId": {"imageDigest": digest},
                                   "maxResults": PAGE}  # fmt: skip
        if registry:
            request["registryId"] = registry
        found: list[Vulnerability] = []
        for _ in range(MAX_PAGES):
            page = ecr.describe_image_scan_findings(**request)
            found.extend(from_response(page))
            if not page.get("nextToken"):
                return found, True
            request["nextToken"] = page["nextToken"]
        return found, False


def _attributes(finding: dict[str, Any]) -> dict[str, str]:
    return {str(a.get("key")): str(a.get("value")) for a in finding.get("attributes") or [] if isinstance(a, dict)}


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def from_response(page: dict[str, Any]) -> list[Vulnerability]:
    """Both shapes of `DescribeImageScanFindings`: basic `findings` and Inspector's `enhancedFindings`."""
    body = page.get("imageScanFindings") or {}
    found: list[Vulnerability] = []
    for finding in body.get("findings") or []:
        attributes = _attributes(finding)
        package = " ".join(filter(None, (attributes.get("package_name"), attributes.get("package_version"))))
        score = _number(attributes.get("CVSS3_SCORE")) or _number(attributes.get("CVSS2_SCORE"))
        found.append(Vulnerability(str(finding.get("name") or "unnamed"), str(finding.get("severity") or ""),
                                   score, package))  # fmt: skip
    for finding in body.get("enhancedFindings") or []:
        details = finding.get("packageVulnerabilityDetails") or {}
        packages = details.get("vulnerablePackages") or [{}]
        package = " ".join(filter(None, (packages[0].get("name"), packages[0].get("version"))))
        found.append(
            Vulnerability(
                str(details.get("vulnerabilityId") or finding.get("title") or "unnamed"),
                str(finding.get("severity") or ""),
                _number(finding.get("score")),
                package,
                str(finding.get("fixAvailable") or "").lower(),
                str(finding.get("exploitAvailable") or "").lower(),
            )
        )
    return found
