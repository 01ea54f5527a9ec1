"""Observation models: how a model's level becomes a distribution of what was counted.

``mean`` below is the model's level in observation units (probability, mean count per
episode, diversity value), ``exposure`` what the count is out of. Masked cells are made
harmless *before* the distribution is built (exposure 1, y 0 or 1), so neither the log
density nor its gradient sees a 0 * log 0.

=============  =========  ====================================================================
name           family     distribution of ``y``
=============  =========  ====================================================================
binomial       binomial   Binomial(exposure, mean)  (unlocks of finished episodes, action share)
betabinomial   binomial   BetaBinomial(exposure, mean / dispersion, (1 - mean) / dispersion):
                          the per-update success probability scatters around ``mean`` as a
                          Beta of concentration 1 / dispersion (variance ``mean (1 - mean)
                          dispersion / (1 + dispersion)``; count variance ``exposure mean
                          (1 - mean) (1 + (exposure - 1) dispersion / (1 + dispersion))``),
                          for rates that scatter more than a Binomial allows; dispersion 0
                          is the Binomial
poisson        count      Poisson(exposure * mean)  (event total over finished episodes)
negbin         count      NegativeBinomial2(exposure * mean, exposure / dispersion): the sum of
                          ``exposure`` i.i.d. per-episode counts with variance
                          mean + dispersion mean^2; dispersion 0 is the Poisson
lognormal      continuous LogNormal(log mean, sigma)  (diversity index)
=============  =========  ====================================================================

Both overdispersed models name their extra parameter ``dispersion`` (1 / a concentration):
0 is the plain model, a finite place the sampler reaches smoothly, and their log kernels
(and the log densities of :meth:`ObservationModel.distribution`, which the fit stores for
PSIS-LOO) are accurate in float32 all the way down to it. So each is its family's default
(:data:`FAMILY_OBSERVATIONS`): the data decide through the fitted dispersion (near 0: the
plain model), recorded in the fit file like every parameter. A choice between the plain
and the overdispersed model by two fits is :func:`valuedyn.fitting.choose_observation`
(``fit-batch --choose-observation``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from valuedyn._errors import ValuedynError

_EPS = 1e-6
#: the largest Poisson rate a replicate draws from: counts are stored as int32, and numpy's
#: Poisson sampler refuses rates above ~1e19 ("lam value too large"), which a negbin draw's
#: gamma mixing reached in one stagewise fit of the shipped run (a whole fit lost to it)
_MAX_RATE = 1e9


@dataclasses.dataclass(frozen=True)
class ObservationModel:
    name: str
    family: str
    #: observation-model parameter -> default prior (sampled once, shared across seeds)
    parameters: tuple[tuple[str, object], ...]

    def fill(self, y, mask):
        """A harmless stand-in for masked cells (their log density is dropped anyway)."""
        return jnp.where(mask, y, 1.0 if self.family == "continuous" else 0.0)

    def distribution(self, mean, exposure, mask, params: dict):
        """numpyro distribution of ``y`` [S, U] (not yet masked)."""
        exposure = jnp.where(mask, exposure, 1.0)
        if self.name == "binomial":
            # integer trials: numpyro's binomial sampler indexes with them
            trials = jnp.round(exposure).astype(jnp.int32)
            return dist.Binomial(total_count=trials, probs=jnp.clip(mean, _EPS, 1.0 - _EPS))
        if self.name == "betabinomial":
            trials = jnp.round(exposure).astype(jnp.int32)
            p = jnp.clip(mean, _EPS, 1.0 - _EPS)
            phi = 1.0 / _dispersion(params)
            return _StableBetaBinomial(p * phi, (1.0 - p) * phi, total_count=trials)
        if self.name == "poisson":
            return dist.Poisson(exposure * jnp.maximum(mean, _EPS))
        if self.name == "negbin":
            return _StableNegativeBinomial2(
                mean=exposure * jnp.maximum(mean, _EPS), concentration=exposure / _dispersion(params)
            )
        if self.name == "lognormal":
            return dist.LogNormal(jnp.log(jnp.maximum(mean, _EPS)), params["sigma"])
        raise AssertionError(self.name)

    def replicate(self, rng, mean, exposure, mask, params: dict):
        """Posterior predictive draws on the host (numpy): ``mean`` [n, S, U] per posterior
        draw, ``exposure`` and ``mask`` [S, U], ``params`` name -> [n]. Masked cells are 0.
        Integer families come back as int32, the continuous one as float32."""
        mean = np.asarray(mean, np.float64)
        exposure = np.broadcast_to(np.where(mask, exposure, 0.0), mean.shape)
        if self.name == "binomial":
            draws = rng.binomial(np.round(exposure).astype(np.int64), np.clip(mean, _EPS, 1.0 - _EPS))
        elif self.name == "betabinomial":
            p = np.clip(mean, _EPS, 1.0 - _EPS)
            phi = 1.0 / np.maximum(np.asarray(params["dispersion"], np.float64)[:, None, None], DISPERSION_FLOOR)
            draws = rng.binomial(np.round(exposure).astype(np.int64), rng.beta(p * phi, (1.0 - p) * phi))
        elif self.name == "poisson":
            draws = rng.poisson(np.minimum(exposure * np.maximum(mean, _EPS), _MAX_RATE))
        elif self.name == "negbin":
            # NB2(mu, phi) = Poisson(Gamma(shape phi, scale mu / phi)), phi = exposure / dispersion
            mu = exposure * np.maximum(mean, _EPS)
            dispersion = np.maximum(np.asarray(params["dispersion"], np.float64)[:, None, None], DISPERSION_FLOOR)
            phi = np.maximum(exposure / dispersion, 1e-12)
            draws = rng.poisson(np.minimum(rng.gamma(phi, mu / phi), _MAX_RATE))
        elif self.name == "lognormal":
            sigma = np.asarray(params["sigma"], np.float64)[:, None, None]
            draws = np.exp(np.log(np.maximum(mean, _EPS)) + sigma * rng.standard_normal(mean.shape))
        else:
            raise AssertionError(self.name)
        if self.family == "continuous":
            return np.where(mask, draws, 0.0).astype(np.float32)
        return np.where(mask, draws, 0).astype(np.int32)

    def log_kernel(self, y, mean, exposure, mask, params: dict):
        """Log-likelihood per cell up to terms that depend on the data only (what the
        sampler needs; cheaper: no log-gamma of the data). Masked cells give 0."""
        exposure = jnp.where(mask, exposure, 1.0)
        y = self.fill(y, mask)
        if self.name == "binomial":
            p = jnp.clip(mean, _EPS, 1.0 - _EPS)
            value = y * jnp.log(p) + (exposure - y) * jnp.log1p(-p)
        elif self.name == "betabinomial":
            value = _beta_binomial_kernel(y, mean, exposure, _dispersion(params))
        elif self.name == "poisson":
            rate = exposure * jnp.maximum(mean, _EPS)
            value = y * jnp.log(rate) - rate
        elif self.name == "negbin":
            # Written so that no term grows with the total concentration phi = exposure /
            # dispersion: y log mu - (phi + y) log1p(mu / phi) + [lgamma(y + phi) - lgamma(phi)
            # - y log phi]. The textbook form (lgamma(y + phi) - lgamma(phi) + phi log phi
            # - (phi + y) log(phi + mu)) subtracts numbers of size phi log phi; in float32 at
            # the concentrations of nearly Poisson data (phi ~ 1e4) that left errors of
            # 0.01-0.05 nats per cell, several nats of noise over a fit, which collapsed
            # NUTS's step size (every transition at the maximum tree depth, issue 12).
            # As dispersion -> 0 every term tends to the Poisson kernel's y log mu - mu.
            mean = jnp.maximum(mean, _EPS)
            dispersion = _dispersion(params)
            phi = exposure / dispersion
            value = (
                y * jnp.log(exposure * mean)
                - (phi + y) * jnp.log1p(mean * dispersion)
                + log_rising_factorial_ratio(y, phi, mask)
            )
        elif self.name == "lognormal":
            sigma = params["sigma"]
            value = -jnp.log(sigma) - 0.5 * jnp.square((jnp.log(y) - jnp.log(jnp.maximum(mean, _EPS))) / sigma)
        else:
            raise AssertionError(self.name)
        return jnp.where(mask, value, 0.0)

    def sampler_log_kernel(self, y, mean, exposure, mask, params: dict):
        """:meth:`log_kernel` less a constant per cell (:meth:`reference_log_kernel`: the
        kernel at the cell's own observed rate and fixed observation parameters), what NUTS
        samples: the same posterior, with a potential of the size of a deviance instead of
        ``sum y log(exposure mean)`` (a million nats for the campaign's 400-update run of
        episode counts), whose float32 spacing (0.06-0.125 nats at that size) made every
        energy difference noisy: at a target acceptance of 0.97-0.99 dual averaging then
        shrank the step size towards 0 (3e-4, every transition at the tree-depth cap)."""
        return self.log_kernel(y, mean, exposure, mask, params) - self.reference_log_kernel(y, exposure, mask)

    def reference_log_kernel(self, y, exposure, mask):
        """A data-only constant per cell [S, U]: :meth:`log_kernel` at the observed rate
        (``y / exposure``, clipped inside the support; ``y`` for continuous values) with every
        observation parameter at 1 (no dependence on a sampled value)."""
        safe_exposure = jnp.where(mask, exposure, 1.0)
        filled = self.fill(y, mask)
        if self.family == "continuous":
            rate = jnp.maximum(filled, _EPS)
        elif self.family == "binomial":
            rate = jnp.clip(filled / safe_exposure, _EPS, 1.0 - _EPS)
        else:
            rate = jnp.maximum(filled / safe_exposure, _EPS)
        fixed = {name: jnp.ones((), rate.dtype) for name, _ in self.parameters}
        return jax.lax.stop_gradient(self.log_kernel(y, rate, exposure, mask, fixed))


def _beta_binomial_kernel(y, mean, exposure, dispersion):
    """``log B(y + a, n - y + b) - log B(a, b)`` with ``a = p / dispersion``, ``b = (1 - p) /
    dispersion``, ``n = exposure`` (the beta-binomial without its binomial coefficient),
    written as the Binomial kernel plus three rising-factorial ratios that vanish as
    dispersion -> 0. The textbook form subtracts lgamma values of size ``phi log phi``
    (phi = 1 / dispersion): in float32 near the Binomial it is noise of the kind that
    stalled NUTS with the negbin (issue 12); this form is the Binomial's at dispersion 0."""
    p = jnp.clip(mean, _EPS, 1.0 - _EPS)
    phi = 1.0 / dispersion
    # the three ratios in one call (one branch choice instead of three: the conds and their
    # gradients were over a third of this likelihood's cost on the shipped run's 128 cells)
    counts = jnp.stack(jnp.broadcast_arrays(y, exposure - y, exposure))
    shapes = jnp.stack(jnp.broadcast_arrays(p * phi, (1.0 - p) * phi, jnp.broadcast_to(phi, jnp.shape(p))))
    ratios = log_rising_factorial_ratio(counts, shapes)
    return y * jnp.log(p) + (exposure - y) * jnp.log1p(-p) + ratios[0] + ratios[1] - ratios[2]


def _log_binomial_coefficient(n, k):
    gammaln = jax.scipy.special.gammaln
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


class _StableBetaBinomial(dist.BetaBinomial):
    """numpyro's BetaBinomial (its sampler) with a log density accurate in float32 near the
    Binomial (:func:`_beta_binomial_kernel`): the fit's pointwise log-likelihood, which
    PSIS-LOO and :func:`~valuedyn.fitting.choose_observation` compare, comes from here."""

    def log_prob(self, value):
        n = jnp.asarray(self.total_count, jnp.result_type(float))
        total = self.concentration1 + self.concentration0
        kernel = _beta_binomial_kernel(value, self.concentration1 / total, n, 1.0 / total)
        return kernel + _log_binomial_coefficient(n, value)


class _StableNegativeBinomial2(dist.NegativeBinomial2):
    """numpyro's NegativeBinomial2 (its sampler) with the float32-accurate log density of
    the negbin kernel plus its data-only terms (the pointwise log-likelihood for LOO)."""

    def log_prob(self, value):
        phi = self.concentration
        mu = phi / self.rate
        return (
            value * jnp.log(mu) - (phi + value) * jnp.log1p(mu / phi)
            + log_rising_factorial_ratio(value, phi) - jax.scipy.special.gammaln(value + 1.0)
        )


def _dispersion(params: dict):
    """An overdispersed model's dispersion, floored so that 1 / dispersion stays finite."""
    return jnp.maximum(params["dispersion"], DISPERSION_FLOOR)


#: below this the negative binomial is the Poisson (the beta-binomial the Binomial) to float32 precision
DISPERSION_FLOOR = 1e-10
#: lgamma ratio: above this phi the Stirling series (error < 1e-8) replaces lgamma differences
_STIRLING_FROM = 10.0


def log_rising_factorial_ratio(y, phi, mask=None):
    """``lgamma(y + phi) - lgamma(phi) - y log(phi)`` for counts ``y >= 0`` and ``phi > 0``,
    accurate in float32 for any ``phi`` (it tends to ``y (y - 1) / (2 phi)`` as phi -> inf):
    for ``phi >= 10`` from Stirling's series, ``(phi + y - 1/2) log1p(y/phi) - y`` plus the
    1/(12 x) and 1/(360 x^3) terms, with no term of size ``phi log phi``; below, directly.
    The log-gammas of the direct form are computed only when some cell (of ``mask``, if
    given) needs them: they were half the cost of the negbin likelihood's gradient."""
    large = jnp.maximum(phi, _STIRLING_FROM)
    small = jnp.minimum(phi, _STIRLING_FROM)
    ratio = jnp.log1p(y / large)
    inverse, inverse_total = 1.0 / large, 1.0 / (large + y)
    stirling = (
        large * (ratio - y * inverse)  # = phi log1p(y/phi) - y
        + (y - 0.5) * ratio
        + (inverse_total - inverse) / 12.0
        - (inverse_total**3 - inverse**3) / 360.0
    )

    def mixed():
        direct = jax.scipy.special.gammaln(y + small) - jax.scipy.special.gammaln(small) - y * jnp.log(small)
        return jnp.where(phi >= _STIRLING_FROM, stirling, direct)

    needed = phi < _STIRLING_FROM if mask is None else (phi < _STIRLING_FROM) & mask  # cells the direct form must serve
    return jax.lax.cond(jnp.any(needed), mixed, lambda: stirling)


OBSERVATION_MODELS: dict[str, ObservationModel] = {
    "binomial": ObservationModel("binomial", "binomial", ()),
    # dispersion = 1 / (Beta concentration of the per-update rate): 0 is the Binomial, as
    # for the negbin; median 0.067 (concentration 15), 95% below 0.2 (concentration 5, a
    # per-update rate of 0.5 scattering with sd 0.2): with 50-500 finished episodes per
    # update that spans nearly Binomial counts to variances 10-100 times the Binomial's
    "betabinomial": ObservationModel("betabinomial", "binomial", (("dispersion", dist.HalfNormal(0.1)),)),
    "poisson": ObservationModel("poisson", "count", ()),
    # dispersion = 1 / (per-episode concentration): 0 is the Poisson, a finite place the
    # sampler reaches smoothly (log dispersion has an exponential left tail under this
    # prior); median 0.67, 95% below 2 (per-episode variance up to mean + 2 mean^2)
    "negbin": ObservationModel("negbin", "count", (("dispersion", dist.HalfNormal(1.0)),)),
    "lognormal": ObservationModel("lognormal", "continuous", (("sigma", dist.HalfNormal(0.5)),)),
}

#: family -> observation models that respect it; the first is the default
FAMILY_OBSERVATIONS = {
    # the beta-binomial first, as the negbin for counts: it nests the Binomial (dispersion
    # 0) and real unlock rates scatter more than a Binomial allows. On the shipped run
    # logistic_onset's Binomial fit of unlock:collect_sapling (a fast rise then a slow ramp
    # that no logistic follows within Binomial noise) had 48 divergences at 4 x (500 + 1000),
    # target 0.99, tree depth 10 (the posterior a narrow curved ridge), its beta-binomial
    # fit none, R-hat 1.004, bulk ESS 1180, at 54 leapfrog steps per iteration
    "binomial": ("betabinomial", "binomial"),
    "count": ("negbin", "poisson"),
    "continuous": ("lognormal",),
}


def observation_for(family: str, requested: str | None) -> ObservationModel:
    """The observation model for a data family; refuse one that does not respect what was counted."""
    allowed = FAMILY_OBSERVATIONS[family]
    if requested in (None, "", "auto", "default"):
        return OBSERVATION_MODELS[allowed[0]]
    if requested not in allowed:
        raise ValuedynError(
            f"--observation {requested!r} does not fit {family} data; use one of {', '.join(allowed)} "
            f"(binomial or betabinomial for unlocks and actions, poisson/negbin for event totals, lognormal for diversity)"
        )
    return OBSERVATION_MODELS[requested]
