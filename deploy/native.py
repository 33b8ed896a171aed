"""Build the flow-log scanner's compiled first pass (`chalicelib/flowlogs/_prefilter.c`).

    python -m deploy.native          # make test, make demo and make package run it
    python -m deploy.native --check  # exit 1 unless the built module is current and imports

One C file against the limited API (`.abi3.so`: one build serves CPython 3.11 and later), compiled
with the machine's C compiler and this interpreter's headers, beside its source. The scanner works
without it (the same findings, about twice the time): where no compiler is found, or off Linux, this
says so and leaves the pure-Python scanner in charge. Built on Linux x86-64, it is the object the
Lambda function (x86-64) imports; it uses nothing from the C library newer than glibc 2.2.5.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "chalicelib" / "flowlogs" / "_prefilter.c"
TARGET = SOURCE.with_name("_prefilter.abi3.so")
FLAGS = (
    "-O2", "-fPIC", "-shared", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wno-sign-conversion",
    "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-fno-strict-aliasing", "-Wl,-z,relro,-z,now", "-s",
)  # fmt: skip


def compiler() -> list[str] | None:
    """The C compiler: $CC, else the one this Python was built with, else cc or gcc on the path."""
    named = os.environ.get("CC") or sysconfig.get_config_var("CC") or ""
    words = shlex.split(named)
    if words and shutil.which(words[0]):
        return words
    found = shutil.which("cc") or shutil.which("gcc")
    return [found] if found else None


def current() -> bool:
    return TARGET.exists() and TARGET.stat().st_mtime >= SOURCE.stat().st_mtime


def build() -> int:
    if platform.system() != "Linux":
        print(f"==> {TARGET.name}: not built off Linux (the scanner runs in pure Python)")
        return 0
    if current():
        return 0
    cc = compiler()
    include = sysconfig.get_paths()["include"]
    if cc is None or not (Path(include) / "Python.h").exists():
        print(f"==> {TARGET.name}: no C compiler or Python headers; the flow-log scanner runs in pure Python")
        return 0
    partial = TARGET.with_suffix(".tmp")
    command = [*cc, *FLAGS, f"-I{include}", str(SOURCE), "-o", str(partial)]
    done = subprocess.run(command, check=False)  # noqa: S603 - our compiler, flags and file
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        print(f"==> {TARGET.name}: the build failed: {shlex.join(command)}", file=sys.stderr)
        return done.returncode
    partial.replace(TARGET)
    print(f"==> built {TARGET.relative_to(ROOT)}")
    return 0


def check() -> int:
    if not current():
        print(f"{TARGET.relative_to(ROOT)} is missing or older than its source: run python -m deploy.native")
        return 1
    spec = importlib.util.spec_from_file_location("_prefilter", TARGET)
    if spec is None or spec.loader is None:
        return 1
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 unless the module is built, current and imports")
    args = parser.parse_args(argv)
    return check() if args.check else build()


if __name__ == "__main__":
    raise SystemExit(main())
