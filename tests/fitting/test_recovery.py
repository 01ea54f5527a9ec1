"""Parameter recovery from simulated multi-seed data, diagnostics, identifiability."""

import json

import numpy as np
import pytest

from valuedyn.fitting import FitConfig, fit_attrs, fit_trajectory, load_fit

from fitting_helpers import LOGISTIC_TRUTH, OVERSHOOT_TRUTH, SETTINGS


def _fit(path, model, out, pooling):
    # the same settings as the CLI round trip, so both reuse one compiled sampler per model
    config = FitConfig(
        trajectory=str(path), model=model, behaviour="unlock:place_table", out=str(out),
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
    """Calibrated recovery, tested as a statistician would: with n (parameter, seed) truths,
    requiring every one inside its 90% interval fails a calibrated posterior most of the
    time (0.9**n). Instead the number inside the 90% intervals must be consistent with 90%
    coverage (at least the 1% quantile of Binomial(n, 0.9)), and no truth may lie further
    from its posterior mean than the Bonferroni bound of a family-wise 1% test (|z| <=
    z_(1 - 0.005/n), normal approximation of each marginal). A calibrated posterior fails
    either check about 2% of the time; a biased or overconfident one fails them fast."""
    from scipy.stats import binom, norm

    n_truths = sum(len(v) for v in truth.values())
    z_max = float(norm.ppf(1.0 - 0.005 / n_truths))
    inside, total, misses = 0, 0, []
    for name, values in truth.items():
        draws = idata.posterior[name].values.reshape(-1, len(values))
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
        z = (values - draws.mean(axis=0)) / draws.std(axis=0)
        assert np.all(np.abs(z) <= z_max), f"{name}: truth {values} is {z} posterior sds from the mean (bound {z_max:.2f})"
        hit = (lo <= values) & (values <= hi)
        inside += int(hit.sum())
        total += hit.size
        misses += [f"{name}[{i}]" for i in np.flatnonzero(~hit)]
    needed = int(binom.ppf(0.01, total, 0.9))
    assert inside >= needed, f"only {inside}/{total} truths inside their 90% intervals (need {needed}); missed {misses}"


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
    for group in ("log_likelihood", "observed_data", "posterior_predictive", "prior_predictive"):
        assert getattr(idata, group)["y"].sizes["obs"] == int(mask.sum())  # masked cells are not stored, nor scored
    assert idata.posterior["level"].dims == ("chain", "draw", "seed", "update")
    y_rep = idata.posterior_predictive["y"].values
    assert np.all(y_rep <= idata.constant_data["exposure"].values[mask]) and np.all(y_rep == np.round(y_rep))
    assert idata.observed_data["y"].attrs["discrete"] == 1
    attrs = fit_attrs(idata)
    assert attrs["model"] == "overshoot" and attrs["behaviour"] == "unlock:place_table"
    assert attrs["observation_model"] == SETTINGS["observation"] and attrs["pooling"] == "none"
    assert attrs["trajectory"] == str(overshoot_file) and len(attrs["trajectory_sha256"]) == 64
    assert attrs["selection"]["seeds"] == [0, 1, 2]
    assert attrs["time_scale_env_steps"] > 0 and "git_commit" in attrs


@pytest.fixture(scope="module")
def hierarchical_fits(logistic_file, overshoot_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hierarchical")
    return {
        "logistic_onset": _fit(logistic_file, "logistic_onset", folder / "logistic.nc", "hierarchical"),
        "overshoot": _fit(overshoot_file, "overshoot", folder / "overshoot.nc", "hierarchical"),
    }


@pytest.mark.parametrize("model, truth", [("logistic_onset", LOGISTIC_TRUTH), ("overshoot", OVERSHOOT_TRUTH)])
def test_hierarchical_pooling_recovers_truth_with_converged_chains(hierarchical_fits, model, truth):
    """Partial pooling (the default) on the same 3 seeds x 120 updates: per-seed truths
    recovered, R-hat and bulk/tail ESS pass, population parameters stored. Divergences are
    not yet always zero under pooling (0-2 of 4000 for logistic_onset, 1-5 for overshoot in
    repeated runs, near extreme per-seed change points and large population scales): the
    fit file then marks the fit untrustworthy, and this test bounds them at 0.5 % of the
    draws, so a geometry regression (hundreds, as before the partial centring) fails."""
    idata = hierarchical_fits[model]
    _assert_recovered(idata, truth)
    diagnostics = json.loads(idata.attrs["diagnostics"])
    assert diagnostics["rhat_max"] <= 1.01 and diagnostics["ess_bulk_min"] >= 400 and diagnostics["ess_tail_min"] >= 400
    n_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    assert diagnostics["divergences"] <= 0.005 * n_draws, diagnostics
    assert int(idata.attrs["trustworthy"]) == int(diagnostics["divergences"] == 0)
    centring = np.asarray(diagnostics["centring"])  # weights in [0, 1], one per parameter and seed
    assert centring.shape == (len(truth), 3) and np.all((0 <= centring) & (centring <= 1))
    for name in truth:
        assert np.all(np.isfinite(idata.posterior[f"{name}_loc"].values))
        assert np.all(idata.posterior[f"{name}_scale"].values > 0)
