"""Calibration of the SGLD local-learning-coefficient estimator on models whose LLC is known.

Tolerance stated once: the estimate must be within 20% of the analytic value.
"""

import jax
import jax.numpy as jnp
import pytest

from valuedyn import ValuedynError
from valuedyn.data._llc import SGLDSettings, estimate_llc, reduced_rank_regression_rlct, sgld

TOLERANCE = 0.20
# eps * n * beta * (largest loss curvature) must be << 1; burn-in covers the mixing time.
SETTINGS = SGLDSettings(step_size=1e-4, num_steps=2000, num_burnin=500, num_chains=8, gamma=1.0, batch_size=200)
NUM_POINTS = 1000


def _linear_regression(num_params: int, seed: int = 0):
    kx, kw, ke = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (NUM_POINTS, num_params))
    y = x @ jax.random.normal(kw, (num_params,)) + 0.5 * jax.random.normal(ke, (NUM_POINTS,))
    w_hat = jnp.linalg.lstsq(x, y)[0]  # the empirical minimum: the LLC is measured at a minimum

    def loss(w, batch):
        return 0.5 * jnp.mean(jnp.square(batch["y"] - batch["x"] @ w))

    return loss, w_hat, {"x": x, "y": y}


def _deep_linear_network(num_inputs: int, num_hidden: int, num_outputs: int, seed: int = 0):
    """Two-layer linear network, true map of full rank ``num_hidden`` (a singular model)."""
    kx, ka, kb, ke = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = jax.random.normal(kx, (NUM_POINTS, num_inputs))
    true_map = jax.random.normal(kb, (num_outputs, num_hidden)) @ jax.random.normal(ka, (num_hidden, num_inputs))
    y = x @ true_map.T + 0.5 * jax.random.normal(ke, (NUM_POINTS, num_outputs))
    # Reduced-rank least squares in closed form: project the OLS fit on its top singular directions.
    ols = jnp.linalg.lstsq(x, y)[0]
    right = jnp.linalg.svd(x @ ols, full_matrices=False)[2][:num_hidden].T
    params = {"first": (ols @ right).T, "second": right}

    def loss(p, batch):
        prediction = batch["x"] @ p["first"].T @ p["second"].T
        return 0.5 * jnp.mean(jnp.sum(jnp.square(batch["y"] - prediction), axis=-1))

    return loss, params, {"x": x, "y": y}


def test_aoyagi_formula_matches_known_special_cases():
    # Full-rank-H truth, H < M, N: minimally singular, LLC = dim(rank-H matrices) / 2.
    assert reduced_rank_regression_rlct(3, 2, 3, 2) == pytest.approx((2 * (3 + 3) - 2 * 2) / 2)
    assert reduced_rank_regression_rlct(4, 1, 4, 1) == pytest.approx((4 + 4 - 1) / 2)
    # Hidden layer wider than needed to be the full matrix space: LLC = M N / 2.
    assert reduced_rank_regression_rlct(2, 5, 2, 2) == pytest.approx(2.0)
    with pytest.raises(ValuedynError, match="rank"):
        reduced_rank_regression_rlct(3, 2, 3, 3)


def test_llc_recovers_regular_regression():
    loss, w_hat, data = _linear_regression(num_params=6)
    estimate = estimate_llc(loss, w_hat, data, jax.random.PRNGKey(1), SETTINGS)
    assert float(estimate.llc) == pytest.approx(6 / 2, rel=TOLERANCE)
    assert estimate.llc_chains.shape == (SETTINGS.num_chains,)
    assert estimate.trace.shape == (SETTINGS.num_steps,)
    assert 0 < float(estimate.llc_se) < 0.5


def test_llc_recovers_singular_deep_linear_network():
    loss, params, data = _deep_linear_network(3, 2, 3)
    truth = reduced_rank_regression_rlct(3, 2, 3, 2)  # 4.0, whereas d / 2 = 6 for 12 parameters
    estimate = estimate_llc(loss, params, data, jax.random.PRNGKey(2), SETTINGS)
    assert float(estimate.llc) == pytest.approx(truth, rel=TOLERANCE)
    assert float(estimate.llc) < 12 / 2 * (1 - TOLERANCE)  # the estimator sees the degeneracy


def test_sgld_is_an_optax_transform_with_the_langevin_step():
    optimiser = sgld(0.01, jax.random.PRNGKey(0))
    params = {"w": jnp.zeros((20000,))}
    grads = {"w": jnp.full((20000,), 2.0)}
    updates, _ = optimiser.update(grads, optimiser.init(params))
    # mean -eps/2 * g = -0.01, standard deviation sqrt(eps) = 0.1
    assert float(updates["w"].mean()) == pytest.approx(-0.01, abs=0.003)
    assert float(updates["w"].std()) == pytest.approx(0.1, rel=0.03)


@pytest.mark.parametrize(
    "settings, match",
    [
        (SGLDSettings(step_size=0.0), "step size"),
        (SGLDSettings(num_steps=10, num_burnin=10), "burn-in"),
        (SGLDSettings(num_chains=0), "chain"),
        (SGLDSettings(gamma=-1.0), "gamma"),
    ],
)
def test_bad_settings_are_refused_before_jit(settings, match):
    loss, w_hat, data = _linear_regression(num_params=2)
    with pytest.raises(ValuedynError, match=match):
        estimate_llc(loss, w_hat, data, jax.random.PRNGKey(0), settings)
