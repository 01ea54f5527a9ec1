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
    z ~ Normal(0, 1)  [S, U]   (the path's law; inference integrates it out)

exact on any grid of ``tau`` (blocks of updates of varying width included): ``d`` is
stationary with standard deviation ``sd`` and correlation ``exp(-|dt| / time)``. At
inference the path is integrated out (:func:`laplace_deviation`, an embedded Laplace
approximation; the fit file's ``deviation_method`` = ``laplace``): NUTS samples the
mechanism and the process's size and timescale only, and ``deviation`` is the path's
conditional mode given them. Simulating (SBC, prior predictive) draws ``z``. ``level``
(the deterministic of :func:`~valuedyn.fitting.inference._model.observe_solution`) stays the
mechanism's; the sites this module adds (:func:`laplace_deviation`) are

- ``deviation_sd`` (link units, shared by the seeds; prior HalfNormal(0.5): the data can
  shrink it to 0, where the fit is the smooth fit; with the path integrated out there is
  no funnel for NUTS to walk at that limit),
- ``deviation_time_position`` ~ Uniform(0, 1) (what NUTS samples, through the logit) and
  its deterministic ``deviation_time`` = ``time_min (time_max / time_min)^position`` in tau
  units: log-uniform between bounds carried in the data (:func:`deviation_time_bounds`):
  at least :data:`MIN_UPDATES` updates' worth of tau (or the widest block of updates, if
  wider), so the deviation cannot take the update-to-update noise, which is the observation
  model's; at most :data:`MAX_WINDOW_SHARE` of the window and :data:`MAX_UPDATES` updates,
  so it cannot take the trend, which is the mechanism's,
- deterministics ``deviation`` [S, U] (``d``, its conditional mode) and ``deviated_level``
  [S, U] (``mean``, observation units). Posterior predictive
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
#: the longest timescale, as a share of the window (tau span) ...
MAX_WINDOW_SHARE = 0.25
#: ... and in updates, whichever is shorter: the deviation is the policy's drift that recovers
#: within tens of updates; a change slower than that is the mechanism's to explain. With a
#: quarter of the window alone, on the campaign's 400-update run (peak near update 100, a fall by
#: a third over the next ~150) logistic_onset + OU took the decay into a deviation of timescale
#: 0.21 of the window (84 updates) and won the comparison against overshoot: a monotone model
#: "explained" a decay, and the mechanism no longer meant what it says
MAX_UPDATES = 32
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
#: Newton steps to the deviation's conditional mode (outside the gradient; one more inside it)
LAPLACE_STEPS = 8
#: the largest change of one cell's deviation per Newton step (link units)
LAPLACE_MAX_STEP = 2.0
#: how the deviation is handled at inference (the fit file's ``deviation_method``)
DEVIATION_METHOD = "laplace"
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
def deviated(family: str, level, deviation, xp=jnp):
    """``inv_link(link(level) + deviation)``: the mean of the observation once the
    deviation (link units) is added to the mechanism's level (observation units)."""
    return inv_link(family, link(family, level, xp=xp) + deviation, xp=xp)


def deviation_time_bounds(selection) -> np.ndarray:
    """``[time_min, time_max]`` (tau units, float32) of a selection's deviation timescale:
    ``time_min`` = the larger of :data:`MIN_UPDATES` updates' worth of tau and the widest
    cell (a block of updates, :func:`~valuedyn.fitting.inference._select.aggregate_blocks`);
    ``time_max`` = the shorter of :data:`MAX_WINDOW_SHARE` of the window and :data:`MAX_UPDATES`
    updates, at least :data:`MIN_TIME_RATIO` ``time_min``. An update's worth of tau is the
    window over its number of updates."""
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
    time_max = max(min(MAX_WINDOW_SHARE * window, MAX_UPDATES * per_update), MIN_TIME_RATIO * time_min)
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
    return _affine_scan(jnp.broadcast_to(rho, z.shape), innovations)


def deviation_time(position, bounds):
    """The timescale (tau units) at ``position`` in [0, 1] between ``bounds`` = [min, max], log-uniformly."""
    return bounds[0] * jnp.exp(position * (jnp.log(bounds[1]) - jnp.log(bounds[0])))


def apply_deviation(observation, mean, obs_params: dict, data):
    """Inside the numpyro model, *simulating* (``observe=False``: SBC, prior predictive):
    after the mechanism's ``level`` (``mean`` [S, U], observation units) samples
    ``deviation_z`` [S, U] from its prior, records ``deviation_time``, ``deviation`` and
    ``deviated_level`` and returns the latter (the mean the replicates are drawn around).
    ``obs_params`` holds ``deviation_sd`` and ``deviation_time_position``; ``data`` carries
    ``tau`` and ``deviation_time_bounds``. Inference integrates the deviation out instead
    (:func:`laplace_deviation`)."""
    time = numpyro.deterministic("deviation_time",
                                 deviation_time(obs_params["deviation_time_position"], data.deviation_time_bounds))
    with numpyro.plate("seed_deviation", mean.shape[0], dim=-2), numpyro.plate("update_deviation", mean.shape[1], dim=-1):
        z = numpyro.sample("deviation_z", dist.Normal(0.0, 1.0))
    d = numpyro.deterministic("deviation", ou_path(z, data.tau, obs_params["deviation_sd"], time))
    return numpyro.deterministic("deviated_level", inv_link(observation.family, link(observation.family, mean) + d))


# ---------------------------------------------------------------- inference: the deviation integrated out
def ou_precision(tau, sd, time):
    """The OU path's precision on the grid ``tau``, which is tridiagonal: ``Q = B^T diag(p)
    B`` with ``B`` the unit lower-bidiagonal matrix of the recursion (``-rho_u`` below the
    diagonal) and ``p = 1 / v`` its innovations' precisions (``v`` = ``sd^2`` for the first
    cell, ``sd^2 (1 - rho_u^2)`` after). Returns ``(diagonal [U], off-diagonal [U - 1], rho
    [U], p [U], log |Q|)``: ``diagonal = p_u + rho_{u+1}^2 p_{u+1}``, ``off_u = -rho_{u+1}
    p_{u+1}``, ``log |Q| = sum log p``."""
    rho = correlations(tau, time)
    precision = 1.0 / jnp.maximum(jnp.square(sd) * (1.0 - jnp.square(rho)), _TINY_VARIANCE)
    after = jnp.square(rho[1:]) * precision[1:]
    diagonal = precision + jnp.concatenate([after, jnp.zeros((1,), after.dtype)])
    return diagonal, -rho[1:] * precision[1:], rho, precision, jnp.sum(jnp.log(precision))


def _affine_scan(factor, offset, reverse: bool = False):
    """``x_u = factor_u x_{u-1} + offset_u`` (``x_{-1}`` = 0; ``reverse``: from the last cell,
    ``x_u = factor_u x_{u+1} + offset_u``) along the last axis, by an associative scan
    (log-depth: a sequential loop over the cells costs XLA's CPU runtime microseconds per
    iteration, tens of milliseconds per gradient of a 64-cell Laplace step)."""
    def combine(first, second):  # first applied, then second
        return first[0] * second[0], second[0] * first[1] + second[1]

    return jax.lax.associative_scan(combine, (factor, offset), axis=factor.ndim - 1, reverse=reverse)[1]


def _bidiagonal_factor(diagonal, off_squared):
    """The pivots ``D_u = diagonal_u - off_squared_u / D_{u-1}`` (``off_squared_0`` = 0) of a
    symmetric tridiagonal matrix's Cholesky factor (``l_u = sqrt(D_u)``), by an associative
    scan of the continued fraction's Moebius maps ``[[diagonal_u, -off_squared_u], [1, 0]]``
    (products renormalised at each combination; only their ratio matters)."""
    ones = jnp.ones_like(diagonal)
    maps = (diagonal, -off_squared, ones, jnp.zeros_like(diagonal))  # (m00, m01, m10, m11)

    def combine(first, second):  # second after first: second @ first, renormalised (elementwise: no dot)
        f00, f01, f10, f11 = first
        s00, s01, s10, s11 = second
        product = (s00 * f00 + s01 * f10, s00 * f01 + s01 * f11, s10 * f00 + s11 * f10, s10 * f01 + s11 * f11)
        norm = jnp.maximum(jnp.maximum(jnp.abs(product[0]), jnp.abs(product[1])),
                           jnp.maximum(jnp.abs(product[2]), jnp.abs(product[3])))
        return tuple(p / norm for p in product)

    p00, p01, p10, p11 = jax.lax.associative_scan(combine, maps, axis=diagonal.ndim - 1)
    top = p00 + p01  # the product applied to (1, 1)
    bottom = p10 + p11
    return top / bottom


def tridiagonal_solve(diagonal, off, rhs):
    """``x = H^-1 rhs`` and ``log |H|`` for symmetric positive-definite tridiagonal ``H``
    (``diagonal`` [S, U], ``off`` [U - 1] shared by the seeds, ``rhs`` [S, U]): its
    bidiagonal Cholesky factor and the two triangular sweeps, each an associative scan
    (O(U log U) arithmetic in log depth; no LAPACK call: a batched LAPACK Cholesky under the
    chains' pmap hung XLA's CPU runtime)."""
    off_before = jnp.concatenate([jnp.zeros((1,), off.dtype), off])  # H[u, u-1] (0 for the first cell)
    pivots = jnp.maximum(_bidiagonal_factor(diagonal, jnp.broadcast_to(jnp.square(off_before), diagonal.shape)),
                         _TINY_VARIANCE)
    l = jnp.sqrt(pivots)
    l_before = jnp.concatenate([jnp.ones_like(l[..., :1]), l[..., :-1]], axis=-1)
    m = off_before / l_before  # the factor's sub-diagonal: L[u, u-1]
    y = _affine_scan(-m / l, rhs / l)  # L y = rhs
    m_after = jnp.concatenate([m[..., 1:], jnp.zeros_like(m[..., :1])], axis=-1)
    x = _affine_scan(-m_after / l, y / l, reverse=True)  # L^T x = y
    return x, jnp.sum(jnp.log(pivots), axis=-1)


def _newton_step(cell_log_lik, d, diagonal, off):
    """One Newton step towards the mode of ``sum cell_log_lik(d) - d^T Q d / 2`` per seed
    (``d`` [S, U]; ``Q`` tridiagonal, :func:`ou_precision`); returns the new ``d`` and, at
    the old ``d``, ``log |Q + diag(w)|`` [S] with ``w`` the cells' negative curvature
    (floored at 0: the families are log-concave in the link, the beta-binomial nearly so)."""
    ones = jnp.ones_like(d)

    def slope_of(x):
        return jax.jvp(cell_log_lik, (x,), (ones,))[1]

    slope, curvature = jax.jvp(slope_of, (d,), (ones,))  # the cells are independent: elementwise
    w = jnp.maximum(jnp.where(jnp.isfinite(curvature), -curvature, 0.0), 0.0)
    slope = jnp.where(jnp.isfinite(slope), slope, 0.0)
    return tridiagonal_solve(diagonal[None] + w, off, w * d + slope)


def laplace_deviation(observation, mean, obs_params: dict, data):
    """Inside the numpyro model at inference: the deviation integrated out of the likelihood
    by a Laplace approximation (the embedded Laplace approximation of Margossian et al. 2020,
    as in INLA), so NUTS samples the mechanism, the observation parameters and the
    deviation's size and timescale, and never the S x U path. Per seed, with ``l_u(d_u)``
    the cell's log-likelihood at link value ``link(level_u) + d_u`` and ``Q`` the OU
    precision (:func:`ou_precision`)::

        log p(y_s | theta) ~ sum_u l_u(d*_u) - d*^T Q d* / 2 + log|Q| / 2 - log|Q + W*| / 2

    with ``d*`` the mode of ``sum_u l_u(d_u) - d^T Q d / 2`` (:data:`LAPLACE_STEPS` Newton
    steps from 0, outside the gradient) and ``W*`` the cells' negative curvature there. The
    gradient is exact for this value: one more Newton step from the mode, inside the
    gradient, carries ``d d*/d theta`` (a Newton map's derivative in ``d`` vanishes at its
    fixed point). Exact for the lognormal's Gaussian log-scale; for counts the integrand is
    close to Gaussian in the link (hundreds of episodes per update; one Newton step from
    0 already lands near the mode). Why not sample the path: with hundreds of episodes per
    update every ``d[s, u]`` is pinned by its own cell, and the S x U non-centred
    coordinates tied to the size, the timescale and the mechanism left NUTS at step sizes
    of 3e-4, every transition at the tree-depth cap and R-hat up to 9.9 on the campaign's
    400-update run.

    Records ``deviation_time``, ``deviation`` (``d*``: the deviation's conditional mode given
    the draw's mechanism and process, [S, U]) and ``deviated_level`` (``inv_link(link(level)
    + d*)``); returns the log-likelihood (a scalar, data-only constants left out as in
    ``log_kernel``)."""
    family = observation.family
    time = numpyro.deterministic("deviation_time",
                                 deviation_time(obs_params["deviation_time_position"], data.deviation_time_bounds))
    sd = obs_params["deviation_sd"]
    eta = link(family, mean)
    diagonal, off, rho, precision, log_det_q = ou_precision(data.tau, sd, time)

    reference = observation.reference_log_kernel(data.y, data.exposure, data.mask)  # a constant: see sampler_log_kernel

    def cell_log_lik(d):
        return observation.log_kernel(data.y, inv_link(family, eta + d), data.exposure, data.mask, obs_params) - reference

    def iterate(d, _):
        new, _ = _newton_step(cell_log_lik, d, diagonal, off)
        # a step of at most LAPLACE_MAX_STEP link units per cell (a far start on a flat cell)
        return d + jnp.clip(jnp.where(jnp.isfinite(new), new - d, 0.0), -LAPLACE_MAX_STEP, LAPLACE_MAX_STEP), None

    mode, _ = jax.lax.scan(iterate, jnp.zeros_like(eta), None, length=LAPLACE_STEPS)
    d, _ = _newton_step(cell_log_lik, jax.lax.stop_gradient(mode), diagonal, off)
    _, log_det_h = _newton_step(cell_log_lik, d, diagonal, off)
    previous = jnp.concatenate([jnp.zeros_like(d[:, :1]), d[:, :-1]], axis=1)
    quadratic = jnp.sum(precision * jnp.square(d - rho * previous))  # d^T Q d
    value = jnp.sum(cell_log_lik(d)) - 0.5 * quadratic + 0.5 * eta.shape[0] * log_det_q - 0.5 * jnp.sum(log_det_h)
    numpyro.deterministic("deviation", d)
    numpyro.deterministic("deviated_level", deviated(family, mean, d))
    return value


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
    return deviated(family, level, innovation, xp=np)


def prior_paths(constrained: dict, tau, rng: np.random.Generator) -> np.ndarray:
    """Paths ``d`` [n, S, U] drawn from the OU prior (host, numpy) for draws of
    ``deviation_sd`` and ``deviation_time`` ([n] each, in ``constrained``) on the grid ``tau``
    [U], ``S`` from ``constrained["level"]``: what a prior predictive puts where a fit has
    the path's conditional mode given the data (which a prior draw must not see)."""
    shape = np.shape(constrained["level"])
    sd = jnp.asarray(constrained["deviation_sd"], jnp.float32).reshape(shape[0])
    time = jnp.asarray(constrained["deviation_time"], jnp.float32).reshape(shape[0])
    z = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    return np.asarray(jax.vmap(ou_path, in_axes=(0, None, 0, 0))(z, jnp.asarray(tau, jnp.float32), sd, time), np.float64)


# ---------------------------------------------------------------- the log-likelihood stored for comparisons
def _cell_log_density(observation, eta, y, exposure, mask, params):
    return observation.distribution(inv_link(observation.family, eta), exposure, mask, params).log_prob(y)


def _integrated_log_density(observation, constrained: dict, data, y_filled, centre, variance):
    """``log integral p(y[s, u] | inv_link(link(level) + x)) Normal(x; centre, variance) dx``
    [S, U] for one draw, by adaptive Gauss-Hermite quadrature (:data:`GAUSS_HERMITE_NODES`
    nodes around the integrand's mode, found by :data:`NEWTON_STEPS` Newton steps from
    ``centre``); masked cells 0."""
    params = {name: constrained[name] for name, _ in observation.parameters}
    eta = link(observation.family, constrained["level"])
    variance = jnp.maximum(variance, _TINY_VARIANCE) * jnp.ones_like(centre)

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


def innovation_integrated_log_lik(observation, constrained: dict, data, y_filled):
    """``log p(y[s, u] | d[s, u - 1], theta)`` [S, U] for one draw (``constrained``: its
    constrained sites and deterministics), each cell's innovation integrated out by
    adaptive Gauss-Hermite quadrature (module docstring); masked cells 0."""
    sd, time = constrained["deviation_sd"], constrained["deviation_time"]
    d = constrained["deviation"]
    rho = correlations(data.tau, time)
    previous = jnp.concatenate([jnp.zeros_like(d[:, :1]), d[:, :-1]], axis=1)
    variance = jnp.square(sd) * (1.0 - jnp.square(rho))
    return _integrated_log_density(observation, constrained, data, y_filled, rho * previous, variance)


def forecast_log_lik(observation, constrained: dict, data, y_filled, last_tau):
    """``log p(y[s, u] | y[s, fitted cells], theta)`` [S, U] for one draw of a fit made on
    each seed's cells up to ``last_tau`` [S] (tau units): the leave-future-out score of a
    deviation fit (:func:`valuedyn.fitting.judge._compare.leave_future_out`). A future cell is
    predicted many updates ahead, where the deviation has forgotten most of what the fitted
    updates said: ``x ~ Normal(d[s, u], sd^2 (1 - exp(-2 (tau_u - last_tau_s) / time)))``,
    with ``d`` the draw's conditional mode given the fitted cells only (``constrained``
    from the fit's own data, whose mask holds the fitted cells: past the last of them the
    mode is the OU forecast ``exp(-(tau_u - last_tau_s) / time) d_T``), integrated out as
    the innovation is. So the score is the mechanism's extrapolation plus a deviation
    relaxing to its stationary law, not the one-step-ahead score (where the deviation's
    state carries the prediction and the mechanism hardly matters). The uncertainty of
    ``d_T`` itself is left out (a cell of hundreds of episodes pins it). Masked cells 0."""
    sd, time = constrained["deviation_sd"], constrained["deviation_time"]
    gap = jnp.maximum(data.tau[None, :] - last_tau[:, None], 0.0)  # [S, U]
    variance = jnp.square(sd) * (1.0 - jnp.exp(-2.0 * gap / time))
    return _integrated_log_density(observation, constrained, data, y_filled, constrained["deviation"], variance)


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
    return {"deviation": deviation, "deviation_method": DEVIATION_METHOD, "loglik_kind": LOGLIK_KIND,
            "deviation_summary": json.dumps(deviation_summary(idata, observation.family))}
