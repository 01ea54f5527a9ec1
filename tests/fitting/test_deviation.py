"""Structured deviations (``--deviation ou``, valuedyn.fitting.inference._deviation): the OU
path and its law, the innovation-integrated log-likelihood against brute-force integration,
the timescale's bounds, the refusal to compare across deviation settings, and NUTS fits of
simulated curves (issue 30 points 1, 3 and 6):

- curves = logistic_onset mechanism + OU deviation on the logit scale, Binomial counts: over
  a few repetitions the deviation fit's 90 % intervals cover the true mechanism parameters
  at a clearly higher rate than the smooth fit's (benchmarks/deviation_coverage.py runs 50+);
- smooth curves: the deviation's size shrinks towards 0 and the mechanism's estimates agree
  with the smooth fit's.

Every NUTS fit of this module has one shape, so each of the two samplers compiles once.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.fitting.inference._deviation import (
    DEVIATION_SD_PRIOR,
    DeviatedObservation,
    deviation_attrs,
    deviation_time_bounds,
    innovation_integrated_log_lik,
    inv_link,
    link,
    mechanism_shares,
    ou_path,
    pointwise_log_likelihood,
    replicate_mean,
    with_deviation,
)
from valuedyn.fitting.inference._observation import OBSERVATION_MODELS

# ---------------------------------------------------------------- simulated data
#: one truth for every seed (complete pooling keeps the fits small); an onset mid-window
TRUTH = {"t0": 0.45, "k": 14.0, "floor": 0.05, "ceiling": 0.6}
N_SEEDS, N_UPDATES, EPISODES = 3, 30, 200
#: the simulated deviation: size (logit units) and timescale (tau units)
TRUE_SD, TRUE_TIME = 0.6, 0.15
#: repetitions in the suite (the benchmark runs 50+)
REPETITIONS = 3
SETTINGS = dict(chains=2, warmup=300, draws=300, min_draws=0)


def simulate(seed: int, sd: float = TRUE_SD, time: float = TRUE_TIME, n_updates: int = N_UPDATES):
    """A Selection of Binomial unlock counts: logit = logit(logistic_onset level) + an OU
    deviation of size ``sd`` and timescale ``time``; and the deviation [S, U]."""
    from valuedyn.fitting.inference._simulate import simulate_deviated_selection
    from valuedyn.models import get_model

    return simulate_deviated_selection(get_model("logistic_onset"), TRUTH, n_seeds=N_SEEDS, n_updates=n_updates,
                                       episodes=EPISODES, deviation_sd=sd, deviation_time=time, seed=seed)


def fit(selection, deviation: str, seed: int = 0):
    """A NUTS fit (complete pooling, Binomial) of ``selection``; returns the Inference."""
    from valuedyn.fitting.inference._fit import get_model, infer, settings_from
    from valuedyn.fitting.settings import FitConfig

    config = FitConfig(trajectory="-", model="logistic_onset", behaviour="unlock:place_table", out="-", **SETTINGS)
    observation = with_deviation(OBSERVATION_MODELS["binomial"], deviation)
    return infer(get_model("logistic_onset"), observation, "complete", selection, settings_from(config), seed=seed,
                 progress=False, n_prior=100 if deviation != "none" else 0)


def covers(idata, name: str, truth: float, level: float = 0.9) -> bool:
    values = np.asarray(idata.posterior[name]).reshape(-1)  # complete pooling: every seed's column is the same
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return bool(low <= truth <= high)


# ---------------------------------------------------------------- the process and its bounds (no sampling)
def test_ou_path_is_the_exact_recursion_on_an_irregular_grid():
    rng = np.random.default_rng(0)
    tau = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 18)]))
    z = rng.standard_normal((3, tau.size))
    sd, time = 0.7, 0.12
    expected = np.zeros_like(z)
    expected[:, 0] = sd * z[:, 0]
    for u in range(1, tau.size):
        rho = np.exp(-(tau[u] - tau[u - 1]) / time)
        expected[:, u] = rho * expected[:, u - 1] + sd * np.sqrt(1 - rho**2) * z[:, u]
    path = np.asarray(ou_path(jnp.asarray(z, jnp.float32), jnp.asarray(tau, jnp.float32), sd, time))
    np.testing.assert_allclose(path, expected, atol=2e-5)


def test_the_path_is_stationary_with_the_ou_correlation():
    tau = jnp.asarray(np.array([0.0, 0.05, 0.3, 0.31, 0.6]), jnp.float32)
    z = jax.random.normal(jax.random.PRNGKey(1), (40000, 5))
    path = np.asarray(ou_path(z, tau, 0.5, 0.2))
    np.testing.assert_allclose(path.std(axis=0), 0.5, rtol=0.03)
    for u in range(1, 5):
        correlation = np.corrcoef(path[:, u - 1], path[:, u])[0, 1]
        assert abs(correlation - np.exp(-(float(tau[u]) - float(tau[u - 1])) / 0.2)) < 0.02


def test_the_timescale_lies_between_three_updates_and_a_quarter_of_the_window_or_32_updates():
    selection, _ = simulate(0, n_updates=41)
    low, high = deviation_time_bounds(selection)
    # 41 updates: the window (each update's span included) is 41/40 of tau's range
    assert low == pytest.approx(3 * (41 / 40) / 41, rel=1e-5)
    assert high == pytest.approx(0.25 * 41 / 40, rel=1e-5)
    # a long run: at most 32 updates, however long the window (a slower change is the mechanism's)
    long, _ = simulate(0, n_updates=400)
    low, high = deviation_time_bounds(long)
    assert low == pytest.approx(3 / 399, rel=1e-5) and high == pytest.approx(32 / 399, rel=1e-5)
    # a short run: the longest timescale is still twice the shortest
    short, _ = simulate(0, n_updates=8)
    low, high = deviation_time_bounds(short)
    assert high == pytest.approx(2 * low)


def test_blocks_of_updates_raise_the_shortest_timescale_to_the_widest_block():
    selection, _ = simulate(0, n_updates=5)

    class Blocked:  # what an aggregated selection carries (valuedyn.fitting.inference._select.aggregate_blocks)
        tau = selection.tau
        edges = np.array([0.0, 0.01, 0.03, 0.1, 0.4, 1.0])
        blocks = {"n_updates": 100}

    low, high = deviation_time_bounds(Blocked())
    assert low == pytest.approx(0.6) and high == pytest.approx(1.2)


def test_an_unknown_deviation_is_refused_and_none_is_the_observation_itself():
    binomial = OBSERVATION_MODELS["binomial"]
    assert with_deviation(binomial, "none") is binomial
    deviated = with_deviation(binomial, "ou")
    assert isinstance(deviated, DeviatedObservation) and deviated.name == "binomial"
    assert [n for n, _ in deviated.parameters] == ["deviation_sd", "deviation_time_position"]
    with pytest.raises(ValuedynError, match="--deviation must be one of none, ou; received 'gp'"):
        with_deviation(binomial, "gp")


# ---------------------------------------------------------------- the log-likelihood for comparisons
def _one_seed(level, sd, time, deviation, tau, exposure, extra):
    """(one draw's constrained sites, the data's tau / exposure / mask) of one seed on the grid
    ``tau``: a constant ``level``, the deviation's size, timescale and path ``deviation``, the
    observation parameters ``extra``."""
    from types import SimpleNamespace

    cells = len(tau)
    constrained = {"level": jnp.full((1, cells), level, jnp.float32), "deviation_sd": jnp.float32(sd),
                   "deviation_time": jnp.float32(time), "deviation_time_position": jnp.float32(0.5),
                   "deviation": jnp.asarray([deviation], jnp.float32),
                   **{k: jnp.float32(v) for k, v in extra.items()}}
    data = SimpleNamespace(tau=jnp.asarray(tau, jnp.float32), exposure=jnp.full((1, cells), exposure, jnp.float32),
                           mask=jnp.ones((1, cells), bool))
    return constrained, data


def _brute_force(observation, y, exposure, level, centre, variance, params):
    """log of the integral over x of p(y | inv_link(link(level) + x)) Normal(x; centre, variance), on a fine grid."""
    grid = np.linspace(centre - 9 * np.sqrt(variance), centre + 9 * np.sqrt(variance), 20001)
    eta = float(link(observation.family, level, xp=np)) + grid
    mean = 1 / (1 + np.exp(-eta)) if observation.family == "binomial" else np.exp(eta)
    mask = np.ones_like(grid, bool)
    log_p = np.asarray(observation.distribution(jnp.asarray(mean, jnp.float32), jnp.full(grid.shape, exposure, jnp.float32),
                                                jnp.asarray(mask), params).log_prob(jnp.full(grid.shape, y, jnp.float32)),
                       np.float64)
    log_normal = -0.5 * (np.log(2 * np.pi * variance) + (grid - centre) ** 2 / variance)
    values = log_p + log_normal
    peak = values.max()
    return peak + np.log(np.trapezoid(np.exp(values - peak), grid))


@pytest.mark.parametrize("name, y, exposure, level, extra", [
    ("binomial", 150.0, 400.0, 0.3, {}),  # a likelihood far narrower than the innovation
    ("binomial", 3.0, 20.0, 0.5, {}),
    ("betabinomial", 40.0, 100.0, 0.6, {"dispersion": 0.05}),
    ("negbin", 310.0, 100.0, 2.0, {"dispersion": 0.3}),
    ("poisson", 12.0, 10.0, 0.8, {}),
    ("lognormal", 1.7, 1.0, 2.2, {"sigma": 0.2}),
])
def test_the_innovation_integrated_log_likelihood_matches_brute_force_integration(name, y, exposure, level, extra):
    observation = with_deviation(OBSERVATION_MODELS[name], "ou")
    sd, time = 0.8, 0.1
    tau = np.array([0.0, 0.05])
    previous = 0.4  # the deviation one cell earlier
    constrained, data = _one_seed(level, sd, time, [previous, 0.0], tau, exposure, extra)
    y_filled = jnp.full((1, 2), y, jnp.float32)
    value = np.asarray(innovation_integrated_log_lik(observation, constrained, data, y_filled))
    params = {k: jnp.float32(v) for k, v in extra.items()}
    rho = np.exp(-0.05 / time)
    first = _brute_force(OBSERVATION_MODELS[name], y, exposure, level, 0.0, sd**2, params)
    second = _brute_force(OBSERVATION_MODELS[name], y, exposure, level, rho * previous, sd**2 * (1 - rho**2), params)
    assert value[0, 0] == pytest.approx(first, abs=2e-3)
    assert value[0, 1] == pytest.approx(second, abs=2e-3)
    # a plain fit's stored log-likelihood is the density given the level (no integration)
    plain = np.asarray(pointwise_log_likelihood(OBSERVATION_MODELS[name], constrained, data, y_filled))
    assert not np.allclose(plain, value, atol=1e-3)


@pytest.mark.parametrize("name, extra", [("binomial", {}), ("negbin", {"dispersion": 0.3}),
                                         ("lognormal", {"sigma": 0.2})])
def test_the_forecast_log_likelihood_integrates_the_deviation_relaxed_over_the_gap(name, extra):
    """A future cell (leave-future-out) predicted 0.25 tau after the last fitted one: the
    deviation's forecast mean (the mode the fit gives there) with the OU variance
    sd^2 (1 - exp(-2 gap / time)), integrated out."""
    from valuedyn.fitting.inference._deviation import forecast_log_lik

    observation = with_deviation(OBSERVATION_MODELS[name], "ou")
    sd, time, level, exposure = 0.8, 0.1, 0.4 if name == "binomial" else 3.0, 100.0
    y = {"binomial": 30.0, "negbin": 250.0, "lognormal": 3.5}[name]
    tau = np.array([0.0, 0.05, 0.3])
    forecast_mean = 0.3 * np.exp(-0.25 / time)
    constrained, data = _one_seed(level, sd, time, [0.1, 0.3, forecast_mean], tau, exposure, extra)
    value = np.asarray(forecast_log_lik(observation, constrained, data, jnp.full((1, 3), y, jnp.float32),
                                        jnp.asarray([0.05], jnp.float32)))
    params = {k: jnp.float32(v) for k, v in extra.items()}
    variance = sd**2 * (1 - np.exp(-2 * 0.25 / time))
    assert value[0, 2] == pytest.approx(_brute_force(OBSERVATION_MODELS[name], y, exposure, level, forecast_mean,
                                                     variance, params), abs=2e-3)
    # a fitted cell (no gap) is scored at its mode: the deviation is known there
    at_mode = _brute_force(OBSERVATION_MODELS[name], y, exposure, level, 0.3, 1e-8, params)
    assert value[0, 1] == pytest.approx(at_mode, abs=2e-2)


@pytest.mark.parametrize("name", ["poisson", "negbin", "binomial", "betabinomial", "lognormal"])
def test_the_laplace_marginal_matches_monte_carlo_over_ou_paths(name):
    """The likelihood NUTS samples under a deviation, log p(y | theta) with every seed's
    path integrated out by the Laplace approximation, against a Monte Carlo average over
    paths drawn from the OU prior (an irregular grid, a masked cell, small counts)."""
    from collections import namedtuple

    from numpyro import handlers

    from valuedyn.fitting.inference._deviation import laplace_deviation

    rng = np.random.default_rng(11)
    n_seeds, n_updates, sd, bounds = 2, 10, 0.4, (0.05, 0.5)
    tau = jnp.asarray(np.sort(rng.uniform(0.0, 1.0, n_updates)), jnp.float32)
    observation = with_deviation(OBSERVATION_MODELS[name], "ou")
    level = 0.3 if observation.family == "binomial" else 1.5
    exposure = rng.integers(5, 40, (n_seeds, n_updates)).astype(np.float32)
    if observation.family == "binomial":
        y = rng.binomial(exposure.astype(int), level).astype(np.float32)
    elif observation.family == "count":
        y = rng.poisson(level * exposure).astype(np.float32)
    else:
        y = np.exp(np.log(level) + 0.3 * rng.standard_normal(exposure.shape)).astype(np.float32)
    mask = np.ones((n_seeds, n_updates), bool)
    mask[0, 3] = False
    data = namedtuple("Data", "y exposure mask tau deviation_time_bounds")(
        jnp.asarray(y), jnp.asarray(exposure), jnp.asarray(mask), tau, jnp.asarray(bounds, jnp.float32))
    params = {"deviation_sd": jnp.float32(sd), "deviation_time_position": jnp.float32(0.5),
              "dispersion": jnp.float32(0.3), "sigma": jnp.float32(0.3)}
    mean = jnp.full((n_seeds, n_updates), level, jnp.float32)
    with handlers.seed(rng_seed=0):
        laplace = float(laplace_deviation(observation, mean, params, data))
    time = bounds[0] * math.sqrt(bounds[1] / bounds[0])
    z = jax.random.normal(jax.random.PRNGKey(1), (100_000, n_seeds, n_updates))
    paths = jax.vmap(lambda zz: ou_path(zz, tau, sd, time))(z)
    eta = link(observation.family, mean)
    # the sampler's kernel: less the same data-only constant per cell
    reference = observation.reference_log_kernel(data.y, data.exposure, data.mask)
    log_lik = jax.vmap(lambda d: (observation.log_kernel(data.y, inv_link(observation.family, eta + d), data.exposure,
                                                         data.mask, params) - reference).sum(-1))(paths)  # [n, S]
    monte_carlo = float(jnp.sum(jax.scipy.special.logsumexp(log_lik, axis=0) - math.log(z.shape[0])))
    assert abs(laplace - monte_carlo) < 0.15, (laplace, monte_carlo)


def test_replicates_of_a_deviation_fit_are_one_step_ahead_and_a_plain_fit_s_are_as_they_were():
    rng = np.random.default_rng(0)
    level = np.full((4000, 1, 3), 0.5)
    deviation = np.tile(np.array([0.0, 1.0, -1.0]), (4000, 1, 1))

    class Data:
        tau = np.array([0.0, 0.1, 0.2])

    constrained = {"level": level, "deviation": deviation, "deviation_sd": np.full(4000, 0.5),
                   "deviation_time": np.full(4000, 0.1)}
    plain = replicate_mean(OBSERVATION_MODELS["binomial"], constrained, Data(), rng)
    assert plain is level and rng.bit_generator.state == np.random.default_rng(0).bit_generator.state
    mean = replicate_mean(with_deviation(OBSERVATION_MODELS["binomial"], "ou"), constrained, Data(), rng)
    x = link("binomial", mean, xp=np)  # = the innovation (link(0.5) = 0)
    rho = np.exp(-1.0)
    np.testing.assert_allclose(x.mean(axis=0)[0], [0.0, 0.0, rho * 1.0], atol=0.03)
    np.testing.assert_allclose(x.std(axis=0)[0], [0.5, 0.5 * np.sqrt(1 - rho**2), 0.5 * np.sqrt(1 - rho**2)], rtol=0.05)


def test_the_mechanism_share_is_the_level_variation_over_both():
    level = np.array([[[0.1, 0.5, 0.9, 0.5]]])  # [n=1, S=1, U=4]
    eta = link("binomial", level, xp=np)
    assert mechanism_shares("binomial", level, np.zeros_like(level), np.ones((1, 4), bool))[0, 0] == pytest.approx(1.0)
    deviation = np.array([[[0.0, 1.0, 0.0, -1.0]]])
    share = mechanism_shares("binomial", level, deviation, np.ones((1, 4), bool))[0, 0]
    assert share == pytest.approx(eta.var(ddof=1) / (eta.var(ddof=1) + deviation.var(ddof=1)))


def test_compare_refuses_fits_under_different_deviations(tmp_path):
    from valuedyn.fitting.judge._compare import _same_deviation

    _same_deviation([(tmp_path / "a.nc", {"deviation": "ou"}), (tmp_path / "b.nc", {"deviation": "ou"})])
    _same_deviation([(tmp_path / "a.nc", {}), (tmp_path / "b.nc", {"deviation": "none"})])  # a file from before: none
    with pytest.raises(ValuedynError, match="compare needs fits under the same deviation"):
        _same_deviation([(tmp_path / "a.nc", {"deviation": "none"}), (tmp_path / "b.nc", {"deviation": "ou"})])


def test_a_conditions_model_takes_the_same_deviation():
    """Conditions fits share observe_solution: their model gets the deviation's sites and a
    finite log density (no sampling here; test_conditions.py samples conditions fits)."""
    from numpyro import handlers
    from numpyro.infer.util import log_density

    from valuedyn.fitting.analyses._conditions import ConditionData, build_conditions_model
    from valuedyn.fitting.inference._model import fit_data, observable_for
    from valuedyn.models import get_model

    model = get_model("logistic_onset")
    selection, _ = simulate(0)
    base = fit_data(selection, len(model.parameters), "ou")
    data = ConditionData(*base, condition=jnp.asarray([0, 0, 1], jnp.int32))
    observation = with_deviation(OBSERVATION_MODELS["binomial"], "ou")
    numpyro_model = build_conditions_model(model, observation, observable_for(model, "unlock"), 2)
    trace = handlers.trace(handlers.seed(numpyro_model, 0)).get_trace(data)
    assert "deviation_z" not in trace  # at inference the path is integrated out (Laplace)
    assert trace["deviation"]["value"].shape == (N_SEEDS, N_UPDATES)
    simulated = handlers.trace(handlers.seed(numpyro_model, 0)).get_trace(data, observe=False)
    assert simulated["deviation_z"]["value"].shape == (N_SEEDS, N_UPDATES)  # simulating draws it
    low, high = np.asarray(base.deviation_time_bounds)
    assert low <= float(trace["deviation_time"]["value"]) <= high
    value, _ = log_density(numpyro_model, (data,), {}, {name: site["value"] for name, site in trace.items()
                                                       if site["type"] == "sample"})
    assert np.isfinite(float(value))


# ---------------------------------------------------------------- NUTS on simulated curves
@pytest.fixture(scope="module")
def coverage_runs():
    """For each repetition: (covered by the deviation fit, covered by the smooth fit) of t0
    and k, and the deviation fit's Inference."""
    runs = []
    for repetition in range(REPETITIONS):
        selection, _ = simulate(100 + repetition)
        deviated, smooth = fit(selection, "ou", seed=repetition), fit(selection, "none", seed=repetition)
        runs.append({
            "deviation": [covers(deviated.idata, name, TRUTH[name]) for name in ("t0", "k")],
            "smooth": [covers(smooth.idata, name, TRUTH[name]) for name in ("t0", "k")],
            "inference": deviated,
        })
    return runs


