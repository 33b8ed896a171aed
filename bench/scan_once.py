"""One flow-log scan as a whole process, for bench/flowlogs.py: interpreter start, the scanner's
imports, the threat list, read, decompress, split, detect, findings; nothing of the harness.

    .venv/bin/python bench/scan_once.py FILE.log.gz THREATS.txt   # prints its figures as JSON
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def scan(path: Path, threats: Path) -> dict[str, Any]:
    """One scan in this process: what a Lambda invocation does with one S3 object."""
    started = time.process_time()
    from chalicelib.flowlogs.addresses import Classifier, parse_networks
    from chalicelib.flowlogs.detect import Scanner
    from chalicelib.flowlogs.reader import gzip_blocks, with_layout

    imported = time.process_time()
    ranges = parse_networks(threats.read_text(), str(threats))
    loaded = time.process_time()
    scanner = Scanner(Classifier(ranges))
    with path.open("rb") as stream:
        for layout, block in with_layout(gzip_blocks(stream), None):
            scanner.scan(block, layout)
    findings = scanner.findings()
    done = time.process_time()
    return {
        "import_s": imported - started,
        "threat_list_s": loaded - imported,
        "work_s": done - loaded,
        "records": scanner.records,
        "findings": len(findings),
        "addresses": len(scanner.classifier.memo),
        "found": sorted({f"{f.detector} {f.address}" for f in findings}),
        "max_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    """VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    print(json.dumps(scan(Path(sys.argv[1]), Path(sys.argv[2]))))
