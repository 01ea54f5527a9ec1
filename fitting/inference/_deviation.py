"""Structured deviations: each seed's curve = the model's mechanism + a slowly varying
deviation on the observation's link scale (``--deviation ou``).

Consecutive updates of a real run deviate from any smooth curve together (the policy
drifts and recovers); a likelihood that treats updates as independent given the curve is
then decisively misspecified over hundreds of updates. The deviation takes that drift,
so the mechanism's parameters keep their meaning and their intervals their coverage.

The process: an Ornstein-Uhlenbeck process (continuous-time AR(1)) per seed, on the link
scale of the observation family (:data:`LINKS`: logit for binomial counts, log for counts
and the lognormal's continuous values)::

    mean[s, u] = inv_link(link(level[s, u]) + d[s, u])
    d[s, 0] = sd z[s, 0]
    d[s, u] = rho_u d[s, u - 1] + sd sqrt(1 - rho_u^2) z[s, u],   rho_u = exp(-(tau_u - tau_{u-1}) / time)
    z ~ Normal(0, 1)  [S, U]   (non-centred: NUTS sees z, never d)

exact on any grid of ``tau`` (blocks of updates of varying width included): ``d`` is
stationary with standard deviation ``sd`` and correlation ``exp(-|dt| / time)``. ``level``
(the deterministic of :func:`~valuedyn.fitting.inference._model.observe_solution`) stays the
mechanism's; the sites this module adds (:func:`apply_deviation`) are

- ``deviation_sd`` (link units, shared by the seeds; prior HalfNormal(0.5): the data can
  shrink it to 0, where the fit is the smooth fit; with non-centred ``z`` NUTS walks that
  limit without a funnel, the ``z`` then simply follow their prior),
- ``deviation_time_position`` ~ Uniform(0, 1) (what NUTS samples, through the logit) and
  its deterministic ``deviation_time`` = ``time_min (time_max / time_min)^position`` in tau
  units: log-uniform between bounds carried in the data (:func:`deviation_time_bounds`):
  at least :data:`MIN_UPDATES` updates' worth of tau (or the widest block of updates, if
  wider), so the deviation cannot take the update-to-update noise, which is the observation
  model's; at most :data:`MAX_WINDOW_SHARE` of the window, so it cannot take the trend,
  which is the mechanism's,
- ``deviation_z`` [S, U], deterministics ``deviation`` [S, U] (``d``) and ``deviated_level``
  [S, U] (``mean``, observation units: the likelihood's mean). Posterior predictive
  replicates are one step ahead (:func:`replicate_mean`), the predictive the stored
  log-likelihood scores.

Comparisons (:func:`pointwise_log_likelihood`): every update has its own latent deviation,
so the plain pointwise log-likelihood given ``d[s, u]`` is nearly a saturated fit of each
cell and PSIS-LOO on it is unreliable (high Pareto k). A deviation fit's stored
log-likelihood is instead each observation's density with its own innovation integrated
out, given the deviation one update earlier::

    p(y_u | d_{u-1}, theta) = integral p(y_u | inv_link(link(level_u) + x)) Normal(x; rho_u d_{u-1}, sd^2 (1 - rho_u^2)) dx

(``u = 0``: Normal(0, sd^2), the stationary law), by adaptive Gauss-Hermite quadrature
(:data:`GAUSS_HERMITE_NODES` nodes around the Laplace point of the integrand, found by a
few Newton steps), so a narrow likelihood (hundreds of episodes per update) is integrated
as accurately as a wide one. The fit file says so (attribute ``loglik_kind`` =
``innovation_integrated``); PSIS-LOO then leaves out one update's observation *and* its
innovation, a one-step-ahead predictive score. Fits with different deviation settings
score different things and are not compared (:mod:`valuedyn.fitting.judge._compare` refuses).

How much of the variation the mechanism explains (:func:`deviation_summary`): per seed and
draw, ``var_u link(level) / (var_u link(level) + var_u d)`` over the observed updates,
averaged over the draws.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from valuedyn.fitting.inference._observation import ObservationModel
from valuedyn.fitting.settings import DEVIATIONS

#: family -> its link (the scale the deviation adds on)
LINKS = {"binomial": "logit", "count": "log", "continuous": "log"}
#: the shortest timescale, in updates (or the widest block, if wider)
MIN_UPDATES = 3
#: the longest timescale, as a share of the window (tau span)
MAX_WINDOW_SHARE = 0.25
#: the longest timescale is at least this multiple of the shortest (a short run: the window's
#: quarter may be under a few updates; the prior then still spans a range of timescales)
MIN_TIME_RATIO = 2.0
#: prior of the deviation's size (link units): half its mass below 0.34, 95 % below 1
DEVIATION_SD_PRIOR = dist.HalfNormal(0.5)
#: the parameters a deviation adds to the observation model's (sampled once, shared by the seeds)
DEVIATION_PARAMETERS = (("deviation_sd", DEVIATION_SD_PRIOR), ("deviation_time_position", dist.Uniform(0.0, 1.0)))
#: nodes of the Gauss-Hermite quadrature of the innovation-integrated log-likelihood
GAUSS_HERMITE_NODES = 20
#: Newton steps that find the quadrature's centre (the integrand's mode; log-concave integrands)
NEWTON_STEPS = 6
#: the attribute value that names the stored log-likelihood of a deviation fit
LOGLIK_KIND = "innovation_integrated"
_EPS = 1e-6
_TINY_VARIANCE = 1e-12


@dataclasses.dataclass(frozen=True)
class DeviatedObservation(ObservationModel):
    """An observation model with a structured deviation: the base model's name, family and
    distributions, its parameters plus :data:`DEVIATION_PARAMETERS`, and ``deviation``
    (one of :data:`~valuedyn.fitting.settings.DEVIATIONS` but ``none``)."""

    deviation: str = "ou"


def with_deviation(observation: ObservationModel, deviation: str) -> ObservationModel:
    """``observation`` itself for ``none``; otherwise the :class:`DeviatedObservation` of it."""
    if deviation not in DEVIATIONS:
        from valuedyn._errors import ValuedynError

        raise ValuedynError(f"--deviation must be one of {', '.join(DEVIATIONS)}; received {deviation!r}")
    if deviation == "none" or isinstance(observation, DeviatedObservation):
        return observation
    return DeviatedObservation(observation.name, observation.family, tuple(observation.parameters) + DEVIATION_PARAMETERS,
                               deviation=deviation)


def deviation_of(observation) -> str:
    """The deviation an observation model carries (``none`` for a plain one)."""
    return getattr(observation, "deviation", "none")


def base_parameters(observation) -> tuple:
    """The observation model's own parameters (without the deviation's)."""
    names = {name for name, _ in DEVIATION_PARAMETERS}
    return tuple((n, p) for n, p in observation.parameters if n not in names)


# ---------------------------------------------------------------- links
def link(family: str, mean, xp=jnp):
    """``mean`` (observation units) on the family's link scale (:data:`LINKS`)."""
    if LINKS[family] == "logit":
        p = xp.clip(mean, _EPS, 1.0 - _EPS)
        return xp.log(p) - xp.log1p(-p)
    return xp.log(xp.maximum(mean, _EPS))


