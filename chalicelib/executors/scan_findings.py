"""Reads an image's CVE list from ECR: the only module that calls `DescribeImageScanFindings`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.actions.base import IAMStatement
from chalicelib.response.vulnerabilities import Vulnerability, from_response

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
