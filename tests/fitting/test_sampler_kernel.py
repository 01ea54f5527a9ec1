"""The kernel NUTS samples (ObservationModel.sampler_log_kernel) is the log-likelihood kernel
less a data-only constant per cell: the same posterior, and a potential small enough that
float32 resolves its energy differences on long runs of large counts (the campaign's
400-update run: ``sum y log(exposure mean)`` of a million nats, spaced 0.06-0.125 in float32,
collapsed NUTS's step size)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from valuedyn.fitting.inference._observation import OBSERVATION_MODELS

PARAMS = {"dispersion": 0.4, "sigma": 0.3}


def cells(name, rng):
    """Campaign-sized cells: 4 seeds x 64 blocks of hundreds of episodes, a masked cell."""
    exposure = rng.integers(100, 600, (4, 64)).astype(np.float32)
    if name in ("binomial", "betabinomial"):
        y = rng.binomial(exposure.astype(int), 0.6).astype(np.float32)
        mean = np.full(y.shape, 0.6, np.float32)
    elif name == "lognormal":
        y = np.exp(0.3 * rng.standard_normal(exposure.shape) + 0.4).astype(np.float32)
        mean = np.full(y.shape, np.exp(0.4), np.float32)
    else:
        y = rng.poisson(1.5 * exposure).astype(np.float32)
        mean = np.full(y.shape, 1.5, np.float32)
    mask = np.ones(y.shape, bool)
    mask[1, 7] = False
    return jnp.asarray(y), jnp.asarray(mean), jnp.asarray(exposure), jnp.asarray(mask)


@pytest.mark.parametrize("name", sorted(OBSERVATION_MODELS))
def test_the_sampler_kernel_differs_from_the_kernel_by_a_constant_and_is_small(name):
    observation = OBSERVATION_MODELS[name]
    y, mean, exposure, mask = cells(name, np.random.default_rng(3))
    params = {key: jnp.float32(PARAMS[key]) for key, _ in observation.parameters}
    other = {key: jnp.float32(2.0 * PARAMS[key]) for key, _ in observation.parameters}

    def both(m, p):
        full = np.asarray(observation.log_kernel(y, m, exposure, mask, p), np.float64)
        sampler = np.asarray(observation.sampler_log_kernel(y, m, exposure, mask, p), np.float64)
        return full, sampler

    full_a, sampler_a = both(mean, params)
    full_b, sampler_b = both(mean * 1.1, other)
    # differences between parameter values are the same under both kernels (the same posterior)
    np.testing.assert_allclose(sampler_a - sampler_b, full_a - full_b, atol=5e-3 + 1e-4 * np.abs(full_a - full_b).max())
    # masked cells stay 0
    assert sampler_a[1, 7] == 0.0
    # the sampler's total is a deviance-sized number, where the kernel's can be ~1e5-1e6
    assert abs(sampler_a.sum()) < 50.0 * mask.sum(), (sampler_a.sum(), full_a.sum())
    if name in ("poisson", "negbin"):
        assert abs(full_a.sum()) > 100.0 * abs(sampler_a.sum())
