"""Static checks of every notebook (STYLE.md habits 1-2, docs/architecture.md "Notebook shape").

Valid nbformat, committed without outputs, a title cell, imports-only second cell, exactly one
`parameters` cell of commented literals whose names are config fields, numbered sections, no
function definitions, the project kernel, and ruff clean. Fast: nothing is executed.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from polaris_lib.config import NOTEBOOK_ONLY_PARAMS, section_fields
from polaris_lib.config.sections import RunConfig

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
SECTIONS = ("probe", "curation", "stages", "yarn", "eval", "model", "toy")


def _load(path: Path):
    return nbformat.read(path, as_version=4)


def _code(cell) -> str:
    # IPython magics/shell lines are not Python; none are expected, but do not crash on them
    return "\n".join(
        ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))
    )


def _param_cells(nb):
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_valid_and_clean(path):
    nb = _load(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernel spec must be python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has committed outputs"
            assert cell.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_title_inputs_outputs_and_imports(path):
    nb = _load(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "first cell: # title"
    num = path.name[:2]
    assert first.source.splitlines()[0].startswith(f"# {num}"), "title starts with the step number"
    assert "Inputs" in first.source and "Outputs" in first.source
    second = nb.cells[1]
    tree = ast.parse(_code(second))
    assert second.cell_type == "code" and all(
        isinstance(n, ast.Import | ast.ImportFrom) for n in tree.body
    ), "second cell: imports only"


STEP_PACKAGE = {
    "01": "probe",
    "02": "curate",
    "03": "training",
    "04": "extrapolate",
    "05": "evaluate",
    "06": "report",
}
"""The one step package each notebook may import (docs/architecture.md: a notebook is thin over it)."""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_only_artifacts_config_policy_and_its_own_step(path):
    """A notebook imports `artifacts`, `config.resolve`, `policy.load_policy` and its own step
    package's face, nothing deeper: the face is the step's notebook API."""
    nb = _load(path)
    allowed = {
        "polaris_lib": {"artifacts", STEP_PACKAGE[path.name[:2]]},
        "polaris_lib.artifacts": None,  # any name the artifacts face exports
        "polaris_lib.config": {"resolve"},
        "polaris_lib.policy": {"load_policy"},
    }
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(_code(cell))):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("polaris_lib") for a in node.names), (
                    f"{path.name}: `import {node.names[0].name}`: use `from polaris_lib import ...`"
                )
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("polaris_lib"):
                assert node.module in allowed, f"{path.name} imports from {node.module}"
                names = {a.name for a in node.names}
                ok = allowed[node.module]
                assert ok is None or names <= ok, f"{path.name}: {node.module} import {names - ok}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_of_config_fields(path):
    nb = _load(path)
    cells = _param_cells(nb)
    assert len(cells) == 1, f"expected exactly one parameters cell, found {len(cells)}"
    cell = cells[0]
    assert nb.cells.index(cell) == 2, "the parameters cell comes right after the imports"
    section = _section(nb)
    allowed = RUN_FIELDS | NOTEBOOK_ONLY_PARAMS | (section_fields(section) if section else set())
    lines = [ln for ln in cell.source.splitlines() if ln.strip()]
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "assignments only"
        name = node.targets[0].id
        assert name.isupper(), f"parameter {name} should be UPPER_CASE"
        assert name.lower() in allowed, (
            f"parameter {name} is not a field of RunConfig or of section {section!r}"
        )
        ast.literal_eval(node.value)  # literals only: papermill replaces this cell
        line = next(ln for ln in lines if ln.startswith(f"{name} ="))
        assert "#" in line.split("=", 1)[1], f"parameter {name} needs a comment"
    for required in ("PRESET", "RUN_DIR", "SEED", "OVERRIDES"):
        assert re.search(rf"^{required} =", cell.source, re.M), f"missing {required}"


def _section(nb) -> str | None:
    """The config section the notebook resolves its step parameters against (resolve(section=))."""
    for cell in nb.cells:
        m = re.search(r"resolve\([^)]*section=\"(\w+)\"", cell.source, re.S)
        if cell.cell_type == "code" and m:
            assert m.group(1) in SECTIONS
            return m.group(1)
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_numbered_sections_and_no_definitions(path):
    nb = _load(path)
    heads = [
        ln
        for c in nb.cells
        if c.cell_type == "markdown"
        for ln in c.source.splitlines()
        if ln.startswith("## ")
    ]
    numbers = [int(m.group(1)) for h in heads if (m := re.match(r"## (\d+)\. \S", h))]
    assert numbers and numbers == list(range(1, len(numbers) + 1)), f"sections: {heads}"
    assert len(numbers) == len(heads), f"unnumbered section heading in {heads}"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(_code(cell))):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef), (
                f"cell {i} defines {node.name}: put it in polaris_lib"
            )


def test_ruff_clean():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment")
    r = subprocess.run([str(ruff), "check", *map(str, NOTEBOOKS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill parses the parameters cell itself (`--help-notebook`, type inference): a comment
    it cannot parse (e.g. an apostrophe) hides that parameter from it."""
    import papermill as pm

    names = {
        node.targets[0].id
        for node in ast.parse(_param_cells(_load(path))[0].source).body
        if isinstance(node, ast.Assign)
    }
    assert set(pm.inspect_notebook(str(path))) == names
