"""The inference core, piece by piece: observation densities, the centring maths, the
pooled mass matrix, and a small fit of every registered model on data simulated from it."""

import numpy as np
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy

from valuedyn.fitting._model import (
    FitData,
    build_numpyro_model,
    centring_weights,
    parameter_spaces,
    recentre,
)
from valuedyn.fitting._nuts import pooled_inverse_mass
from valuedyn.fitting._observation import OBSERVATION_MODELS

N_SEEDS, N_UPDATES = 3, 25


def _cells(rng, family):
    mask = rng.random((N_SEEDS, N_UPDATES)) > 0.2
    exposure = rng.integers(20, 60, (N_SEEDS, N_UPDATES)).astype(np.float64)
    mean = rng.uniform(0.05, 0.9, (N_SEEDS, N_UPDATES)) if family != "count" else rng.uniform(0.02, 6.0, (N_SEEDS, N_UPDATES))
    if family == "binomial":
        y = rng.binomial(exposure.astype(int), mean).astype(np.float64)
    elif family == "count":
        y = rng.poisson(exposure * mean * rng.gamma(2.0, 0.5, mean.shape)).astype(np.float64)
    else:
        y = np.exp(np.log(mean) + 0.3 * rng.standard_normal(mean.shape))
    return y, exposure, mask


def _random_params(rng, name):
    if name == "negbin":
        return {"dispersion": float(np.exp(rng.uniform(np.log(1e-4), np.log(3.0))))}
    if name == "lognormal":
        return {"sigma": float(rng.uniform(0.1, 1.0))}
    return {}


@pytest.mark.parametrize("name", sorted(OBSERVATION_MODELS))
def test_log_kernel_differences_match_numpyro_log_prob(name):
    """The sampler's log kernel drops data-only constants, so between two random parameter
    settings its masked sum must change exactly as numpyro's ``log_prob`` does (computed in
    float64, where the textbook negbin form is accurate)."""
    observation = OBSERVATION_MODELS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    y, exposure, mask = _cells(rng, observation.family)
    for _ in range(5):
        settings = [(rng.uniform(0.02, 0.9, y.shape) if observation.family != "count" else rng.uniform(0.02, 6.0, y.shape),
                     _random_params(rng, name)) for _ in range(2)]
        kernel = [float(jnp.sum(observation.log_kernel(jnp.asarray(y, jnp.float32), jnp.asarray(m, jnp.float32),
                                                       jnp.asarray(exposure, jnp.float32), jnp.asarray(mask),
                                                       {k: jnp.float32(v) for k, v in p.items()})))
                  for m, p in settings]
        with jax.enable_x64(True):
            reference = []
            for m, p in settings:
                d = observation.distribution(jnp.asarray(m), jnp.asarray(exposure), jnp.asarray(mask),
                                             {k: jnp.float64(v) for k, v in p.items()})
                log_prob = d.log_prob(observation.fill(jnp.asarray(y), jnp.asarray(mask)))
                reference.append(float(jnp.sum(jnp.where(jnp.asarray(mask), log_prob, 0.0))))
        expected = reference[0] - reference[1]
        assert kernel[0] - kernel[1] == pytest.approx(expected, abs=2e-3 + 1e-5 * abs(expected)), settings


def test_negbin_kernel_is_smooth_and_tends_to_poisson():
    """At nearly Poisson dispersions the negbin kernel must stay a smooth function of the
    dispersion (float32 noise here is what stalled the sampler) and reach the Poisson kernel."""
    rng = np.random.default_rng(0)
    _, exposure, mask = _cells(rng, "count")
    mean = rng.uniform(0.5, 6.0, exposure.shape)
    y = rng.poisson(exposure * mean).astype(np.float64)  # Poisson data: the dispersion wanders towards 0
    args = (jnp.asarray(y, jnp.float32), jnp.asarray(mean, jnp.float32), jnp.asarray(exposure, jnp.float32), jnp.asarray(mask))
    negbin, poisson = OBSERVATION_MODELS["negbin"], OBSERVATION_MODELS["poisson"]

    def total(log_dispersion):
        return jnp.sum(negbin.log_kernel(*args, {"dispersion": jnp.exp(log_dispersion)}))

    grid = np.linspace(np.log(1e-5), np.log(1e-1), 100)
    values = np.asarray(jax.vmap(total)(jnp.asarray(grid, jnp.float32)), np.float64)
    with jax.enable_x64(True):
        y64 = negbin.fill(jnp.asarray(y), jnp.asarray(mask))
        exact = np.array([
            float(jnp.sum(jnp.where(jnp.asarray(mask), negbin.distribution(
                jnp.asarray(mean, jnp.float64), jnp.asarray(exposure), jnp.asarray(mask), {"dispersion": np.exp(g)}
            ).log_prob(y64), 0.0)))
            for g in grid
        ])
    # kernel and density differ by a data-only constant; what is left is float32 rounding
    # of a sum near 1e4 (~1e-3), not the 1-50 nats of noise of the textbook form
    offset = values - exact
    assert np.max(np.abs(offset - np.median(offset))) < 1e-2, np.ptp(offset)
    assert float(total(jnp.log(1e-9))) == pytest.approx(float(jnp.sum(poisson.log_kernel(*args, {}))), abs=1e-2)


