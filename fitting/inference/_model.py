"""A dynamical model + an observation model + a pooling make one numpyro model.

Nothing model-specific lives here: the dynamical model contributes its parameters
(name, default prior), ``solve`` and the observable a behaviour kind maps to.

The numpyro model takes the data as an *argument* (:class:`FitData`, a pytree of arrays),
never as closed-over constants, so one compiled sampler serves every fit with the same
shapes.

Pooling of each model parameter ``p`` across seeds:

- ``hierarchical`` (default): ``p[seed] = T(u[seed])``, ``u[seed] ~ Normal(p_loc, p_scale)``
  with ``T`` the bijection from the real line onto the support of ``p``'s default prior
  (exp for positive, scaled sigmoid for an interval). ``p_loc`` and ``p_scale`` live in
  that unconstrained space: ``p_loc ~ Normal(m, s)`` with ``m`` and ``s`` the mean and
  standard deviation of the default prior mapped through ``T^-1`` (moment matching),
  ``p_scale ~ LogNormal(log(0.25 s), 0.75)`` (:data:`SCALE_PRIOR_MEAN`, :data:`SCALE_PRIOR_SD`).
  The prior is zero-avoiding (its density vanishes at 0, as the Gamma(2) of Chung et al.
  2013 that it replaced): with 2-8 seeds the data cannot tell a
  small between-seed spread from none, and a prior with mass at 0 (half-normal) then
  lets the posterior run down a funnel of ever smaller scales that no coordinates make
  easy for NUTS (it cost hundreds of divergences on simulated 4-seed data). Seeds are
  independent training runs, so some spread between them is expected a priori.
  The sampler sees ``u`` in *partially centred* coordinates (Papaspiliopoulos, Roberts &
  Skold 2007; Gorinova, Moore & Hoffman 2020): ``p_z[seed] ~ Normal(w p_loc, p_scale^w)``
  and ``u = p_loc + p_scale^(1-w) (p_z - w p_loc)``, with a weight ``w`` in [0, 1] per
  parameter and seed carried in the data (:attr:`FitData.centring`). ``w = 0`` is the
  non-centred form (best when a seed's data say little about ``p``), ``w = 1`` the centred
  one (best when they pin it down); every ``w`` gives the same posterior of ``u``, only the
  geometry NUTS walks differs. :func:`centring_weights` chooses ``w`` from the curvature
  at the MAP: ``w = tau^2 / (tau^2 + sigma^2)``, the optimum for a normal hierarchy, with
  ``sigma`` the likelihood-only standard deviation of ``u[seed]`` and ``tau`` the
  population scale. The location has coordinates of the same kind (:attr:`FitData.location`):
  ``p_locc ~ Normal((m - c) / p_scale^v, s / p_scale^v)`` and ``p_loc = c + p_scale^v p_locc``,
  the prior ``Normal(m, s)`` for every centre ``c`` and weight ``v``. When the seeds pin
  their values the location given the scale has width ``p_scale / sqrt(S)``, a funnel
  over the several-fold range of scales 2-8 seeds leave open; ``v`` = 1 walks it in the
  scale's units (:func:`location_weights` chooses ``v``, ``c`` is the location's current
  estimate). On the core overshoot case (4 seeds) this removed the remaining divergences
  of a 150 + 150 fit (7 -> 0) and cut the leapfrog steps per iteration from 36 to 31.
- ``complete``: one ``p ~ prior`` shared by all seeds.
- ``none``: ``p[seed] ~ prior`` independently.

A failed solve (``ok = False``) adds ``-inf`` to the log density, so the proposal is
rejected (numpyro marks that transition divergent); with ``count_failures=True`` (what the
NUTS potential of an ODE model passes; closed forms leave it out so that their compiled
NUTS kernels can enter JAX's persistent cache) each failure is also counted through a host
callback (:func:`failed_solves`). The callback sits in a ``lax.cond`` that only fires on a failure,
so chains must not be ``vmap``-ed (a batched cond runs both branches): the sampler runs
chains with ``lax.map`` / ``pmap`` instead.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

from valuedyn._errors import ValuedynError
from valuedyn.fitting.inference._deviation import apply_deviation, deviation_of, deviation_time_bounds, laplace_deviation
from valuedyn.fitting.settings import POOLINGS

#: prior median of a population scale (LogNormal), as a fraction of the moment-matched prior
#: sd of its parameter, and the sd of its log (see the module docstring)
SCALE_PRIOR_MEAN = 0.25
SCALE_PRIOR_SD = 0.75


class FitData(NamedTuple):
    """Arrays of one fit (float32 unless stated). ``y``, ``exposure``, ``mask`` [S, U];
    ``tau`` [U]; ``level_scale`` scalar (observation units per model level unit);
    ``centring`` [P, S]: the centring weight of each model parameter and seed (used by
    hierarchical pooling only; 0 = non-centred); ``location`` [P, 2]: the centre ``c``
    and weight ``v`` of each population location's coordinate (hierarchical pooling;
    zeros: the location itself; see the module docstring); ``edges`` [U + 1]: the tau
    bounds of each cell's span when the updates were aggregated into blocks (None: each
    update's span runs halfway to its neighbours; :meth:`valuedyn.models.Model.solve_binned`);
    ``deviation_time_bounds`` [2]: the shortest and longest timescale (tau units) of a
    structured deviation (None: the fit has none; :mod:`valuedyn.fitting.inference._deviation`)."""

    y: jax.Array
    exposure: jax.Array
    mask: jax.Array  # bool
    tau: jax.Array
    level_scale: jax.Array
    centring: jax.Array
    location: jax.Array | None = None
    edges: jax.Array | None = None
    deviation_time_bounds: jax.Array | None = None


def fit_data(selection, n_parameters: int, deviation: str = "none") -> FitData:
    """The arrays of a fit of ``selection`` (see :class:`FitData`); ``deviation`` other than
    ``none`` adds the bounds of its timescale (:func:`~valuedyn.fitting.inference._deviation.deviation_time_bounds`)."""
    n_seeds = np.shape(selection.y)[0]
    return FitData(
        y=jnp.asarray(selection.y, jnp.float32),
        exposure=jnp.asarray(selection.exposure, jnp.float32),
        mask=jnp.asarray(selection.mask, bool),
        tau=jnp.asarray(selection.tau, jnp.float32),
        level_scale=jnp.asarray(selection.level_scale, jnp.float32),
        centring=jnp.zeros((n_parameters, n_seeds), jnp.float32),
        location=jnp.zeros((n_parameters, 2), jnp.float32),
        edges=None if getattr(selection, "edges", None) is None else jnp.asarray(selection.edges, jnp.float32),
        deviation_time_bounds=None if deviation == "none" else jnp.asarray(deviation_time_bounds(selection), jnp.float32),
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


def _compute_spaces(model) -> tuple[ParameterSpace, ...]:
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


#: (model name, model) -> [lock, spaces or None]: each model's spaces computed once per
#: process, also when a thread started by :func:`parameter_spaces_ahead` is computing them
_SPACES: dict[tuple, list] = {}
_SPACES_LOCK = threading.Lock()


def parameter_spaces(model) -> tuple[ParameterSpace, ...]:
    key = (model.name, model)
    with _SPACES_LOCK:
        entry = _SPACES.setdefault(key, [threading.Lock(), None])
    with entry[0]:
        if entry[1] is None:
            entry[1] = _compute_spaces(model)
        return entry[1]


def parameter_spaces_ahead(model) -> None:
    """Start computing ``model``'s parameter spaces on a thread (the moment matching runs
    JAX op by op, ~1.5 s in a fresh process), so that it overlaps reading the trajectory;
    :func:`parameter_spaces` then waits for it. An error is left for that call to raise."""

    def work():
        try:
            parameter_spaces(model)
        except Exception:  # raised again, in the caller's words, by the fit's own call
            pass

    threading.Thread(target=work, name="valuedyn-spaces", daemon=True).start()


def observable_for(model, kind: str) -> str:
    if kind not in model.applies_to:
        raise ValuedynError(
            f"model {model.name!r} does not describe {kind!r} behaviours (it applies to "
            f"{', '.join(sorted(model.applies_to)) or 'nothing'}); choose another model or behaviour"
        )
    return model.applies_to[kind]


# ---------------------------------------------------------------- the numpyro model
def population_scale(space: ParameterSpace):
    """Samples ``{name}_scale``, the between-seed scale of one hierarchical parameter (its
    prior as in the module docstring); returns its log."""
    scale = numpyro.sample(f"{space.name}_scale", dist.LogNormal(math.log(SCALE_PRIOR_MEAN * space.loc_sd), SCALE_PRIOR_SD))
    return jnp.log(jnp.maximum(scale, jnp.finfo(jnp.float32).tiny))


def population_location(space: ParameterSpace, log_scale, frame):
    """Samples ``{name}_locc``, the population location in the frame ``frame`` = (centre
    ``c``, weight ``v``): ``loc = c + scale^v loc_c`` with the prior ``Normal(m, s)`` for
    every frame; records and returns ``{name}_loc``."""
    centre, weight = frame[0], frame[1]
    stretch = jnp.exp(weight * log_scale)
    loc_c = numpyro.sample(f"{space.name}_locc", dist.Normal((space.loc_mean - centre) / stretch, space.loc_sd / stretch))
    return numpyro.deterministic(f"{space.name}_loc", centre + stretch * loc_c)


def seed_parameter(space: ParameterSpace, seed_loc, log_scale, weight, n_seeds: int):
    """The seeds' values of one hierarchical parameter: samples ``{name}_z`` [S] (the
    partially centred coordinates of weight ``weight`` [S]) and records ``{name}`` [S] =
    ``T(u)``. ``seed_loc``: the population location of each seed in the unconstrained
    space, a scalar or [S] (a conditions fit gives each seed its condition's location);
    ``log_scale``: from :func:`population_scale`. Single fits and conditions fits both
    build their hierarchy with this."""
    with numpyro.plate("seed", n_seeds):
        z = numpyro.sample(f"{space.name}_z", dist.Normal(weight * seed_loc, jnp.exp(weight * log_scale)))
    unconstrained = seed_loc + jnp.exp((1.0 - weight) * log_scale) * (z - weight * seed_loc)
    return numpyro.deterministic(space.name, space.transform(unconstrained))


def build_numpyro_model(model, observation, pooling: str, observable: str):
    """Return ``numpyro_model(data: FitData, observe: bool = True, count_failures: bool = False)``.

    Sites: per pooling as in the module docstring; ``level`` (deterministic [S, U], the
    model mean in observation units). With ``observe=True`` (inference) the likelihood is
    a factor ``y_loglik`` (the observation density without data-only constants, masked
    cells dropped); with ``observe=False`` a masked sample site ``y`` draws replicates.
    """
    if pooling not in POOLINGS:
        raise ValuedynError(f"--pooling must be one of {', '.join(POOLINGS)}; received {pooling!r}")
    spaces = parameter_spaces(model)

    def numpyro_model(data: FitData, observe: bool = True, count_failures: bool = False):
        n_seeds = data.y.shape[0]
        params = {}
        for index, space in enumerate(spaces):
            if pooling == "hierarchical":
                log_scale = population_scale(space)
                loc = population_location(space, log_scale, data.location[index])
                params[space.name] = seed_parameter(space, loc, log_scale, data.centring[index], n_seeds)
            elif pooling == "complete":
                value = numpyro.sample(space.name, space.prior)
                params[space.name] = jnp.broadcast_to(value, (n_seeds,))
            else:
                with numpyro.plate("seed", n_seeds):
                    params[space.name] = numpyro.sample(space.name, space.prior)
        observe_solution(model, observation, observable, params, data, observe, count_failures)

    return numpyro_model


def diagnosed_sites(spaces, observation, pooling: str) -> list[str]:
    """The quantities whose R-hat and ESS decide whether a fit converged: every model
    parameter per seed, under hierarchical pooling its population location and scale, and
    the observation model's parameters."""
    names = [s.name for s in spaces]
    population = [n + suffix for n in names for suffix in ("_loc", "_scale")] if pooling == "hierarchical" else []
    return names + population + observation_diagnosed(observation)


def observation_diagnosed(observation) -> list[str]:
    """The observation model's diagnosed quantities: its parameters (a deviation's timescale
    as ``deviation_time``, in tau units, rather than its sampled position)."""
    return [{"deviation_time_position": "deviation_time"}.get(n, n) for n, _ in observation.parameters]


def observe_solution(model, observation, observable: str, params: dict, data, observe: bool, count_failures: bool) -> None:
    """The part of a numpyro model after its parameters (single fits and conditions fits
    share it): samples the observation parameters, solves the model for every seed
    (``params``: name -> [S]), records ``level`` [S, U] and adds the likelihood (see
    :func:`build_numpyro_model`). ``data``: :class:`FitData` or any tuple with its fields."""
    obs_params = {name: numpyro.sample(name, prior) for name, prior in observation.parameters}
    edges = getattr(data, "edges", None)  # blocks of updates: each cell's span (None: halfway to the neighbours)
    outputs, ok = jax.vmap(lambda p: model.solve_binned(p, data.tau, edges=edges))(params)
    ok = jnp.all(ok)
    level_units = outputs[observable]
    mean = level_units * data.level_scale
    finite = jnp.all(jnp.isfinite(mean))
    ok = ok & finite
    mean = jnp.where(ok, mean, 0.5 * data.level_scale)
    numpyro.deterministic("level", mean)
    deviated = deviation_of(observation) != "none"
    if deviated and not observe:  # simulating: the mechanism plus a deviation drawn from its prior
        mean = apply_deviation(observation, mean, obs_params, data)
    if count_failures:
        jax.lax.cond(ok, lambda: None, lambda: jax.debug.callback(_record_failure, ok))
    numpyro.factor("solve_ok", jnp.where(ok, 0.0, -jnp.inf))
    if observe and deviated:
        # the seeds' deviations integrated out (Laplace; valuedyn.fitting.inference._deviation)
        numpyro.factor("y_loglik", laplace_deviation(observation, mean, obs_params, data))
    elif observe:
        # the sampler's likelihood: the same density without data-only constants
        numpyro.factor("y_loglik", jnp.sum(observation.sampler_log_kernel(data.y, mean, data.exposure, data.mask, obs_params)))
    else:
        distribution = observation.distribution(mean, data.exposure, data.mask, obs_params)
        with numpyro.plate("seed_obs", data.y.shape[0], dim=-2), numpyro.plate("update", data.y.shape[1], dim=-1):
            numpyro.sample("y", distribution.mask(data.mask))


# ---------------------------------------------------------------- centring of the hierarchy
def likelihood_variances(spaces, u_map: dict, hessian: np.ndarray, index_of: dict) -> tuple[np.ndarray, np.ndarray]:
    """From the Hessian of the potential at the MAP of the *non-centred* model (``w = 0``):
    ``sigma2`` [P, S], the likelihood-only marginal variance of each ``u[seed]``, and the
    Laplace approximation of the posterior of ``log scale`` (mean, variance) [2, P].

    In non-centred coordinates ``u = loc + scale z`` and the prior of ``z`` is
    ``Normal(0, 1)``, so the seed-``s`` block of the Hessian over the ``z``s is
    ``D H_s D + I`` with ``D = diag(scale)`` and ``H_s`` the likelihood's curvature in ``u``;
    ``sigma2`` is the diagonal of ``H_s``'s (eigenvalue-floored) inverse, so a direction the
    data leave flat gets a large variance (and a weight near 0).
    ``index_of``: site name -> flat indices of its elements in the Hessian.
    """
    n_params = len(spaces)
    n_seeds = int(np.size(u_map[f"{spaces[0].name}_z"]))
    hessian = 0.5 * (np.asarray(hessian, np.float64) + np.asarray(hessian, np.float64).T)
    log_scale = np.array([float(np.asarray(u_map[f"{s.name}_scale"])) for s in spaces])
    scale = np.exp(log_scale)
    sigma2 = np.full((n_params, n_seeds), np.inf)
    if np.all(np.isfinite(hessian)):
        for seed in range(n_seeds):
            idx = np.array([int(np.asarray(index_of[f"{s.name}_z"]).reshape(n_seeds)[seed]) for s in spaces])
            h_u = (hessian[np.ix_(idx, idx)] - np.eye(n_params)) / np.outer(scale, scale)
            eigenvalues, vectors = np.linalg.eigh(0.5 * (h_u + h_u.T))
            sigma2[:, seed] = (vectors**2 / np.maximum(eigenvalues, 1e-6)).sum(axis=1)
        eigenvalues, vectors = np.linalg.eigh(hessian)
        covariance_diag = (vectors**2 / np.clip(np.where(eigenvalues > 1e-3, eigenvalues, 1.0), 1e-2, 1e8)).sum(axis=1)
        idx = np.array([int(np.asarray(index_of[f"{s.name}_scale"])) for s in spaces])
        log_scale_var = covariance_diag[idx]
    else:
        log_scale_var = np.ones(n_params)
    return sigma2, np.stack([log_scale, log_scale_var])


def centring_weights(sigma2: np.ndarray, log_scale_draws: np.ndarray) -> np.ndarray:
    """Centring weights ``w`` [P, S] from likelihood variances ``sigma2`` [P, S] and draws
    of ``log scale`` [P, n] (warmup draws, or draws from its Laplace approximation).

    With ``u[seed]`` given ``scale`` normal with variance ``v = sigma2 tau^2/(sigma2 + tau^2)``,
    ``z`` has variance ``v tau^(2w - 2)``; the funnel is that variance changing with
    ``tau``. ``log var z = const + 2 w log tau - log(sigma2 + tau^2)``, so the ``w`` that
    keeps it most nearly constant over the posterior of ``tau`` is a regression slope:
    ``w = Cov(log tau, log(sigma2 + tau^2)) / (2 Var(log tau))`` (it is
    ``tau^2/(tau^2 + sigma2)``, the normal-hierarchy optimum, when ``tau`` is known).
    """
    log_tau = np.asarray(log_scale_draws, np.float64)  # [P, n]
    sigma2 = np.asarray(sigma2, np.float64)  # [P, S]
    centred = log_tau - log_tau.mean(axis=1, keepdims=True)
    variance = (centred**2).mean(axis=1)  # [P]
    target = np.log(np.minimum(sigma2, 1e30)[:, :, None] + np.exp(2.0 * log_tau)[:, None, :])  # [P, S, n]
    covariance = (centred[:, None, :] * (target - target.mean(axis=2, keepdims=True))).mean(axis=2)
    tau2 = np.exp(2.0 * np.median(log_tau, axis=1))[:, None]
    fallback = tau2 / (tau2 + sigma2)  # a (nearly) fixed scale: the known-tau optimum
    weights = np.where(variance[:, None] > 1e-8, covariance / (2.0 * np.maximum(variance[:, None], 1e-8)), fallback)
    weights = np.where(np.isfinite(weights), weights, 0.0)
    return np.clip(weights, 0.0, 1.0).astype(np.float32)


def fixed_centring(parameterization: str, n_params: int, n_seeds: int) -> np.ndarray:
    return np.full((n_params, n_seeds), 1.0 if parameterization == "centred" else 0.0, np.float32)


def population_locations(spaces, point: dict, location: np.ndarray, xp=jnp) -> list:
    """The population location ``c + scale^v loc_c`` of each space (any leading batch axes
    of ``point``) in the frames ``location`` [P, 2] (centre, weight)."""
    return [float(c) + xp.exp(float(v) * point[f"{s.name}_scale"]) * point[f"{s.name}_locc"]
            for s, (c, v) in zip(spaces, np.asarray(location, np.float64))]


def recentre(spaces, z: dict, old: np.ndarray, new: np.ndarray, xp=jnp, *, condition_index=None,
             old_location: np.ndarray | None = None, new_location: np.ndarray | None = None) -> dict:
    """Move points (any leading batch axes) between the coordinates of centring weights
    ``old`` and ``new`` [P, S] and population-location frames ``old_location`` and
    ``new_location`` [P, 2] (centre, weight; None: zeros): ``loc = c + scale^v loc_c``
    and ``u = loc + scale^(1-w) (z_w - w loc)`` are kept. ``condition_index`` [S] (a
    conditions fit): ``{name}_loc`` holds one location per condition (no frame) and seed
    ``s`` uses ``loc[condition_index[s]]``."""
    out = dict(z)
    n_params = len(spaces)
    old_location = np.zeros((n_params, 2)) if old_location is None else np.asarray(old_location)
    new_location = np.zeros((n_params, 2)) if new_location is None else np.asarray(new_location)
    for index, s in enumerate(spaces):
        log_scale = z[f"{s.name}_scale"]  # unconstrained: the log of the scale
        if condition_index is None:
            c_new, v_new = (float(x) for x in new_location[index])
            loc = population_locations(spaces[index:index + 1], z, old_location[index:index + 1], xp)[0]
            out[f"{s.name}_locc"] = (loc - c_new) * xp.exp(-v_new * log_scale)
            loc = loc[..., None]
        else:
            loc = z[f"{s.name}_loc"][..., condition_index]
        log_scale = log_scale[..., None]
        w_old = xp.asarray(old[index], xp.float32)
        w_new = xp.asarray(new[index], xp.float32)
        u = loc + xp.exp((1.0 - w_old) * log_scale) * (z[f"{s.name}_z"] - w_old * loc)
        out[f"{s.name}_z"] = w_new * loc + xp.exp((w_new - 1.0) * log_scale) * (u - loc)
    return out


def location_weights(sigma2: np.ndarray, log_scale_draws: np.ndarray, loc_sd: np.ndarray) -> np.ndarray:
    """Weights ``v`` [P] of the population locations' coordinates ``loc = c + scale^v loc_c``
    from likelihood variances ``sigma2`` [P, S], draws of ``log scale`` [P, n] and the
    prior sd of each location [P].

    Given the scale ``tau``, the location's conditional variance is
    ``1 / (1/s^2 + sum_s 1/(sigma2_s + tau^2))``: ``tau^2/S`` when every seed's data pin
    its value (a funnel: the location's width follows the scale, which 2-8 seeds leave
    uncertain by a factor of several) and nearly constant when they say little. The
    ``v`` that keeps ``loc_c``'s variance most nearly constant over the posterior of
    ``tau`` is, as for :func:`centring_weights`, a regression slope of half the log
    variance on ``log tau``."""
    log_tau = np.asarray(log_scale_draws, np.float64)  # [P, n]
    sigma2 = np.minimum(np.asarray(sigma2, np.float64), 1e30)  # [P, S]
    prior_precision = 1.0 / np.square(np.asarray(loc_sd, np.float64))[:, None]  # [P, 1]
    precision = prior_precision + (1.0 / (sigma2[:, :, None] + np.exp(2.0 * log_tau)[:, None, :])).sum(axis=1)  # [P, n]
    target = -0.5 * np.log(precision)
    centred = log_tau - log_tau.mean(axis=1, keepdims=True)
    variance = (centred**2).mean(axis=1)
    covariance = (centred * (target - target.mean(axis=1, keepdims=True))).mean(axis=1)
    weights = np.where(variance > 1e-8, covariance / np.maximum(variance, 1e-8), 0.0)
    weights = np.where(np.isfinite(weights), weights, 0.0)
    return np.clip(weights, 0.0, 1.0)


def initial_point(spaces, observation, pooling: str, n_seeds: int, n_updates: int | None = None) -> dict:
    """A central starting point of every latent site, in the unconstrained space: each
    parameter at the moment-matched centre of its prior (a population scale at its prior
    median, every ``z`` at 0), each observation parameter at its prior median (a
    deviation's path is integrated out, so it adds no site; ``n_updates`` is accepted for
    callers that pass it). Computed without running the model, so it costs no compilation."""
    point = {}
    for space in spaces:
        if pooling == "hierarchical":
            point[f"{space.name}_locc"] = jnp.asarray(space.loc_mean, jnp.float32)
            point[f"{space.name}_scale"] = jnp.asarray(math.log(SCALE_PRIOR_MEAN * space.loc_sd), jnp.float32)
            point[f"{space.name}_z"] = jnp.zeros((n_seeds,), jnp.float32)
        elif pooling == "complete":
            point[space.name] = jnp.asarray(space.loc_mean, jnp.float32)
        else:
            point[space.name] = jnp.full((n_seeds,), space.loc_mean, jnp.float32)
    for name, prior in observation.parameters:
        point[name] = jnp.asarray(_prior_median_unconstrained(name, prior), jnp.float32)
    return point


@functools.lru_cache(maxsize=None)
def _prior_median_unconstrained(name: str, prior) -> float:
    draws = np.asarray(prior.sample(jax.random.PRNGKey(site_tag(name)), (2001,)), np.float64)
    return float(np.asarray(biject_to(prior.support).inv(np.median(draws))))


def site_tag(name: str) -> int:
    """A stable integer per site name (Python's hash() changes between processes)."""
    import zlib

    return zlib.crc32(name.encode()) % (2**31)
