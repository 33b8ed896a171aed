"""Where an image's content lives in an ECR registry: the only module that lists repositories and
looks digests up in them.

`k8s:block-image` denies by digest in every registry, so whether a digest may be blocked is decided
on the content, not on the repository a finding names: the same bytes pushed to a scratch
repository are the production image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.interfaces import IAMStatement

IAM: tuple[IAMStatement, ...] = (
    IAMStatement(("ecr:DescribeRepositories", "ecr:DescribeImages"), ("arn:aws:ecr:{region}:{account}:repository/*",)),
)
MAX_REPOSITORIES = 5000  # five pages: a registry with more is looked up no further (the caller refuses)
MAX_CANDIDATES = 100  # digest lookups, one call each: beyond this the caller refuses rather than guess


class TooManyError(Exception):
    """More repositories to look into than one event may: nothing is concluded."""


class ImagePlaces:
    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session

    def holding(self, region: str, registry: str, digest: str, wanted: Callable[[str], bool]) -> list[str]:
        """The repositories of the registry, among those `wanted` says matter, that hold the digest.
        Raises (botocore's error, or TooManyError) when that cannot be known in full."""
        ecr = self._session().client("ecr", region_name=region or None)
        candidates: list[str] = []
        seen = 0
        for page in ecr.get_paginator("describe_repositories").paginate(
            registryId=registry, PaginationConfig={"PageSize": 1000}
        ):
            for repository in page.get("repositories") or []:
                seen += 1
                name = str(repository.get("repositoryName") or "")
                if name and wanted(name):
                    candidates.append(name)
            if seen > MAX_REPOSITORIES or len(candidates) > MAX_CANDIDATES:
                raise TooManyError(f"more than {MAX_REPOSITORIES} repositories, or {MAX_CANDIDATES} to look into")
        found = []
        for name in candidates:
            try:
                ecr.describe_images(registryId=registry, repositoryName=name, imageIds=[{"imageDigest": digest}])
            except ecr.exceptions.ImageNotFoundException:
                continue
            found.append(name)
        return found
