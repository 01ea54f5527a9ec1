"""A dynamical model + an observation model + a pooling make one numpyro model.

Nothing model-specific lives here: the dynamical model contributes its parameters
(name, default prior), ``solve`` and the observable a behaviour kind maps to.

The numpyro model takes the data as an *argument* (:class:`FitData`, a pytree of arrays),
never as closed-over constants, so one compiled sampler serves every fit with the same
shapes.

Pooling of each model parameter ``p`` across seeds:

- ``hierarchical`` (default, non-centred): ``p[seed] = T(p_loc + p_scale * p_z[seed])``
  with ``p_z ~ Normal(0, 1)`` and ``T`` the bijection from the real line onto the support
  of ``p``'s default prior (exp for positive, scaled sigmoid for an interval). ``p_loc``
  and ``p_scale`` live in that unconstrained space: ``p_loc ~ Normal(m, s)`` with ``m``
  and ``s`` the mean and standard deviation of the default prior mapped through
  ``T^-1`` (moment matching), ``p_scale ~ HalfNormal(s / 2)``.
  ``parameterization="centred"`` samples ``p_u[seed] ~ Normal(p_loc, p_scale)`` instead
  (same model, other coordinates): better when every seed has much data (the posterior
  of each seed is narrow, and the non-centred coordinates then curve sharply).
- ``complete``: one ``p ~ prior`` shared by all seeds.
- ``none``: ``p[seed] ~ prior`` independently.

A failed solve (``ok = False``) adds ``-inf`` to the log density, so the proposal is
rejected (numpyro marks that transition divergent); each failure is also counted
through a host callback (:func:`failed_solves`).
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from valuedyn._errors import ValuedynError

POOLINGS = ("hierarchical", "complete", "none")


class FitData(NamedTuple):
    """Arrays of one fit (float32 unless stated). ``y``, ``exposure``, ``mask`` [S, U];
    ``tau`` [U]; ``level_scale`` scalar (observation units per model level unit)."""

    y: jax.Array
    exposure: jax.Array
    mask: jax.Array  # bool
    tau: jax.Array
    level_scale: jax.Array


def fit_data(selection) -> FitData:
    return FitData(
        y=jnp.asarray(selection.y, jnp.float32),
        exposure=jnp.asarray(selection.exposure, jnp.float32),
        mask=jnp.asarray(selection.mask, bool),
        tau=jnp.asarray(selection.tau, jnp.float32),
        level_scale=jnp.asarray(selection.level_scale, jnp.float32),
    )


# ---------------------------------------------------------------- failed-solve counter
_FAILED = [0]
_FAILED_LOCK = threading.Lock()


def _record_failure(ok) -> None:
    failures = int(np.size(ok) - np.count_nonzero(np.asarray(ok)))
    if failures:
        with _FAILED_LOCK:
            _FAILED[0] += failures


def reset_failed_solves() -> None:
    jax.effects_barrier()
    with _FAILED_LOCK:
        _FAILED[0] = 0


def failed_solves() -> int:
    """Failed ODE solves seen since the last :func:`reset_failed_solves`."""
    jax.effects_barrier()
    with _FAILED_LOCK:
        return _FAILED[0]


# ---------------------------------------------------------------- parameter spaces
class ParameterSpace(NamedTuple):
    name: str
    prior: object
    transform: object  # unconstrained -> support of the prior
    loc_mean: float
    loc_sd: float
    transform_name: str


@functools.lru_cache(maxsize=None)
def _spaces_cached(model_name: str, model) -> tuple[ParameterSpace, ...]:
    spaces = []
    key = jax.random.PRNGKey(20240601)
    for index, parameter in enumerate(model.parameters):
        prior = parameter.prior
        transform = biject_to(prior.support)
        draws = prior.sample(jax.random.fold_in(key, index), (4000,))
        u = np.asarray(transform.inv(draws), np.float64)
        u = u[np.isfinite(u)]
        mean = float(u.mean()) if u.size else 0.0
        sd = float(u.std()) if u.size > 1 else 1.0
        if not np.isfinite(sd) or sd <= 0:
            sd = 1.0
        spaces.append(ParameterSpace(parameter.name, prior, transform, mean, sd, type(transform).__name__))
    return tuple(spaces)


def parameter_spaces(model) -> tuple[ParameterSpace, ...]:
    return _spaces_cached(model.name, model)


def observable_for(model, kind: str) -> str:
    if kind not in model.applies_to:
        raise ValuedynError(
            f"model {model.name!r} does not describe {kind!r} behaviours (it applies to "
            f"{', '.join(sorted(model.applies_to)) or 'nothing'}); choose another model or behaviour"
        )
    return model.applies_to[kind]


# ---------------------------------------------------------------- the numpyro model
PARAMETERIZATIONS = ("noncentred", "centred")


def build_numpyro_model(model, observation, pooling: str, observable: str, count_failures: bool = True,
                        parameterization: str = "noncentred"):
    """Return ``numpyro_model(data: FitData, observe: bool = True)``.

    Sites: per pooling as in the module docstring; ``level`` (deterministic [S, U], the
    model mean in observation units). With ``observe=True`` (inference) the likelihood is
    a factor ``y_loglik`` (the observation density without data-only constants, masked
    cells dropped); with ``observe=False`` a masked sample site ``y`` draws replicates.
    """
    if pooling not in POOLINGS:
        raise ValuedynError(f"--pooling must be one of {', '.join(POOLINGS)}; received {pooling!r}")
    spaces = parameter_spaces(model)

    def numpyro_model(data: FitData, observe: bool = True):
        n_seeds = data.y.shape[0]
        params = {}
        for space in spaces:
            if pooling == "hierarchical":
                loc = numpyro.sample(f"{space.name}_loc", dist.Normal(space.loc_mean, space.loc_sd))
                scale = numpyro.sample(f"{space.name}_scale", dist.HalfNormal(0.5 * space.loc_sd))
                with numpyro.plate("seed", n_seeds):
                    if parameterization == "centred":
                        unconstrained = numpyro.sample(f"{space.name}_u", dist.Normal(loc, scale))
                    else:
                        z = numpyro.sample(f"{space.name}_z", dist.Normal(0.0, 1.0))
                        unconstrained = loc + scale * z
                params[space.name] = numpyro.deterministic(space.name, space.transform(unconstrained))
            elif pooling == "complete":
                value = numpyro.sample(space.name, space.prior)
                params[space.name] = jnp.broadcast_to(value, (n_seeds,))
            else:
                with numpyro.plate("seed", n_seeds):
                    params[space.name] = numpyro.sample(space.name, space.prior)
        obs_params = {name: numpyro.sample(name, prior) for name, prior in observation.parameters}

        outputs, ok = jax.vmap(lambda p: model.solve(p, data.tau))(params)
        ok = jnp.all(ok)
        level_units = outputs[observable]
        mean = level_units * data.level_scale
        finite = jnp.all(jnp.isfinite(mean))
        ok = ok & finite
        mean = jnp.where(ok, mean, 0.5 * data.level_scale)
        numpyro.deterministic("level", mean)
        if count_failures:
            jax.lax.cond(ok, lambda: None, lambda: jax.debug.callback(_record_failure, ok))
        numpyro.factor("solve_ok", jnp.where(ok, 0.0, -jnp.inf))
        if observe:
            # the sampler's likelihood: the same density without data-only constants
            numpyro.factor("y_loglik", jnp.sum(observation.log_kernel(data.y, mean, data.exposure, data.mask, obs_params)))
        else:
            distribution = observation.distribution(mean, data.exposure, data.mask, obs_params)
            with numpyro.plate("seed_obs", n_seeds, dim=-2), numpyro.plate("update", data.y.shape[1], dim=-1):
                numpyro.sample("y", distribution.mask(data.mask))

    return numpyro_model