def test_the_deviation_fit_covers_the_mechanism_where_the_smooth_fit_does_not(coverage_runs):
    deviation_rate = np.mean([r["deviation"] for r in coverage_runs])
    smooth_rate = np.mean([r["smooth"] for r in coverage_runs])
    print(f"90% coverage of t0 and k over {REPETITIONS} repetitions: deviation {deviation_rate:.2f}, smooth {smooth_rate:.2f}")
    assert deviation_rate >= 2 / 3
    assert deviation_rate > smooth_rate


def test_a_deviation_fit_stores_its_process_and_says_what_its_log_likelihood_is(coverage_runs):
    inference = coverage_runs[0]["inference"]
    idata = inference.idata
    posterior = idata.posterior
    assert posterior["deviation"].dims[-2:] == ("seed", "update")
    assert "deviation_z" not in posterior  # the per-update coordinates are not stored
    low, high = deviation_time_bounds(simulate(0)[0])
    assert float(posterior["deviation_time"].min()) >= low * 0.999 and float(posterior["deviation_time"].max()) <= high * 1.001
    # the simulated deviation (sd 0.6) is found: the posterior of its size excludes 0
    assert float(np.quantile(posterior["deviation_sd"], 0.05)) > 0.2
    assert {"deviation_sd", "deviation_time"} <= set(inference.diagnostics["per_parameter"])
    attrs = deviation_attrs(idata, with_deviation(OBSERVATION_MODELS["binomial"], "ou"))
    assert attrs["loglik_kind"] == "innovation_integrated"
    summary = json.loads(attrs["deviation_summary"])
    assert len(summary["mechanism_share"]) == N_SEEDS and all(0 < s < 1 for s in summary["mechanism_share"])
    # the stored log-likelihood is the innovation-integrated one of the stored draws
    assert idata.log_likelihood["y"].shape[-1] == N_SEEDS * N_UPDATES


