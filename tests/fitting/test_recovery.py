"""Parameter recovery from simulated multi-seed data, diagnostics, identifiability."""

import json

import numpy as np
import pytest

from valuedyn.fitting import FitConfig, fit_attrs, fit_trajectory, load_fit

from fitting_helpers import LOGISTIC_TRUTH, OVERSHOOT_TRUTH, SETTINGS


def _fit(path, model, out, pooling):
    # the same settings as the CLI round trip, so both reuse one compiled sampler per model
    config = FitConfig(
        trajectory=str(path), model=model, behavior="unlock:place_table", out=str(out),
        pooling=pooling, seed=3, progress=False, **SETTINGS,
    )
    return load_fit(fit_trajectory(config))


@pytest.fixture(scope="module")
def overshoot_fit(overshoot_file, tmp_path_factory):
    return _fit(overshoot_file, "overshoot", tmp_path_factory.mktemp("fits") / "overshoot.nc", "none")


@pytest.fixture(scope="module")
def logistic_fit(logistic_file, tmp_path_factory):
    return _fit(logistic_file, "logistic_onset", tmp_path_factory.mktemp("fits") / "logistic.nc", "none")


def _assert_recovered(idata, truth):
    for name, values in truth.items():
        draws = idata.posterior[name].values.reshape(-1, len(values))
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
        assert np.all((lo <= values) & (values <= hi)), f"{name}: truth {values} outside 90% intervals {lo}..{hi}"


def _assert_trustworthy(idata):
    diagnostics = json.loads(idata.attrs["diagnostics"])
    assert diagnostics["trustworthy"] == 1, diagnostics["reasons"]
    assert diagnostics["rhat_max"] <= 1.01 and diagnostics["ess_bulk_min"] >= 400 and diagnostics["divergences"] == 0
    assert int(idata.attrs["trustworthy"]) == 1


def test_overshoot_recovers_per_seed_truth(overshoot_fit):
    _assert_recovered(overshoot_fit, OVERSHOOT_TRUTH)
    _assert_trustworthy(overshoot_fit)


def test_logistic_onset_recovers_per_seed_truth(logistic_fit):
    _assert_recovered(logistic_fit, LOGISTIC_TRUTH)
    _assert_trustworthy(logistic_fit)


def test_overshoot_rates_do_not_swap_between_chains(overshoot_fit):
    alpha = overshoot_fit.posterior["alpha"].values  # [chain, draw, seed]
    beta = alpha * overshoot_fit.posterior["ratio"].values
    assert np.all(alpha > beta)  # fast and slow rates keep their labels in every draw
    chain_medians = np.median(alpha, axis=1)  # [chain, seed]
    spread = alpha.reshape(-1, alpha.shape[-1]).std(axis=0)
    assert np.all(np.abs(chain_medians - np.median(chain_medians, axis=0)) < 0.5 * spread)


def test_fit_file_follows_the_contract(overshoot_fit, overshoot_file):
    idata = overshoot_fit
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data", "posterior_predictive"):
        assert group in idata.groups()
    mask = idata.constant_data["mask"].values
    assert idata.log_likelihood["y"].sizes["obs"] == int(mask.sum())  # masked cells are not scored
    assert idata.posterior["level"].dims == ("chain", "draw", "seed", "update")
    y_rep = idata.posterior_predictive["y"].values
    assert np.all(y_rep[..., ~mask] == 0) and np.all(y_rep <= idata.constant_data["exposure"].values)
    assert idata.observed_data["y"].dtype.kind == "i"
    attrs = fit_attrs(idata)
    assert attrs["model"] == "overshoot" and attrs["behavior"] == "unlock:place_table"
    assert attrs["observation_model"] == "binomial" and attrs["pooling"] == "none"
    assert attrs["trajectory"] == str(overshoot_file) and len(attrs["trajectory_sha256"]) == 64
    assert attrs["selection"]["seeds"] == [0, 1, 2]
    assert attrs["time_scale_env_steps"] > 0 and "git_commit" in attrs
