"""The notebook API (``valuedyn.fitting.__all__``): every name has a docstring example that
runs here as a doctest; a fit writes and prints nothing; papers/ and the shipped notebook
import nothing private of the fitting room.

The examples share this process, so the tiny model (logistic_onset, 2 seeds x 16 updates)
is compiled once, by the first example that fits."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import os
from pathlib import Path

import pytest

import valuedyn.fitting
import valuedyn.papers

API = list(valuedyn.fitting.__all__)
PAPERS = Path(valuedyn.papers.__file__).parent


def test_the_api_is_one_short_list():
    assert 15 <= len(API) <= 25 and len(set(API)) == len(API)
    assert {"fit", "load_fit", "save_fit", "check", "verdict", "compare", "rank", "posterior_medians", "plan_fits",
            "run_plan", "load_trajectory"} <= set(API)
    for name in API:
        assert getattr(valuedyn.fitting, name).__doc__, f"{name} has no docstring"
    # plumbing is not part of it, and no API name is shadowed by a sub-room once that is imported
    importlib.import_module("valuedyn.fitting.analyses._headline")  # imports judge/ and inference/

    assert not {"inference", "judge", "analyses", "pipeline", "settings"} & set(API)
    assert all(callable(getattr(valuedyn.fitting, name)) for name in API)
    assert not {"slug", "progress_bar", "prepare_jax", "fit_trajectory"} & set(API)


@pytest.mark.parametrize("name", API)
def test_every_api_name_has_an_example_that_runs(name):
    obj = getattr(valuedyn.fitting, name)
    finder = doctest.DocTestFinder(recurse=False, exclude_empty=True)
    tests = [t for t in finder.find(obj, name, globs={}) if t.examples]
    assert tests, f"valuedyn.fitting.{name}: its docstring has no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_fit_writes_and_prints_nothing(tmp_path, monkeypatch, capsys):
    from valuedyn.fitting import FitSettings, fit, shipped_trajectories

    monkeypatch.chdir(tmp_path)
    idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", seeds=(0, 1),
                settings=FitSettings(chains=2, draws=60, warmup=60, min_draws=0))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert list(tmp_path.iterdir()) == []
    assert idata.attrs["model"] == "logistic_onset" and "diagnostics" in idata.attrs


def test_fit_takes_a_dataset_in_memory(tmp_path, monkeypatch):
    from valuedyn.fitting import FitSettings, fit, load_trajectory, shipped_trajectories

    monkeypatch.chdir(tmp_path)
    ds = load_trajectory(shipped_trajectories()[0])
    idata = fit(ds, "unlock:place_plant", "logistic_onset", seeds=(0, 1),
                settings=FitSettings(chains=2, draws=60, warmup=60, min_draws=0))
    assert idata.posterior["t0"].shape == (2, 60, 2)
    observed = ds["achievement_unlocks"].sel(achievement="place_plant").isel(seed=[0, 1]).values
    observed = observed[idata.constant_data["mask"].values.astype(bool)]  # the fit's observed cells, seed-major
    assert observed.size and (idata.observed_data["y"].values == observed).all()
    assert list(tmp_path.iterdir()) == []  # its temporary file is gone


def test_fit_refuses_bad_input_before_sampling():
    from valuedyn._errors import ValuedynError
    from valuedyn.fitting import fit, shipped_trajectories

    with pytest.raises(ValuedynError, match="unknown model"):
        fit(shipped_trajectories()[0], "unlock:place_plant", "no_such_model")
    with pytest.raises(ValuedynError, match="does not exist"):
        fit("no_such_run.nc", "unlock:place_plant", "logistic_onset")


def _private_fitting_imports(tree: ast.AST) -> list[str]:
    """Imports of a private module of the fitting room (``valuedyn.fitting._x``, ``valuedyn.fitting.sub._x``)."""
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["valuedyn", "fitting"] and any(part.startswith("_") for part in parts[2:]):
                found.append(name)
    return sorted(set(found))


def test_papers_imports_nothing_private_of_the_fitting_room():
    offenders = {}
    for path in sorted(PAPERS.rglob("*.py")):
        found = _private_fitting_imports(ast.parse(path.read_text(), filename=str(path)))
        if found:
            offenders[path.name] = found
    assert not offenders, f"papers/ imports private fitting modules (use valuedyn.fitting's names): {offenders}"


def test_the_shipped_notebook_imports_nothing_private():
    notebook = json.loads((PAPERS / "notebooks" / "model_comparison.ipynb").read_text())
    source = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    private = _private_fitting_imports(tree)
    private += [f"valuedyn.papers.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "valuedyn.papers" for a in node.names if a.name.startswith("_")]
    private += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                and any(p.startswith("_") for p in node.module.split(".")[1:])]
    assert not private, f"the notebook imports private names: {private}"


def test_the_checker_sees_a_private_import():
    tree = ast.parse("from valuedyn.fitting.judge._compare import elpd_clearly_ahead\n"
                     "from valuedyn.fitting import load_fit\nfrom valuedyn.fitting.settings import REPORT\n")
    assert _private_fitting_imports(tree) == ["valuedyn.fitting.judge._compare",
                                              "valuedyn.fitting.judge._compare.elpd_clearly_ahead"]


def test_importing_papers_leaves_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; before = matplotlib.get_backend(); import valuedyn.papers; "
            "print(before == matplotlib.get_backend())")
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "True"


def test_importing_the_data_room_loads_no_jax():
    import subprocess
    import sys

    code = ("import sys, valuedyn.data; from valuedyn.data import open_trajectory; "
            "print(sorted(m for m in ('jax', 'flax', 'craftax') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"import valuedyn.data loaded {loaded}"
    import valuedyn.data

    assert all(hasattr(valuedyn.data, name) for name in ("open_trajectory", "make_train", "memory_probe"))


def test_arviz_runs_unaided_on_the_view_and_gives_the_package_numbers():
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")  # this test draws; the test process has no display
    import matplotlib.pyplot as plt
    import numpy as np

    from valuedyn.fitting import FitSettings, compare, fit, for_arviz, shipped_trajectories

    quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    view = for_arviz(idata)
    mask = np.asarray(idata.constant_data["mask"].values, bool)
    assert view.observed_data["y"].size == mask.sum()  # masked updates are dropped, not zeros
    assert view.posterior_predictive["y"].shape[-1] == view.log_likelihood["y"].shape[-1] == mask.sum()
    ax = az.plot_ppc(view, num_pp_samples=20)
    az.plot_loo_pit(view, y="y")
    plt.close("all")
    assert ax is not None
    summary = az.summary(view, var_names=["t0"])
    assert len(summary) == 2 and "r_hat" in summary.columns
    table = az.compare({"logistic_onset": view, "again": for_arviz(idata)}, ic="loo")
    ours = compare({"logistic_onset": idata}).table
    assert np.isclose(table.loc["logistic_onset", "elpd_loo"], ours.loc["logistic_onset", "elpd_loo"])