@pytest.fixture(scope="module")
def smooth_data_fits():
    selection, _ = simulate(7, sd=0.0)
    return fit(selection, "ou", seed=3), fit(selection, "none", seed=3)


def test_on_smooth_curves_the_deviation_shrinks_and_the_mechanism_agrees(smooth_data_fits):
    deviated, smooth = smooth_data_fits
    sd = np.asarray(deviated.idata.posterior["deviation_sd"]).reshape(-1)
    prior_mass = float(DEVIATION_SD_PRIOR.cdf(0.1))
    # the posterior puts far more of its mass near 0 than the prior does
    assert np.mean(sd < 0.1) > 2.5 * prior_mass, (np.mean(sd < 0.1), prior_mass)
    for name in ("t0", "k", "ceiling"):
        a = np.asarray(deviated.idata.posterior[name]).reshape(-1)
        b = np.asarray(smooth.idata.posterior[name]).reshape(-1)
        assert abs(a.mean() - b.mean()) < 0.5 * np.hypot(a.std(), b.std()), name
        # as precise as the smooth fit, or a little less (a deviation not exactly 0 widens the late level's interval)
        assert 0.7 < a.std() / b.std() < 2.0, name


def test_a_deviation_fit_s_prior_predictive_draws_paths_from_the_ou_prior(coverage_runs):
    """The prior groups of a deviation fit: every draw's deviation is a path of the OU prior
    (its spread matches the drawn size), not the data-conditioned mode the posterior stores."""
    idata = coverage_runs[0]["inference"].idata
    prior = idata.prior
    d = np.asarray(prior["deviation"]).reshape((-1,) + np.asarray(prior["deviation"]).shape[-2:])
    sd = np.asarray(prior["deviation_sd"]).reshape(-1)
    # the standardised paths have unit spread (n draws x S x U cells)
    standardised = d / np.maximum(sd, 1e-9)[:, None, None]
    assert 0.8 < float(np.std(standardised)) < 1.2
    posterior = np.asarray(idata.posterior["deviation"]).reshape(d.shape[:0] + (-1,) + d.shape[-2:])
    # the posterior's deviations follow the data (their mean path is the simulated one's
    # size); the prior's average out across draws
    assert np.mean(np.abs(d.mean(axis=0))) < 0.5 * np.mean(np.abs(posterior.mean(axis=0)))
