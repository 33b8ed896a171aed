"""Compiled bytecode in the deployment package, so a cold start does not compile every module.

    python -m deploy.bytecode PACKAGE.zip [...]   # `make deploy` and `make package` run it

Chalice zips sources only, and `/var/task` is read-only: without `.pyc` files every cold start
compiles every module it imports, and can keep none. This adds, beside each `.py` of the zip, its
`__pycache__/<name>.<tag>.pyc` for the Lambda runtime's Python (the interpreter running this must
be that version: the tag is checked against the package's name), compiled with unchecked-hash
invalidation: the runtime uses it whatever the files' times are after Lambda unzips them.
Idempotent: a package that has them already is left as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import py_compile
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

MARK = ".eks-responder-bytecode"  # a member that says "done": running twice changes nothing


def tag() -> str:
    """`cpython-311`: what this interpreter names its bytecode files."""
    return sys.implementation.cache_tag


def runtime_of(package: Path) -> str | None:
    """`python3.11` from Chalice's package name `<hash>-python3.11.zip` (None for other names)."""
    found = re.search(r"python(\d+)\.(\d+)", package.name)
    return f"cpython-{found.group(1)}{found.group(2)}" if found else None


def pyc_name(source: str) -> str:
    folder, _, name = source.rpartition("/")
    compiled = f"__pycache__/{name[:-3]}.{tag()}.pyc"
    return f"{folder}/{compiled}" if folder else compiled


def add_bytecode(package: Path) -> int:
    """Add the bytecode of every module of the zip; the number of files compiled."""
    expected = runtime_of(package)
    if expected is not None and expected != tag():
        raise SystemExit(
            f"{package.name} is for {expected}, but this interpreter writes {tag()}: run it with that Python"
        )
    with zipfile.ZipFile(package) as zipped:
        names = set(zipped.namelist())
        if MARK in names:
            return 0
        sources = sorted(n for n in names if n.endswith(".py") and pyc_name(n) not in names)
        with tempfile.TemporaryDirectory() as work:
            root = Path(work)
            compiled: list[tuple[Path, str]] = []
            for source in sources:
                target = root / source
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zipped.read(source))
                out = root / "out" / pyc_name(source)
                try:
                    py_compile.compile(str(target), cfile=str(out), dfile=source, doraise=True,
                                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)  # fmt: skip
                except py_compile.PyCompileError:
                    continue  # a file that is not Python 3 (test data, templates): imported by nobody
                compiled.append((out, pyc_name(source)))
            rewritten = root / "package.zip"
            shutil.copyfile(package, rewritten)
            with zipfile.ZipFile(rewritten, "a", zipfile.ZIP_DEFLATED) as out_zip:
                for path, name in compiled:
                    out_zip.write(path, name)
                out_zip.writestr(MARK, f"{len(compiled)} modules compiled for {tag()} (unchecked-hash)\n")
            shutil.move(str(rewritten), package)
    return len(compiled)


def unchecked_hash(pyc: bytes) -> bool:
    """The pyc header's flags (PEP 552): hash-based, source not checked."""
    return int.from_bytes(pyc[4:8], "little") == 1 and pyc[:4] == importlib.util.MAGIC_NUMBER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.bytecode", description=__doc__)
    parser.add_argument("packages", nargs="+", type=Path, metavar="PACKAGE.zip")
    args = parser.parse_args(argv)
    for package in args.packages:
        count = add_bytecode(package)
        sys.stdout.write(f"{package}: {count} modules compiled ({tag()}, unchecked-hash)\n" if count
                         else f"{package}: bytecode already there\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
