"""Fit files are ArviZ-native (issue 34 point 5): ArviZ's own functions run on a file
opened with plain ``az.from_netcdf`` and give the numbers the package reports; masked
updates are dropped (never zeros); prior and prior predictive groups exist; a file in the
layout written before still loads, and its readers give the same numbers.

One tiny fit (2 seeds x 24 updates, 3 masked updates per seed) and a second one of the same
data with another random stream, once per module."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr
from fitting_helpers import LOGISTIC_TRUTH

from valuedyn._errors import ValuedynError

N_UPDATES, MASKED = 24, 3


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    from valuedyn.fitting import FitSettings, fit, save_fit
    from valuedyn.fitting.inference._simulate import simulate_trajectory, write_trajectory
    from valuedyn.models import get_model

    folder = tmp_path_factory.mktemp("arviz_native")
    truth = {name: values[:2] for name, values in LOGISTIC_TRUTH.items()}
    dataset = simulate_trajectory(get_model("logistic_onset"), truth, behaviour="unlock:place_table", n_updates=N_UPDATES,
                                  episodes_per_update=60.0, masked_updates=MASKED, seed=3)
    trajectory = folder / "trajectory.nc"
    write_trajectory(dataset, trajectory)
    paths = {}
    for name, rng_seed in (("a", 1), ("b", 2)):
        settings = FitSettings(chains=2, warmup=150, draws=150, min_draws=0, rng_seed=rng_seed)
        idata = fit(trajectory, "unlock:place_table", "logistic_onset", settings=settings)
        paths[name] = save_fit(idata, folder / f"{name}.nc")
    return paths


def _open(path):
    idata = az.from_netcdf(str(path))  # plain ArviZ, none of the package's readers
    for group in idata.groups():
        getattr(idata, group).load()
    return idata


def test_observed_data_predictive_and_log_likelihood_share_one_dimension_of_observed_cells(fits):
    idata = _open(fits["a"])
    assert {"prior", "prior_predictive", "posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    mask = np.asarray(idata.constant_data["mask"].values, bool)
    n_obs = int(mask.sum())
    assert n_obs == mask.size - 2 * MASKED  # the first updates finish no episode: masked, not zeros
    assert idata.observed_data["y"].dims == ("obs",)
    for group in ("posterior_predictive", "log_likelihood", "prior_predictive"):
        assert getattr(idata, group)["y"].dims == ("chain", "draw", "obs"), group
        assert getattr(idata, group)["y"].sizes["obs"] == n_obs, group
    assert idata.prior_predictive.sizes["draw"] == 200 and idata.prior.sizes["chain"] == 1
    assert set(idata.posterior.data_vars) == set(idata.prior.data_vars)
    assert idata.prior["level"].dims == ("chain", "draw", "seed", "update")
    # the cells are named, and none of them is a masked update
    updates = np.asarray(idata.constant_data["update"].values)
    assert not np.isin(idata.observed_data["obs_update"].values, updates[:MASKED]).any()
    seed_index, update_index = np.nonzero(mask)
    assert np.array_equal(idata.log_likelihood["obs_update"].values, updates[update_index])
    assert np.array_equal(idata.posterior_predictive["obs_seed"].values,
                          np.asarray(idata.constant_data["seed"].values)[seed_index])
    assert idata.observed_data["y"].dtype.kind == "f" and idata.observed_data["y"].attrs["discrete"] == 1
    assert np.all(np.isfinite(idata.observed_data["y"].values))
    assert np.all(np.isfinite(idata.log_likelihood["y"].values))
    # unlock counts: the prior predictive lies in [0, episodes] like the data
    exposure = np.asarray(idata.constant_data["exposure"].values)[seed_index, update_index]
    prior_y = idata.prior_predictive["y"].values
    assert np.all((prior_y >= 0) & (prior_y <= exposure)) and prior_y.std() > 0


def test_az_loo_and_compare_run_unaided_and_give_the_package_numbers(fits):
    from valuedyn.fitting import compare

    a, b = _open(fits["a"]), _open(fits["b"])
    ours = compare({"a": fits["a"]}).table
    loo = az.loo(a)
    assert np.isclose(loo.elpd_loo, ours.loc["a", "elpd_loo"]) and np.isclose(loo.p_loo, ours.loc["a", "p_loo"])
    assert np.isclose(loo.se, ours.loc["a", "se"])
    theirs = az.compare({"a": a, "b": b}, ic="loo", method="stacking")
    ours = compare({"a": fits["a"], "b": fits["b"]}).table
    for column, their_column in (("elpd_loo", "elpd_loo"), ("d_elpd", "elpd_diff"), ("weight", "weight"), ("se", "se"),
                                 ("dse", "dse")):
        assert np.allclose(theirs.loc[["a", "b"], their_column].to_numpy(float), ours.loc[["a", "b"], column].to_numpy(float)), column


def test_az_loo_pit_runs_unaided_and_gives_the_package_numbers(fits):
    from valuedyn.fitting import check, load_fit
    from valuedyn.fitting.judge._check import loo_pit_values

    idata = _open(fits["a"])
    theirs = np.asarray(az.loo_pit(idata, y="y"))
    ours = loo_pit_values(load_fit(fits["a"]), np.random.default_rng(0))
    assert theirs.shape == ours["upper"].shape == (int(idata.constant_data["mask"].sum()),)
    assert np.allclose(theirs, ours["upper"], atol=1e-6)
    # the package's randomised PIT of counts lies between P(y_rep < y) and ArviZ's P(y_rep <= y)
    assert np.all(ours["pit"] <= theirs + 1e-6) and not np.allclose(ours["pit"], theirs)
    # and the checks it stores are those PIT values, with ArviZ's Pareto k
    checks = check(load_fit(fits["a"]))["loo_pit"]
    k = np.asarray(az.loo(idata, pointwise=True).pareto_k)
    assert np.isclose(checks["pareto_k_max"], k.max()) and checks["n"] == theirs.size
    assert np.isclose(checks["mean"], ours["pit"].mean())


def test_az_summary_gives_the_package_diagnostics(fits):
    from valuedyn.fitting import fit_attrs, load_fit

    idata = _open(fits["a"])
    diagnostics = fit_attrs(load_fit(fits["a"]))["diagnostics"]
    names = list(diagnostics["per_parameter"])
    summary = az.summary(idata, var_names=names, round_to="none")
    assert np.isclose(summary["r_hat"].max(), diagnostics["rhat_max"])
    assert np.isclose(summary["ess_bulk"].min(), diagnostics["ess_bulk_min"])
    assert np.isclose(summary["ess_tail"].min(), diagnostics["ess_tail_min"])
    prior = az.summary(idata, group="prior", var_names=["t0"], kind="stats")
    assert len(prior) == 2


def test_arviz_plots_run_unaided(fits):
    import matplotlib

    matplotlib.use("Agg")  # this test draws; the test process has no display
    import matplotlib.pyplot as plt

    idata = _open(fits["a"])
    try:
        ax = az.plot_ppc(idata, num_pp_samples=20, random_seed=0)
        assert len(np.ravel(ax)[0].get_lines()) >= 20  # the replicates and the observed data
        az.plot_ppc(idata, group="prior", num_pp_samples=20, random_seed=0)
        ax = az.plot_loo_pit(idata, y="y")
        assert np.ravel(ax)[0].get_lines()
    finally:
        plt.close("all")


def _old_layout(idata) -> az.InferenceData:
    """The layout fit files had before (written independently of the package's converter):
    observed and replicated ``y`` on [seed, update], integer, masked cells 0; the
    log-likelihood on ``obs``; no prior groups."""
    mask = np.asarray(idata.constant_data["mask"].values, bool)
    seed_index, update_index = np.nonzero(mask)
    seeds, updates = idata.constant_data["seed"].values, idata.constant_data["update"].values
    y = np.zeros(mask.shape, np.int64)
    y[seed_index, update_index] = idata.observed_data["y"].values.astype(np.int64)
    replicated = idata.posterior_predictive["y"].values
    y_rep = np.zeros(replicated.shape[:2] + mask.shape, np.int32)
    y_rep[:, :, seed_index, update_index] = replicated.astype(np.int32)
    grid = {"seed": seeds, "update": updates}
    groups = {group: getattr(idata, group) for group in ("posterior", "sample_stats", "log_likelihood", "constant_data")}
    groups["observed_data"] = xr.Dataset({"y": (("seed", "update"), y)}, coords=grid)
    groups["posterior_predictive"] = xr.Dataset(
        {"y": (("chain", "draw", "seed", "update"), y_rep)},
        coords={"chain": idata.posterior["chain"].values, "draw": idata.posterior["draw"].values, **grid})
    old = az.InferenceData(**groups)
    old.attrs.update(idata.attrs)
    return old


def _leaves(tree, prefix="") -> dict:
    """A nested dict / list of a fit's checks as {path: number or text}."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _leaves(value, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in _leaves(value, f"{prefix}/{i}").items()}
    return {prefix: tree}


def test_a_fit_file_in_the_old_layout_loads_and_gives_the_same_numbers(fits, tmp_path):
    from valuedyn.fitting import compare, for_arviz, load_fit
    from valuedyn.fitting.judge._check import compute_checks
    from valuedyn.papers._figures import fit_arrays

    new = load_fit(fits["a"])
    old_path = tmp_path / "old.nc"
    _old_layout(_open(fits["a"])).to_netcdf(str(old_path), engine="h5netcdf")
    assert _open(old_path).observed_data["y"].dims == ("seed", "update")
    converted = load_fit(old_path)
    for group in ("observed_data", "posterior_predictive", "log_likelihood"):
        ours, theirs = getattr(converted, group)["y"], getattr(new, group)["y"]
        assert ours.dims == theirs.dims and np.array_equal(ours.values, theirs.values), group
        assert np.array_equal(ours["obs_update"].values, theirs["obs_update"].values), group
    ours, theirs = _leaves(compute_checks(converted)), _leaves(compute_checks(new))
    assert ours.keys() == theirs.keys() and ours  # the same checks, to rounding (summation order)
    for key, value in ours.items():
        assert value == theirs[key] if isinstance(value, str) else np.isclose(value, theirs[key], rtol=1e-12), key
    assert np.isclose(compare({"old": old_path}).table.loc["old", "elpd_loo"], az.loo(new).elpd_loo)
    old_arrays, new_arrays = fit_arrays(converted), fit_arrays(new)
    for key in ("observed", "predictive"):
        assert np.array_equal(old_arrays[key], new_arrays[key], equal_nan=True), key
    assert np.isnan(new_arrays["observed"][:, :MASKED]).all()  # masked updates: no value, not 0
    # an old-layout InferenceData read without the package is put on the layout by for_arviz
    assert for_arviz(_open(old_path)).observed_data["y"].dims == ("obs",)


def test_an_old_layout_file_whose_log_likelihood_cells_disagree_is_refused(fits, tmp_path):
    from valuedyn.fitting import load_fit

    old = _old_layout(_open(fits["a"]))
    ll = old.log_likelihood
    old.log_likelihood = ll.assign_coords(obs_update=("obs", ll["obs_update"].values[::-1]))
    path = tmp_path / "off.nc"
    old.to_netcdf(str(path), engine="h5netcdf")
    with pytest.raises(ValuedynError, match="off-contract"):
        load_fit(path)
