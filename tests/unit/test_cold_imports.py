"""What a cold start loads: no source's event models (nor the identifier patterns) before its first
event, and neither pydantic nor the distributions' metadata ever (msgspec builds the models:
docs/development.md#choices), nor PyYAML (the shipped rules load from their parsed copy)."""

from __future__ import annotations

import subprocess
import sys


def test_a_cold_import_of_the_lambda_entry_loads_no_metadata_pydantic_yaml_or_source_models() -> None:
    code = ("import sys, app\n"
            "loaded = [m for m in sys.modules if m in ('importlib.metadata', 'pydantic', 'pydantic_core', 'yaml')\n"
            "          or m.startswith('chalicelib.sources.') or m == 'chalicelib.identifiers']\n"
            "assert loaded == ['chalicelib.sources.patterns'], loaded")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_first_event_of_every_source_loads_no_pydantic() -> None:
    code = ("import sys, json, pathlib\n"
            "from chalicelib.sources.registry import to_incident\n"
            "for path in sorted(pathlib.Path('events').rglob('*.json')):\n"
            "    try:\n"
            "        to_incident(json.loads(path.read_text()))\n"
            "    except Exception:\n"
            "        pass\n"
            "assert 'chalicelib.sources.guardduty' in sys.modules and 'chalicelib.sources.kms' in sys.modules\n"
            "assert 'chalicelib.sources.ecr' in sys.modules\n"
            "assert 'pydantic' not in sys.modules, [m for m in sys.modules if 'pydantic' in m]")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_flow_log_scan_imports_only_the_scanner_and_what_the_interpreter_loads_anyway() -> None:
    """A scan's process (bench/scan_once.py, the flow-log path's hot half) imports no dataclasses,
    typing, re, enum, functools or collections: each was milliseconds of every scan (docs/performance.md)."""
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "from chalicelib.flowlogs.addresses import Classifier, parse_networks\n"
            "from chalicelib.flowlogs.detect import Scanner\n"
            "from chalicelib.flowlogs.reader import gzip_blocks, with_layout\n"
            "Scanner(Classifier(parse_networks('1.2.3.4\\n', 'list'))).findings()\n"
            "heavy = {'dataclasses', 'typing', 're', 'enum', 'functools', 'collections', 'struct', 'inspect'}\n"
            "loaded = sorted(heavy & (set(sys.modules) - before))\n"
            "assert not loaded, loaded")  # fmt: skip
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
