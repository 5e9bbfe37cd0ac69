"""The house rules of polaris_lib (docs/architecture.md: one subpackage per step, imports flow one way).

Static checks over the source (ast; nothing is imported): no import loop, no step package importing
another step, the kit's own imports at the top of each module, package faces that define nothing,
and the formatter's layout over the whole tree.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "polaris_lib"
STEPS = ("probe", "curate", "training", "extrapolate", "evaluate", "report")
LAYERS = ("config", "artifacts", "grading", "data", "toy", "policy")
ABOVE_STEPS = ("pipeline", "scale_out", "release", "cli")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in LIB.rglob("*.py"):
        if "assets" in path.parts:
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _face_names(module: str) -> set[str]:
    """Names a package face binds itself (`from polaris_lib.training import easy_drop` is then the
    face's function, not the module of the same name)."""
    path = MODULES.get(module)
    if path is None or path.name != "__init__.py":
        return set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}


def _imports(path: Path, top_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported kit module or name) for every import of polaris_lib in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("polaris_lib"):
                out += [(node.lineno, node.module)]
                bound = _face_names(node.module)
                out += [
                    (node.lineno, f"{node.module}.{a.name}")
                    for a in node.names
                    if a.name not in bound
                ]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("polaris_lib")]
    return out


def _graph() -> dict[str, set[str]]:
    edges = defaultdict(set)
    for mod, path in MODULES.items():
        for _, target in _imports(path):
            if target in MODULES and target != mod and not target.startswith(mod + "."):
                edges[mod].add(target)  # a face importing its own modules is not an edge
    return edges


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_step_has_a_package():
    assert all((LIB / s / "__init__.py").exists() for s in STEPS)


def test_steps_never_import_steps():
    bad = sorted(
        f"{a} -> {b}"
        for a, bs in _graph().items()
        for b in bs
        if _package(a) in STEPS and _package(b) in STEPS and _package(a) != _package(b)
    )
    assert not bad, "steps meet only in the run folder:\n" + "\n".join(bad)


def test_layers_below_the_steps_import_no_step():
    below = {*LAYERS, "metrics", "paper", "figure_style"}
    bad = sorted(
        f"{a} -> {b}"
        for a, bs in _graph().items()
        for b in bs
        if _package(a) in below and _package(b) in {*STEPS, *ABOVE_STEPS}
    )
    assert not bad, "\n".join(bad)


def test_runner_and_cli_use_step_faces_only():
    """The runner, the CLI and scale_out reach a step through its package face, never deeper."""
    bad = sorted(
        f"{a} -> {b}"
        for a, bs in _graph().items()
        for b in bs
        if _package(a) in ABOVE_STEPS and _package(b) in STEPS and b.count(".") > 1
    )
    assert not bad, "\n".join(bad)


def test_no_import_loops():
    edges, index, low, stack, on, loops = _graph(), {}, {}, [], set(), []
    sys.setrecursionlimit(10_000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in list(MODULES):
        if v not in index:
            visit(v)
    assert not loops, f"import loops: {loops}"


@pytest.mark.parametrize("mod", sorted(MODULES), ids=str)
def test_kit_imports_sit_at_the_top(mod):
    """Function-local imports are for heavy optional dependencies only, never the kit's own."""
    path = MODULES[mod]
    top = {line for line, _ in _imports(path, top_only=True)}
    local = sorted({line for line, _ in _imports(path) if line not in top})
    assert not local, f"{path.relative_to(REPO)}: kit imports inside functions at lines {local}"


@pytest.mark.parametrize("mod", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_package_faces_define_nothing(mod):
    tree = ast.parse(MODULES[mod].read_text(encoding="utf-8"))
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) else tree.body
    assert all(isinstance(n, ast.ImportFrom) for n in body), f"{mod}: a face only re-exports"


def test_formatter_lays_out_the_whole_tree():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment")
    r = subprocess.run([str(ruff), "format", "--check", str(REPO)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    skips = subprocess.run(
        ["git", "grep", "-n", "fmt: " + "skip", "--", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )  # fmt: the search string is split so this file does not match itself
    assert skips.stdout == "", skips.stdout
