"""The documentation site's third-party scripts, taken from the npm registry at build time and
served from the site itself, so diagrams render offline and in locked-down networks.

`docs/assets/vendor.lock.json` pins each package (version and the registry's sha512 integrity);
the tarball is fetched once with `npm pack` into `~/.cache/eks-responder/npm/`, checked against the
lock, and the one file the site needs is copied into `docs/` (not committed).

    python -m devstack.docs_assets        # make docs-assets (part of make test)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "docs" / "assets" / "vendor.lock.json"
CACHE = Path(os.environ.get("EKS_RESPONDER_CACHE") or Path.home() / ".cache" / "eks-responder") / "npm"


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(name: str, version: str, wanted: str) -> Path:
    """The package's tarball, from the cache or the registry, checked against the lock."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"{name}-{version}.tgz"
    if not tarball.exists() or integrity(tarball) != wanted:
        subprocess.run(["npm", "pack", f"{name}@{version}", "--pack-destination", str(CACHE), "--silent"],
                       check=True, cwd=CACHE, stdout=subprocess.DEVNULL)  # fmt: skip
    found = integrity(tarball)
    if found != wanted:
        tarball.unlink(missing_ok=True)
        raise SystemExit(f"{name}@{version}: the registry's tarball is {found}, the lock says {wanted}: not used")
    return tarball


def main() -> int:
    for name, pinned in json.loads(LOCK.read_text()).items():
        target = ROOT / pinned["to"]
        tarball = fetch(name, pinned["version"], pinned["integrity"])
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(pinned["file"])
            if member is None:
                raise SystemExit(f"{name}@{pinned['version']}: no {pinned['file']} in the package")
            data = member.read()
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        print(f"{pinned['to']}: {name}@{pinned['version']} ({len(data) // 1024} KB, {pinned['integrity'][:19]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
