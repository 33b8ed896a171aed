"""One flow-log scan as a whole process, for bench/flowlogs.py: interpreter start, the scanner's
imports, the threat list, read, decompress, split, detect, findings; nothing of the harness.

    .venv/bin/python bench/scan_once.py FILE.log.gz THREATS.txt   # prints its figures as a Python literal
"""

from __future__ import annotations

import os
import sys
import time

# Nothing beyond what the interpreter loads anyway (no pathlib, typing or json before the scan):
# what the process imports is the scanner's.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: PTH120, PTH100


def scan(path: str, threats: str) -> dict[str, object]:
    """One scan in this process: what a Lambda invocation does with one S3 object."""
    started = time.process_time()
    from chalicelib.flowlogs.addresses import Classifier, parse_networks
    from chalicelib.flowlogs.detect import Scanner
    from chalicelib.flowlogs.reader import gzip_blocks, with_layout

    imported = time.process_time()
    with open(threats, encoding="utf-8") as feed:  # noqa: PTH123
        ranges = parse_networks(feed.read(), threats)
    loaded = time.process_time()
    scanner = Scanner(Classifier(ranges))
    with open(path, "rb") as stream:  # noqa: PTH123
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
    with open("/proc/self/status", encoding="ascii") as status:  # noqa: PTH123
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    print(repr(scan(sys.argv[1], sys.argv[2])))  # a literal (read back with ast.literal_eval): no json module