def inv_link(family: str, eta, xp=jnp):
    if LINKS[family] == "logit":
        return 1.0 / (1.0 + xp.exp(-eta))
    return xp.exp(eta)


# ---------------------------------------------------------------- the time grid
def deviation_time_bounds(selection) -> np.ndarray:
    """``[time_min, time_max]`` (tau units, float32) of a selection's deviation timescale:
    ``time_min`` = the larger of :data:`MIN_UPDATES` updates' worth of tau and the widest
    cell (a block of updates, :func:`~valuedyn.fitting.inference._select.aggregate_blocks`);
    ``time_max`` = :data:`MAX_WINDOW_SHARE` of the window, at least :data:`MIN_TIME_RATIO`
    ``time_min``. An update's worth of tau is the window over its number of updates."""
    tau = np.asarray(selection.tau, np.float64)
    edges = getattr(selection, "edges", None)
    if edges is not None:  # aggregated: the blocks' true spans
        edges = np.asarray(edges, np.float64)
        n_updates = int((getattr(selection, "blocks", None) or {}).get("n_updates", len(tau)))
        window, widest = edges[-1] - edges[0], float(np.max(np.diff(edges)))
    else:
        n_updates = len(tau)
        window = float(tau[-1] - tau[0]) * n_updates / max(n_updates - 1, 1)  # each update's span included
        widest = float(np.max(np.diff(tau))) if n_updates > 1 else window
    per_update = window / max(n_updates, 1)
    time_min = max(MIN_UPDATES * per_update, widest)
    time_max = max(MAX_WINDOW_SHARE * window, MIN_TIME_RATIO * time_min)
    return np.asarray([time_min, time_max], np.float32)