# ------------------------------------------------------------------ centring
def _hierarchy_data(centring):
    rng = np.random.default_rng(1)
    y = rng.binomial(40, 0.3, (N_SEEDS, N_UPDATES)).astype(np.float32)
    return FitData(
        y=jnp.asarray(y), exposure=jnp.full(y.shape, 40.0, jnp.float32), mask=jnp.ones(y.shape, bool),
        tau=jnp.linspace(0.0, 1.0, N_UPDATES, dtype=jnp.float32), level_scale=jnp.float32(1.0),
        centring=jnp.asarray(centring, jnp.float32),
    )


def test_centring_changes_coordinates_not_the_posterior():
    """For every centring weight w the log density of the same hierarchical values u,
    corrected by the Jacobian of z_w -> u (scale^(1 - w) per parameter and seed), is the
    same; and recentre moves a point between weights without changing u."""
    from valuedyn.models import get_model

    model = get_model("logistic_onset")
    spaces = parameter_spaces(model)
    numpyro_model = build_numpyro_model(model, OBSERVATION_MODELS["binomial"], "hierarchical", "level")
    rng = np.random.default_rng(2)
    n_params = len(spaces)
    zero = np.zeros((n_params, N_SEEDS), np.float32)
    point = {}
    for s in spaces:
        point[f"{s.name}_loc"] = jnp.float32(s.loc_mean + 0.3 * rng.standard_normal())
        point[f"{s.name}_scale"] = jnp.float32(np.log(0.3 * s.loc_sd) + 0.3 * rng.standard_normal())
        point[f"{s.name}_z"] = jnp.asarray(rng.standard_normal(N_SEEDS), jnp.float32)
    adjusted = []
    for weight in (0.0, 0.4, 1.0):
        weights = np.full((n_params, N_SEEDS), weight, np.float32)
        weights[0, 0] = 0.7  # weights differ between parameters and seeds
        moved = recentre(spaces, point, zero, weights)
        back = recentre(spaces, moved, weights, zero)
        for name in point:
            np.testing.assert_allclose(np.asarray(back[name]), np.asarray(point[name]), rtol=1e-5, atol=1e-5)
        energy = float(potential_energy(numpyro_model, (_hierarchy_data(weights),), {}, moved))
        log_jacobian = sum(float(np.sum((1.0 - weights[i]) * point[f"{s.name}_scale"])) for i, s in enumerate(spaces))
        adjusted.append(energy + log_jacobian)
    np.testing.assert_allclose(adjusted, adjusted[0], rtol=1e-5, atol=1e-3)


def test_centring_weights_are_the_normal_hierarchy_optimum():
    sigma2 = np.array([[0.01, 1.0, 100.0]])
    tau = 0.5
    fixed = centring_weights(sigma2, np.full((1, 64), np.log(tau)))  # a known scale
    np.testing.assert_allclose(fixed[0], tau**2 / (tau**2 + sigma2[0]), rtol=1e-5)
    # an uncertain scale: the regression slope of log(sigma2 + tau^2) on log tau, halved
    log_tau = np.random.default_rng(3).normal(np.log(tau), 0.5, (1, 4000))
    weights = centring_weights(sigma2, log_tau)
    for seed, s2 in enumerate(sigma2[0]):
        slope = np.polyfit(log_tau[0], np.log(s2 + np.exp(2 * log_tau[0])), 1)[0]
        assert weights[0, seed] == pytest.approx(np.clip(slope / 2, 0, 1), abs=1e-4)
    assert weights[0, 0] > 0.9 and weights[0, 2] < 0.05  # pinned-down seeds centred, vague ones not


def test_pooled_mass_matrix_is_the_mean_within_chain_covariance():
    rng = np.random.default_rng(4)
    covariance = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])
    draws = rng.multivariate_normal(np.zeros(3), covariance, (4, 2000))
    draws += rng.normal(0.0, 50.0, (4, 1, 3))  # chains sitting far apart must not inflate it
    pooled = pooled_inverse_mass(draws, dense=True)
    within = np.mean([np.cov(chain, rowvar=False) for chain in draws], axis=0)
    n = draws.shape[0] * draws.shape[1]
    np.testing.assert_allclose(pooled, n / (n + 5) * within + 1e-3 * 5 / (n + 5) * np.eye(3), rtol=1e-4)
    np.testing.assert_allclose(pooled, covariance, atol=0.1)
    diagonal = pooled_inverse_mass(draws, dense=False)
    np.testing.assert_allclose(diagonal, np.diag(pooled), rtol=1e-4)
