"""Posterior predictive checks (``valuedyn check``): where does a model fail?

- Interval coverage: share of the observed cells inside the central 50% and 90%
  posterior predictive intervals (should be near 0.5 and 0.9); for counts, a cell is inside
  when its randomised predictive PIT lies in the interval's probability range (ties at the
  ends counted by chance, so a cell pinned at 0 is not "inside" every interval).
- LOO-PIT: probability integral transform of each observation under its leave-one-out
  predictive (PSIS weights as ArviZ's ``loo`` and ``loo_pit`` compute them, their relative
  efficiency included: :func:`loo_pit_values`); randomised for counts so a calibrated
  model gives uniform PIT values. Summarised by a Kolmogorov-Smirnov test and the shares
  in the 5% tails.
- Bayesian p-values ``P(T(y_rep) >= T(y))`` per seed for statistics that matter for
  development, computed on the per-update rate (count / exposure, or the value itself
  for continuous data) smoothed by a centred moving average over 5% of the observed
  updates, on observed and replicated data alike:

  =================  ===================================================================
  peak_height        maximum of the smoothed rate
  peak_time          tau of that maximum
  final_level        mean of the smoothed rate over the last 10% of observed updates
  overshoot_ratio    peak_height / final_level
  onset_time         first tau where the rate reaches half the way from start (mean of
                     the first 10%) to the peak
  =================  ===================================================================

  A p-value below 0.05 or above 0.95 is flagged.

A fit of updates aggregated into blocks (``--blocks``; the fit file's ``selection``
attribute records them) is checked on its blocks: each cell is a block, its rate the
block's total over its exposure and its ``tau`` the mean of its updates'. The statistics'
windows count cells, so "the last 10 %" of a fit in geometric blocks spans more of the run
than of an unaggregated one; observed and replicated data are summarised alike, so the
p-values keep their meaning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from valuedyn.fitting.inference._store import OBS_DIM, fit_attrs, is_discrete, load_fit, on_grid, save_fit

STATISTICS = ("peak_height", "peak_time", "final_level", "overshoot_ratio", "onset_time")
MAX_DRAWS = 1000


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along the last axis (shrinking at the edges)."""
    if window <= 1:
        return x
    n = x.shape[-1]
    csum = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    half = window // 2
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (csum[..., hi] - csum[..., lo]) / (hi - lo)