def correlations(tau, time):
    """``rho`` [U]: the OU correlation of each cell with the one before (``rho[0]`` = 0: the
    first cell starts from the stationary law)."""
    gaps = jnp.diff(tau)
    return jnp.concatenate([jnp.zeros((1,), gaps.dtype), jnp.exp(-jnp.maximum(gaps, 0.0) / time)])


def ou_path(z, tau, sd, time):
    """The deviation ``d`` [S, U] from standard normal ``z`` [S, U] on the grid ``tau`` [U]
    (the recursion of the module docstring), by an associative scan over the updates
    (log-depth: a sequential scan of hundreds of updates costs NUTS a loop per gradient)."""
    rho = correlations(tau, time)
    innovations = sd * jnp.sqrt(jnp.maximum(1.0 - jnp.square(rho), 0.0)) * z  # rho[0] = 0: d_0 = sd z_0
    factors = jnp.broadcast_to(rho, z.shape)

    def combine(left, right):  # d = a d_before + b, composed
        return left[0] * right[0], right[0] * left[1] + right[1]

    _, path = jax.lax.associative_scan(combine, (factors, innovations), axis=-1)
    return path


def deviation_time(position, bounds):
    """The timescale (tau units) at ``position`` in [0, 1] between ``bounds`` = [min, max], log-uniformly."""
    return bounds[0] * jnp.exp(position * (jnp.log(bounds[1]) - jnp.log(bounds[0])))


def apply_deviation(observation, mean, obs_params: dict, data):
    """Inside the numpyro model, after the mechanism's ``level`` (``mean`` [S, U],
    observation units): samples ``deviation_z`` [S, U], records ``deviation_time``,
    ``deviation`` and ``deviated_level`` and returns the latter (the likelihood's mean).
    ``obs_params`` holds ``deviation_sd`` and ``deviation_time_position``; ``data`` carries
    ``tau`` and ``deviation_time_bounds``."""
    time = numpyro.deterministic("deviation_time",
                                 deviation_time(obs_params["deviation_time_position"], data.deviation_time_bounds))
    with numpyro.plate("seed_deviation", mean.shape[0], dim=-2), numpyro.plate("update_deviation", mean.shape[1], dim=-1):
        z = numpyro.sample("deviation_z", dist.Normal(0.0, 1.0))
    d = numpyro.deterministic("deviation", ou_path(z, data.tau, obs_params["deviation_sd"], time))
    return numpyro.deterministic("deviated_level", inv_link(observation.family, link(observation.family, mean) + d))


