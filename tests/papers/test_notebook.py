"""The shipped notebook (papers/notebooks/model_comparison.ipynb): the notebook API step by step.

Its code cells run in order in a real Jupyter kernel (nbclient) with the notebook's own smoke
settings (``VALUEDYN_NOTEBOOK_FAST=1``: two models, two seeds, 2 chains x (40 + 40) draws of real
NUTS on the shipped 1M-step run), and a probe cell appended after them reads the kernel's state
back: the comparison table, the saved fit. Its source is read for what it may not do: import a
private name, or switch matplotlib's backend (figures must show inline).
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
from pathlib import Path

import pytest

import valuedyn.papers
from valuedyn.fitting import __all__ as API
from valuedyn.fitting import shipped_trajectories

NOTEBOOK = Path(valuedyn.papers.__file__).parent / "notebooks" / "model_comparison.ipynb"
STEPS = ("load_trajectory", "fit", "check", "verdict", "compare", "rank", "model_analysis", "save_fit", "load_fit")
PROBE = """
import json as _json, math as _math
print("PROBE" + _json.dumps({
    "trajectory": str(TRAJECTORY), "models": list(MODELS), "seeds": list(SEEDS),
    "rows": [str(name) for name in comparison.table.index],
    "elpd": {str(name): float(value) for name, value in comparison.table["elpd_loo"].items()},
    "verdicts": {name: judged.label for name, judged in verdicts.items()},
    "winner": ranking.winner, "shown": str(shown),
    "groups": {name: sorted(idata.groups()) for name, idata in fits.items()},
    "saved": str(path), "saved_exists": path.is_file(), "round_trip": bool(same),
    "backend": __import__("matplotlib").get_backend(),
}))
"""


def _code(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def _read():
    import nbformat

    return nbformat.read(NOTEBOOK, as_version=4)


def _problems(source: str) -> list[str]:
    """What the notebook's code may not do: a private name (``._``), a backend switch, an
    import from outside ``valuedyn.fitting.__all__``, an API step left uncalled."""
    problems = []
    if "._" in source:
        problems.append("reaches into a private module or name (._)")
    problems += [f"switches the matplotlib backend ({word})" for word in ("matplotlib.use", "%matplotlib", "MPLBACKEND")
                 if word in source]
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("valuedyn"):
            problems += [f"imports {node.module}.{a.name}, not in valuedyn.fitting.__all__" for a in node.names
                         if node.module != "valuedyn.fitting" or a.name not in API]
        elif isinstance(node, ast.Import):
            problems += [f"imports {a.name}" for a in node.names if a.name.startswith("valuedyn")]
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    problems += [f"never calls {step}" for step in STEPS if step not in called]
    return problems


def test_the_notebook_source_uses_the_public_api_step_by_step():
    notebook = _read()
    assert _problems(_code(notebook)) == []
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "VALUEDYN_NOTEBOOK_TRAJECTORY" in parameters[0].source


def test_the_source_checker_sees_each_fault():
    good = _code(_read())
    assert len(_problems(good + "\nfrom valuedyn.fitting.judge._compare import compare_fits\n")) == 2  # ._ and off the API
    assert _problems(good + "\nimport matplotlib\nmatplotlib.use('Agg')\n") == [
        "switches the matplotlib backend (matplotlib.use)"]
    assert _problems(good + "\nfrom valuedyn.papers import run_report\n") == [
        "imports valuedyn.papers.run_report, not in valuedyn.fitting.__all__"]
    assert _problems(good.replace("rank(", "sorted(")) == ["never calls rank"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run top to bottom in a kernel (smoke settings), then the probe cell; (notebook, probe, folder)."""
    import nbformat
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("notebook")
    trajectory = folder / "my_run.nc"  # through the override: the notebook must read the variable
    shutil.copyfile(shipped_trajectories()[0], trajectory)
    notebook = _read()
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    env = {"VALUEDYN_NOTEBOOK_FAST": "1", "VALUEDYN_NOTEBOOK_TRAJECTORY": str(trajectory),
           "VALUEDYN_NOTEBOOK_OUT": str(folder / "saved"), "JAX_PLATFORMS": "cpu", "MPLBACKEND": None}
    old = {key: os.environ.get(key) for key in env}
    for key, value in env.items():  # the kernel inherits this environment; no MPLBACKEND: Jupyter's inline default
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    text = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    line = next(line for line in text.splitlines() if line.startswith("PROBE"))
    return notebook, json.loads(line[len("PROBE"):]), folder


def test_the_notebook_runs_and_its_figures_show_inline(executed):
    notebook, probe, _ = executed
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    assert "inline" in probe["backend"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 2  # the data and the posterior predictive, displayed by the inline backend


def test_the_notebook_compares_every_fitted_model(executed):
    _, probe, folder = executed
    assert probe["trajectory"] == str(folder / "my_run.nc")
    assert probe["models"] == ["logistic_onset", "stagewise"] and probe["seeds"] == [0, 1]  # the smoke settings
    assert sorted(probe["rows"]) == sorted(probe["models"])  # one row per fitted model
    assert all(math.isfinite(value) and value < 0 for value in probe["elpd"].values())
    assert list(probe["elpd"]) == sorted(probe["elpd"], key=probe["elpd"].get, reverse=True)  # best first
    assert set(probe["verdicts"]) == set(probe["models"]) and all(probe["verdicts"].values())
    assert probe["winner"] in (None, *probe["models"]) and probe["shown"] in probe["models"]
    for groups in probe["groups"].values():
        assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data", "prior",
                "prior_predictive"} <= set(groups)


def test_the_notebook_saves_one_fit_and_reads_it_back(executed):
    _, probe, folder = executed
    from valuedyn.fitting import fit_attrs, load_fit

    saved = Path(probe["saved"])
    if not saved.is_absolute():
        saved = folder / saved
    assert probe["saved_exists"] and probe["round_trip"] and saved.parent == folder / "saved"
    attrs = fit_attrs(load_fit(saved))
    assert attrs["model"] == probe["shown"] and attrs["behaviour"] == "event:place_plant"
    assert "checks" in attrs  # check's results travel with the saved fit