def development_statistics(rate: np.ndarray, tau: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of rate series ``[..., T]`` observed at ``tau`` ``[T]``."""
    n = rate.shape[-1]
    smooth = _smooth(rate, max(1, int(round(0.05 * n))))
    edge = max(1, int(round(0.1 * n)))
    peak_index = np.argmax(smooth, axis=-1)
    peak = np.max(smooth, axis=-1)
    final = smooth[..., -edge:].mean(axis=-1)
    start = smooth[..., :edge].mean(axis=-1)
    half = start + 0.5 * (peak - start)
    reached = smooth >= half[..., None]
    onset_index = np.argmax(reached, axis=-1)
    return {
        "peak_height": peak,
        "peak_time": tau[peak_index],
        "final_level": final,
        "overshoot_ratio": peak / np.maximum(final, 1e-9 + 1e-6 * np.abs(peak)),
        "onset_time": tau[onset_index],
    }


def _p_value(replicated: np.ndarray, observed: float) -> float:
    return float(np.mean(replicated > observed) + 0.5 * np.mean(replicated == observed))


def loo_reff(idata) -> float:
    """The relative efficiency of a fit's draws with which ArviZ's ``az.loo`` and
    ``az.loo_pit`` Pareto-smooth the importance weights (the mean over the posterior's
    variables of their mean-ESS, over the draws; 1 for one chain), so the checks' PSIS
    weights and Pareto k are theirs. 1 where that is not finite (a constant variable),
    where ArviZ itself would fail."""
    import arviz as az

    posterior = idata.posterior
    if posterior.sizes["chain"] == 1:
        return 1.0
    ess = az.ess(posterior, method="mean")
    reff = float(np.hstack([ess[v].values.flatten() for v in ess.data_vars]).mean()
                 / (posterior.sizes["chain"] * posterior.sizes["draw"]))
    return reff if np.isfinite(reff) and reff > 0 else 1.0


def loo_pit_values(idata, rng: np.random.Generator) -> dict:
    """LOO-PIT of every observed cell (the order of the fit's ``obs`` dimension) with the
    PSIS weights ArviZ uses (:func:`loo_reff`): ``upper`` = the LOO probability
    ``P(y_rep <= y)``, which is what ``az.loo_pit(idata, y="y")`` returns on a fit file
    (its counts are floats, so ArviZ does not smooth them); ``pit`` = the randomised PIT
    ``P(y_rep < y) + u P(y_rep = y)`` (u ~ U(0, 1) from ``rng``) for counts (uniform under
    a calibrated model, which ``upper`` is not for discrete data), ``upper`` for continuous
    data; ``pareto_k`` of each cell. Arrays [obs]."""
    import arviz as az

    y_obs = np.asarray(idata.observed_data["y"].values, np.float64)  # [obs]
    rep_obs = np.asarray(idata.posterior_predictive["y"].transpose("chain", "draw", OBS_DIM).values, np.float64)
    rep_obs = rep_obs.reshape((-1, rep_obs.shape[-1])).T  # [obs, N]
    log_lik = np.asarray(idata.log_likelihood["y"].transpose("chain", "draw", OBS_DIM).values, np.float64)
    log_lik = log_lik.reshape((-1, log_lik.shape[-1]))  # [N, obs]
    log_weights, pareto_k = az.psislw(-log_lik.T, reff=loo_reff(idata))  # [obs, N]
    log_weights = np.asarray(log_weights)
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    below = (weights * (rep_obs < y_obs[:, None])).sum(axis=1)
    equal = (weights * (rep_obs == y_obs[:, None])).sum(axis=1)
    upper = np.minimum(below + equal, 1.0)
    pit = below + rng.uniform(size=below.shape) * equal if is_discrete(idata) else upper
    return {"pit": np.clip(pit, 0.0, 1.0), "upper": upper, "pareto_k": np.asarray(pareto_k)}


def compute_checks(idata, seed: int = 0) -> dict:
    """All checks of one fit (no file I/O)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    y_obs = np.asarray(idata.observed_data["y"].values, np.float64)  # [obs]
    rep_obs = np.asarray(idata.posterior_predictive["y"].transpose("chain", "draw", OBS_DIM).values, np.float64)
    rep_obs = rep_obs.reshape((-1, rep_obs.shape[-1]))  # [N, obs]
    mask = np.asarray(idata.constant_data["mask"].transpose("seed", "update").values, bool)
    exposure = np.asarray(idata.constant_data["exposure"].transpose("seed", "update").values, np.float64)
    tau = np.asarray(idata.constant_data["tau"].values, np.float64)
    discrete = is_discrete(idata)
    seeds = [int(s) for s in np.asarray(idata.constant_data["seed"].values)]

    # coverage of the central intervals, observed cells only; for counts an interval's ends
    # are ties (a cell at a bound of 0 lags is "inside" for almost every draw), so a count
    # is inside when its randomised predictive PIT P(rep < y) + u P(rep = y) lies in the
    # interval's probability range: the share is `level` in expectation under a calibrated
    # model, as the LOO-PIT below is randomised
    coverage = {}
    if discrete:
        below = (rep_obs < y_obs[None, :]).mean(axis=0)
        equal = (rep_obs == y_obs[None, :]).mean(axis=0)
        # its own stream: the LOO-PIT below draws from ``rng`` as loo_pit_values(idata, default_rng(seed)) does
        position = below + np.random.default_rng([seed, 1]).uniform(size=below.shape) * equal  # [obs]
    for level in (0.5, 0.9):
        if discrete:
            inside = (position >= (1 - level) / 2) & (position <= (1 + level) / 2)
        else:
            lo, hi = np.quantile(rep_obs, [(1 - level) / 2, (1 + level) / 2], axis=0)
            inside = (y_obs >= lo) & (y_obs <= hi)
        coverage[f"{int(level * 100)}"] = float(inside.mean())

    # LOO-PIT with ArviZ's PSIS weights (log-likelihood is stored for the observed cells only)
    values = loo_pit_values(idata, rng)
    pit = values["pit"]
    ks = stats.kstest(pit, "uniform")
    loo_pit = {
        "ks_statistic": float(ks.statistic),
        "ks_p_value": float(ks.pvalue),
        "share_below_0.05": float(np.mean(pit < 0.05)),
        "share_above_0.95": float(np.mean(pit > 0.95)),
        "mean": float(pit.mean()),
        "pareto_k_max": float(np.max(values["pareto_k"])),
        "n": int(pit.size),
    }

    y = on_grid(idata)  # [S, U], NaN where masked
    y_rep = on_grid(idata, "posterior_predictive").reshape((-1,) + mask.shape)  # [N, S, U]
    # Bayesian p-values of development statistics, per seed
    if y_rep.shape[0] > MAX_DRAWS:
        y_rep = y_rep[rng.choice(y_rep.shape[0], MAX_DRAWS, replace=False)]
    continuous = not discrete and np.all(exposure[mask] == 1.0)
    p_values: dict[str, dict[str, float]] = {s: {} for s in STATISTICS}
    observed_stats: dict[str, dict[str, float]] = {s: {} for s in STATISTICS}
    for index, seed_label in enumerate(seeds):
        cells = mask[index]
        if cells.sum() < 3:
            continue
        denominator = 1.0 if continuous else exposure[index, cells]
        obs_rate = y[index, cells] / denominator
        rep_rate = y_rep[:, index, cells] / denominator
        obs_stats = development_statistics(obs_rate, tau[cells])
        rep_stats = development_statistics(rep_rate, tau[cells])
        for name in STATISTICS:
            p_values[name][str(seed_label)] = _p_value(rep_stats[name], float(obs_stats[name]))
            observed_stats[name][str(seed_label)] = float(obs_stats[name])
    flags = [
        f"{name} seed {seed_label}: p = {p:.3f}"
        for name in STATISTICS
        for seed_label, p in p_values[name].items()
        if p < 0.05 or p > 0.95
    ]
    if not 0.4 <= coverage["50"] <= 0.6:
        flags.append(f"50% interval covers {coverage['50']:.2f} of the observations")
    if not 0.85 <= coverage["90"] <= 0.95:
        flags.append(f"90% interval covers {coverage['90']:.2f} of the observations")
    if loo_pit["ks_p_value"] < 0.05:
        flags.append(f"LOO-PIT is not uniform (KS p = {loo_pit['ks_p_value']:.3g})")
    return {
        "coverage": coverage,
        "loo_pit": loo_pit,
        "p_values": p_values,
        "observed": observed_stats,
        "flags": flags,
    }


def check_fit(path, seed: int = 0) -> dict:
    """Compute the checks of a fit file, store them in its ``checks`` attribute (atomic
    rewrite), and return them."""
    path = Path(path)
    idata = load_fit(path)
    checks = attach_checks(idata, seed=seed)
    save_fit(idata, path)
    return checks


def attach_checks(idata, seed: int = 0) -> dict:
    """Compute the checks of an in-memory fit and store them in its ``checks`` attribute
    (what :func:`check_fit` writes; the batch runner passes it to ``fit_trajectory(..., before_write=...)`` before
    its one write)."""
    checks = compute_checks(idata, seed=seed)
    attrs = fit_attrs(idata)
    checks["model"] = attrs.get("model")
    checks["behaviour"] = attrs.get("behaviour")
    idata.attrs["checks"] = json.dumps(checks)
    return checks


def format_checks(checks: dict) -> str:
    lines = [f"checks of {checks.get('model')} on {checks.get('behaviour')}"]
    cov = checks["coverage"]
    lines.append(f"  interval coverage: 50% -> {cov['50']:.2f}, 90% -> {cov['90']:.2f}")
    pit = checks["loo_pit"]
    lines.append(
        f"  LOO-PIT: KS p = {pit['ks_p_value']:.3g}, below 0.05: {pit['share_below_0.05']:.3f}, "
        f"above 0.95: {pit['share_above_0.95']:.3f}, Pareto k max {pit['pareto_k_max']:.2f}"
    )
    seeds = sorted({s for values in checks["p_values"].values() for s in values}, key=lambda s: int(s))
    header = f"  {'Bayesian p-value':<18}" + "".join(f"{'seed ' + s:>10}" for s in seeds)
    lines.append(header)
    for name in STATISTICS:
        row = checks["p_values"][name]
        lines.append(f"  {name:<18}" + "".join(f"{row.get(s, float('nan')):>10.3f}" for s in seeds))
    if checks["flags"]:
        lines.append("  flagged (model misses the data here):")
        lines.extend(f"    {flag}" for flag in checks["flags"])
    else:
        lines.append("  nothing flagged")
    return "\n".join(lines)