def replicate_mean(observation, constrained: dict, data, rng: np.random.Generator):
    """The mean each posterior predictive replicate is drawn around, [n, S, U] (host, numpy;
    ``constrained``: the draws' sites, [n, ...]): ``level`` for a plain fit (``rng``
    untouched); for a deviation fit the one-step predictive of the stored log-likelihood,
    ``inv_link(link(level) + x)`` with a fresh innovation ``x ~ Normal(rho_u d_{u-1},
    sd^2 (1 - rho_u^2))`` per cell. Why not ``deviated_level``: its ``d[s, u]`` has seen
    ``y[s, u]``, so replicates around it would follow each observation and the predictive
    checks (coverage, LOO-PIT, whose weights come from the innovation-integrated
    log-likelihood) would judge a predictive other than the one the fit is scored by."""
    if deviation_of(observation) == "none":
        return constrained["level"]
    family = observation.family
    level = np.asarray(constrained["level"], np.float64)
    d = np.asarray(constrained["deviation"], np.float64)
    sd = np.asarray(constrained["deviation_sd"], np.float64).reshape(-1, 1, 1)
    time = np.asarray(constrained["deviation_time"], np.float64).reshape(-1, 1)
    gaps = np.maximum(np.diff(np.asarray(data.tau, np.float64)), 0.0)
    rho = np.concatenate([np.zeros_like(time), np.exp(-gaps[None, :] / time)], axis=1)[:, None, :]  # [n, 1, U]
    previous = np.concatenate([np.zeros_like(d[..., :1]), d[..., :-1]], axis=-1)
    innovation = rho * previous + sd * np.sqrt(np.maximum(1.0 - rho**2, 0.0)) * rng.standard_normal(d.shape)
    return inv_link(family, link(family, level, xp=np) + innovation, xp=np)


# ---------------------------------------------------------------- the log-likelihood stored for comparisons
def _cell_log_density(observation, eta, y, exposure, mask, params):
    return observation.distribution(inv_link(observation.family, eta), exposure, mask, params).log_prob(y)


def innovation_integrated_log_lik(observation, constrained: dict, data, y_filled):
    """``log p(y[s, u] | d[s, u - 1], theta)`` [S, U] for one draw (``constrained``: its
    constrained sites and deterministics), each cell's innovation integrated out by
    adaptive Gauss-Hermite quadrature (module docstring); masked cells 0."""
    family = observation.family
    params = {name: constrained[name] for name, _ in observation.parameters}
    sd, time = constrained["deviation_sd"], constrained["deviation_time"]
    d = constrained["deviation"]
    rho = correlations(data.tau, time)
    eta = link(family, constrained["level"])
    previous = jnp.concatenate([jnp.zeros_like(d[:, :1]), d[:, :-1]], axis=1)
    centre = rho * previous  # [S, U]
    variance = jnp.maximum(jnp.square(sd) * (1.0 - jnp.square(rho)), _TINY_VARIANCE) * jnp.ones_like(centre)

    def log_integrand(x):  # [S, U] -> [S, U]: log p(y | eta + x) + log Normal(x; centre, variance)
        normal = -0.5 * (jnp.log(2.0 * math.pi * variance) + jnp.square(x - centre) / variance)
        return _cell_log_density(observation, eta + x, y_filled, data.exposure, data.mask, params) + normal

    ones = jnp.ones_like(centre)

    def first(x):
        return jax.jvp(log_integrand, (x,), (ones,))[1]

    def newton(x, _):  # the cells are independent: the elementwise derivatives are jvps with ones
        slope, curvature = jax.jvp(first, (x,), (ones,))
        curvature = jnp.minimum(curvature, -1.0 / variance)  # log-concave; never a step the wrong way
        step = jnp.clip(slope / curvature, -3.0 * jnp.sqrt(variance), 3.0 * jnp.sqrt(variance))
        x = x - jnp.where(jnp.isfinite(step), step, 0.0)
        return x, None

    mode, _ = jax.lax.scan(newton, centre, None, length=NEWTON_STEPS)
    curvature = jax.jvp(first, (mode,), (ones,))[1]
    curvature = jnp.where(jnp.isfinite(curvature), jnp.minimum(curvature, -1.0 / variance), -1.0 / variance)
    width = jnp.sqrt(-1.0 / curvature)  # the Laplace sd of the integrand
    nodes, weights = np.polynomial.hermite.hermgauss(GAUSS_HERMITE_NODES)
    terms = []
    for node, weight in zip(nodes, weights):
        terms.append(math.log(weight) + node**2 + log_integrand(mode + math.sqrt(2.0) * node * width))
    value = jnp.log(math.sqrt(2.0) * width) + jax.scipy.special.logsumexp(jnp.stack(terms), axis=0)
    return jnp.where(data.mask, value, 0.0)


