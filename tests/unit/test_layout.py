"""The tree shows the pipeline: every module of chalicelib/ sits in one layer, imports only from
layers below its own (or from its own package), and no import cycle exists, lazy and type-only
imports included. docs/development.md draws the same layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "chalicelib"

# Lowest first. A package may import the packages of lower layers, never its peers or anything above.
LAYERS: tuple[tuple[str, ...], ...] = (
    # The shared vocabulary, at the package root: what every stage means by an incident, a setting,
    # an error, a valid value, a declared interface, the running invocation and the deployed functions.
    (
        "errors", "flow_detectors", "functions", "identifiers", "incident", "interfaces", "invocation",
        "key_policies", "settings", "validation",
    ),
    ("executors", "notifiers"),  # the only code that calls AWS, Kubernetes and the outputs
    ("actions", "sources", "flowlogs"),  # what a step does (through executors); events to incidents
    ("policy",),  # rules: which playbook an incident gets
    ("response",),  # plan, targets, guardrails, approvals, execute, release, audit
    ("entry",),  # the Lambda functions: wiring composes the stages
    ("generate",),  # build-time generators: never imported by the runtime
    ("commands",),  # the operator's CLI
)  # fmt: skip
VOCABULARY = LAYERS[0]


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every chalicelib module `name` imports, anywhere in its body (a lazy or TYPE_CHECKING import
    is still a dependency)."""

    def known(dotted: str) -> str:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = name.split(".", maxsplit=1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(known(a.name) for a in node.names if a.name.split(".")[0] == top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != top:
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                found.add(child if child in modules else known(source))
    found.discard(name)
    found.discard("")
    return found


def _layer_of(module: str, layers: tuple[tuple[str, ...], ...]) -> tuple[int, str] | None:
    parts = module.split(".")
    if len(parts) == 1:
        return (-1, "") if module else None  # the package's own __init__: nothing may live there
    for rank, names in enumerate(layers):
        if parts[1] in names:
            return rank, parts[1]
    return None


def problems(root: Path, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """What is wrong with the layout under `root`: modules in no layer, imports of a peer or of a
    layer above, and import cycles."""
    modules = _modules(root)
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    found = []
    for name in sorted(graph):
        mine = _layer_of(name, layers)
        if mine is None:
            found.append(f"{name}: in no layer (add it to LAYERS and the picture in docs/development.md)")
            continue
        for target in sorted(graph[name]):
            theirs = _layer_of(target, layers)
            if theirs is None or (theirs[1] == mine[1] and mine[1] not in layers[0]):
                continue  # unplaced (reported above), or within one package
            if theirs[0] >= mine[0] and not (mine[0] == theirs[0] == 0):
                found.append(f"{name} imports {target}: {'a peer' if theirs[0] == mine[0] else 'a layer above'}")
    found.extend(f"import cycle: {' -> '.join(c)}" for c in _cycles(graph))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component (Tarjan's, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_every_module_sits_in_a_layer_and_imports_only_downward_without_cycles() -> None:
    assert problems(PACKAGE) == []


def test_the_package_root_holds_only_the_vocabulary() -> None:
    at_root = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert at_root == sorted(VOCABULARY)
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(name for layer in LAYERS[1:] for name in layer)


def test_the_runtime_never_imports_a_generator_or_a_command() -> None:
    modules = _modules(PACKAGE)
    runtime = [m for m in modules if m.split(".")[1:2] and m.split(".")[1] not in ("generate", "commands")]
    for name in runtime:
        reached = {t.split(".")[1] for t in _imports(name, modules[name], modules) if "." in t}
        assert not reached & {"generate", "commands"}, name


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


LOW, HIGH = ("vocab",), ("stage", "other")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"stage/a.py": "from pkg import vocab\n"}, []),
        ({"stage/a.py": "def f():\n    from pkg.other import b\n", "other/b.py": ""},
         ["pkg.stage.a imports pkg.other.b: a peer"]),
        ({"vocab.py": "from pkg.stage import a\n", "stage/a.py": ""}, ["pkg.vocab imports pkg.stage.a: a layer above"]),
        (
            {"stage/a.py": "from . import b\n", "stage/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
             "    from pkg.stage.a import x\n"},
            ["import cycle: pkg.stage.a -> pkg.stage.b"],
        ),
        ({"loose.py": ""}, ["pkg.loose: in no layer (add it to LAYERS and the picture in docs/development.md)"]),
    ],
)  # fmt: skip
def test_the_walk_finds_upward_and_peer_imports_and_cycles(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    root = _write(
        tmp_path, {"__init__.py": "", "vocab.py": "", "stage/__init__.py": "", "other/__init__.py": "", **files}
    )
    assert problems(root, (LOW, HIGH)) == expected


def test_the_style_notes_and_the_development_picture_name_every_package() -> None:
    root = PACKAGE.parent
    style = (root / "STYLE.md").read_text(encoding="utf-8")
    picture = (root / "docs" / "development.md").read_text(encoding="utf-8").split("```mermaid", 1)[1]
    for name in (n for layer in LAYERS[1:] for n in layer):
        assert f"`{name}/`" in style, name
        assert f"{name}/" in picture.split("```", 1)[0], name
    for name in VOCABULARY:
        assert f"`{name}.py`" in style, name


def test_wiring_only_composes() -> None:
    """`entry/wiring.py` builds the stages' parts and hands them over: no loop over what an event
    holds, no error handling (those belong to the stage that knows what they mean), and no module of
    it imports wiring back."""
    tree = ast.parse((PACKAGE / "entry" / "wiring.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name == "reset":
            continue
        handling = [type(n).__name__ for n in ast.walk(node) if isinstance(n, (ast.For, ast.While, ast.Try))]
        assert not handling, f"{node.name}: {handling}"
    modules = _modules(PACKAGE)
    importers = [m for m in modules if "chalicelib.entry.wiring" in _imports(m, modules[m], modules)]
    assert all(m.startswith("chalicelib.commands.") for m in importers), importers


def _code_in_strings(tree: ast.AST) -> list[ast.Module]:
    """The string literals of a module that are Python code importing chalicelib (a child process's
    program, a benchmark's snippet)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "chalicelib" in node.value:
            try:
                found.append(ast.parse(node.value))
            except SyntaxError:
                continue  # prose, a path or a command line: not code
    return found


def test_every_import_of_chalicelib_names_a_module_that_exists() -> None:
    """Outside chalicelib/ too, and in code held in strings (what mypy does not see): a module moved
    without its users fails here, not in a benchmark run."""
    root = PACKAGE.parent
    modules = _modules(PACKAGE)
    places = [root / "app.py", *(p for d in ("tests", "bench", "devstack", "deploy") for p in (root / d).rglob("*.py"))]
    wrong = []
    for path in places:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for code in [tree, *_code_in_strings(tree)]:
            for node in ast.walk(code):
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("chalicelib"):
                    named = [node.module or ""] + [
                        f"{node.module}.{a.name}" for a in node.names if node.module == "chalicelib"
                    ]
                    wrong += [f"{path.relative_to(root)}: {n}" for n in named if n not in modules]
                elif isinstance(node, ast.Import):
                    wrong += [f"{path.relative_to(root)}: {a.name}" for a in node.names
                              if a.name.startswith("chalicelib") and a.name not in modules]  # fmt: skip
    assert wrong == []