def pointwise_log_likelihood(observation, constrained: dict, data, y_filled):
    """The log-likelihood [S, U] of one draw that a fit stores for PSIS-LOO (masked cells
    0): the observation density given the level, or for a deviation fit the
    innovation-integrated density (:func:`innovation_integrated_log_lik`)."""
    if deviation_of(observation) != "none":
        return innovation_integrated_log_lik(observation, constrained, data, y_filled)
    params = {name: constrained[name] for name, _ in observation.parameters}
    distribution = observation.distribution(constrained["level"], data.exposure, data.mask, params)
    return jnp.where(data.mask, distribution.log_prob(y_filled), 0.0)


# ---------------------------------------------------------------- what the report reads
def mechanism_shares(family: str, level, deviation, mask) -> np.ndarray:
    """Per draw and seed, the share of the link-scale variation over the observed updates
    that the mechanism explains: ``var link(level) / (var link(level) + var d)``.
    ``level``, ``deviation``: [n, S, U]; ``mask`` [S, U]. Returns [n, S] (NaN for a seed
    with fewer than 2 observed updates)."""
    eta = link(family, np.asarray(level, np.float64), xp=np)
    d = np.asarray(deviation, np.float64)
    mask = np.asarray(mask, bool)

    def variance(x):
        count = mask.sum(axis=-1)
        mean = np.where(mask, x, 0.0).sum(axis=-1) / np.maximum(count, 1)
        return np.where(mask, np.square(x - mean[..., None]), 0.0).sum(axis=-1) / np.maximum(count - 1, 1)

    mechanism, deviation_var = variance(eta), variance(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = mechanism / (mechanism + deviation_var)
    return np.where(mask.sum(axis=-1) >= 2, share, np.nan)


def deviation_summary(idata, family: str) -> dict:
    """The fit file's ``deviation_summary``: posterior mean and 5 / 95 % quantiles of
    ``deviation_sd`` (link units) and ``deviation_time`` (tau units, and its bounds), and per
    seed the posterior mean of the mechanism's share of the variation
    (:func:`mechanism_shares`) with its 5 / 95 % quantiles; ``link`` names the scale."""
    posterior = idata.posterior
    mask = np.asarray(idata.constant_data["mask"], bool)
    level = np.asarray(posterior["level"]).reshape((-1,) + mask.shape)
    deviation = np.asarray(posterior["deviation"]).reshape((-1,) + mask.shape)
    shares = mechanism_shares(family, level, deviation, mask)

    def stats(values):
        values = np.asarray(values, np.float64).reshape(-1)
        return {"mean": float(np.mean(values)), "q05": float(np.quantile(values, 0.05)),
                "q95": float(np.quantile(values, 0.95))}

    return {
        "deviation": "ou",
        "link": LINKS[family],
        "deviation_sd": stats(posterior["deviation_sd"]),
        "deviation_time": stats(posterior["deviation_time"]),
        "mechanism_share": [float(x) for x in np.nanmean(shares, axis=0)],
        "mechanism_share_q05": [float(x) for x in np.nanquantile(shares, 0.05, axis=0)],
        "mechanism_share_q95": [float(x) for x in np.nanquantile(shares, 0.95, axis=0)],
    }


def deviation_key(observation) -> tuple:
    """What a deviation adds to a compiled sampler's cache key (nothing without one, so the
    keys of plain fits are as they were)."""
    deviation = deviation_of(observation)
    return () if deviation == "none" else (("deviation", deviation),)


def deviation_attrs(idata, observation) -> dict:
    """The fit file's attributes of its deviation: ``deviation`` (``none`` or the process),
    and for a deviation fit ``loglik_kind`` (:data:`LOGLIK_KIND`: what the stored
    log-likelihood is) and ``deviation_summary`` (JSON, :func:`deviation_summary`)."""
    import json

    deviation = deviation_of(observation)
    if deviation == "none":
        return {"deviation": "none"}
    return {"deviation": deviation, "loglik_kind": LOGLIK_KIND,
            "deviation_summary": json.dumps(deviation_summary(idata, observation.family))}
