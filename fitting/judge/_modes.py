"""Multimodal posteriors: chains that sit in separate modes are found, summarised per mode
and never averaged into one posterior.

Detection. Two chains are in *separate modes* when, for some parameter, their central 90%
intervals do not overlap (a chain that explores slowly still overlaps the others; one in
another basin does not). Chains are grouped into modes by linking every pair that is not
separated (connected components), so a mode is a set of chains that mix with each other.

Per mode: the chains, summaries of every parameter (mean, sd, 5% and 95% quantiles, per
seed), the log density ``lp`` of its draws (mean and max; ``lp`` is the unnormalised log
posterior the sampler walked, Jacobian included) and the gate of
:mod:`valuedyn.fitting.inference._diagnostics` computed on the mode's chains alone. Two modes are of
*similar density* when their mean ``lp`` differ by less than the larger within-mode sd
of ``lp`` (about ``sqrt(d / 2)`` for ``d`` parameters): the data then do not prefer one
mode, which is a statement about identification, not about the sampler.

Comparison. A multimodal fit enters model comparison through *stacking of the modes*
(Yao, Vehtari & Gelman 2022, "Stacking for non-mixing Bayesian computations"): each
mode's draws give pointwise PSIS-LOO predictive densities, the mode weights ``w``
maximise ``sum_i log sum_k w_k p_k(y_i | y_-i)``, and the fit's predictive distribution is
the ``w``-mixture of its modes (:func:`stacked_fit` subsamples each mode in proportion to
its weight, no draw repeated). Why this and not the alternatives: pooling all chains
weights each mode by how many chains happened to land in it (an accident of
initialisation), and keeping only the best-``lp`` mode discards a mode that predicts as
well (the similar-density case, where the choice would be arbitrary). Stacking gives a
mode that predicts badly weight near 0 (then it *is* keeping the best mode) and keeps
both when they predict equally, and the weights are chosen by the same out-of-sample
criterion the comparison then uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: central interval whose disjointness separates two chains
SEPARATION_INTERVAL = 0.90
#: modes that get less stacking weight than this are left out of the stacked fit
MIN_STACKING_WEIGHT = 1e-3


@dataclasses.dataclass
class Mode:
    """One mode: ``chains`` (indices into the fit's chain dimension), ``summary``
    parameter label (``name`` or ``name[seed]``) -> {mean, sd, q05, q95} (the parameter's
    units), ``lp_mean`` / ``lp_sd`` / ``lp_max`` (log density of its draws), ``diagnostics``
    (the gate on its chains alone) and ``weight`` (stacking weight, set by :func:`stack_modes`)."""

    chains: list[int]
    summary: dict[str, dict[str, float]]
    lp_mean: float
    lp_sd: float
    lp_max: float
    diagnostics: dict
    weight: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ModeReport:
    """``modes`` best log density first; ``separated_by``: parameter labels whose chains'
    intervals are disjoint between some two modes; ``similar_density``: the data do not
    prefer one mode (see the module docstring)."""

    modes: list[Mode]
    separated_by: list[str]
    similar_density: bool

    @property
    def multimodal(self) -> bool:
        return len(self.modes) > 1

    def to_dict(self) -> dict:
        return {
            "multimodal": self.multimodal,
            "modes": [m.to_dict() for m in self.modes],
            "separated_by": list(self.separated_by),
            "similar_density": bool(self.similar_density),
        }

    def format(self) -> str:
        if not self.multimodal:
            return "one mode (all chains mix)"
        lines = [
            f"{len(self.modes)} modes (chains in separate modes, separated in {', '.join(self.separated_by[:6])}); "
            f"{'similar' if self.similar_density else 'different'} log density; never averaged:"
        ]
        for index, mode in enumerate(self.modes):
            weight = "" if mode.weight is None else f", stacking weight {mode.weight:.2f}"
            gate = "passes the gate" if mode.diagnostics.get("trustworthy") else "misses the gate"
            values = ", ".join(
                f"{label} {s['mean']:.3g} [{s['q05']:.3g}, {s['q95']:.3g}]"
                for label, s in list(mode.summary.items())[:8]
            )
            lines.append(
                f"  mode {index + 1}: chains {mode.chains}, log density {mode.lp_mean:.1f} (sd {mode.lp_sd:.1f}, max "
                f"{mode.lp_max:.1f}){weight}, {gate}; {values}"
            )
        return "\n".join(lines)


def parameter_names(idata) -> list[str]:
    """The sampled quantities a fit's diagnostics cover: model parameters (per seed),
    population location and scale when hierarchical, observation parameters."""
    from valuedyn.fitting.inference._store import fit_attrs

    attrs = fit_attrs(idata)
    names, observation = list(attrs.get("parameters", [])), list(attrs.get("observation_parameters", []))
    extra = [n + s for n in names for s in ("_loc", "_scale")] if attrs.get("pooling") == "hierarchical" else []
    return [n for n in names + extra + observation if n in idata.posterior]


def _features(idata, names: list[str]) -> tuple[list[str], np.ndarray]:
    """Labels and draws [chain, draw, F] of every scalar quantity (one per seed)."""
    labels, columns = [], []
    for name in names:
        values = np.asarray(idata.posterior[name].values, np.float64)
        if values.ndim == 2:
            labels.append(name)
            columns.append(values)
        else:
            seeds = idata.posterior[name].coords["seed"].values if "seed" in idata.posterior[name].coords else range(values.shape[2])
            for index, seed in enumerate(seeds):
                labels.append(f"{name}[{seed}]")
                columns.append(values[:, :, index])
    return labels, np.stack(columns, axis=-1)


def _separated(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``separated`` [C, C] bool and ``which`` [C, C, F] bool: chains whose central intervals
    are disjoint in some feature."""
    tail = (1.0 - SEPARATION_INTERVAL) / 2
    lo, hi = np.quantile(draws, [tail, 1.0 - tail], axis=1)  # [C, F]
    which = (hi[:, None, :] < lo[None, :, :]) | (hi[None, :, :] < lo[:, None, :])
    return which.any(axis=-1), which


def _components(separated: np.ndarray) -> list[list[int]]:
    n = separated.shape[0]
    label = list(range(n))

    def root(i):
        while label[i] != i:
            label[i] = label[label[i]]
            i = label[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if not separated[i, j]:
                label[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _mode_diagnostics(idata, chains: list[int], names: list[str]) -> dict:
    from valuedyn.fitting.inference._diagnostics import ESS_MIN, RHAT_MAX

    import arviz as az

    posterior = idata.posterior[names].isel(chain=chains)
    rhat = az.rhat(posterior) if len(chains) > 1 else None
    ess_bulk = az.ess(posterior, method="bulk")
    ess_tail = az.ess(posterior, method="tail")

    def extreme(ds, fn):
        values = np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars]).astype(np.float64)
        values = values[np.isfinite(values)]
        return float(fn(values)) if values.size else float("nan")

    rhat_max = extreme(rhat, np.max) if rhat is not None else float("nan")
    divergences = int(np.asarray(idata.sample_stats["diverging"].isel(chain=chains).values).sum())
    ess_bulk_min, ess_tail_min = extreme(ess_bulk, np.min), extreme(ess_tail, np.min)
    # one chain has no between-chain R-hat: the gate then rests on ESS and divergences
    rhat_ok = rhat is None or (np.isfinite(rhat_max) and rhat_max <= RHAT_MAX)
    ok = rhat_ok and ess_bulk_min >= ESS_MIN and ess_tail_min >= ESS_MIN and divergences == 0
    return {
        "rhat_max": rhat_max,
        "ess_bulk_min": ess_bulk_min,
        "ess_tail_min": ess_tail_min,
        "divergences": divergences,
        "trustworthy": int(ok),
    }


def find_modes(idata, names: list[str] | None = None) -> ModeReport:
    """Group the chains of a fit into modes (see the module docstring); ``names``: the
    posterior variables to look at (default: :func:`parameter_names`)."""
    names = parameter_names(idata) if names is None else names
    labels, draws = _features(idata, names)
    separated, which = _separated(draws)
    groups = _components(separated)
    lp = np.asarray(idata.sample_stats["lp"].values, np.float64)  # [chain, draw]
    modes = []
    for chains in groups:
        mode_draws = draws[chains].reshape(-1, draws.shape[-1])
        q05, q95 = np.quantile(mode_draws, [0.05, 0.95], axis=0)
        summary = {
            label: {
                "mean": float(mode_draws[:, f].mean()),
                "sd": float(mode_draws[:, f].std()),
                "q05": float(q05[f]),
                "q95": float(q95[f]),
            }
            for f, label in enumerate(labels)
        }
        mode_lp = lp[chains].ravel()
        modes.append(
            Mode(
                chains=[int(c) for c in chains],
                summary=summary,
                lp_mean=float(mode_lp.mean()),
                lp_sd=float(mode_lp.std()),
                lp_max=float(mode_lp.max()),
                diagnostics=_mode_diagnostics(idata, chains, names) if len(groups) > 1 else {},
            )
        )
    modes.sort(key=lambda m: -m.lp_mean)
    separated_by = []
    if len(modes) > 1:
        between = np.zeros(draws.shape[-1], bool)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                between |= which[np.ix_(groups[a], groups[b])].any(axis=(0, 1))
        separated_by = [labels[f] for f in np.flatnonzero(between)]
    similar = len(modes) > 1 and (modes[0].lp_mean - modes[-1].lp_mean) < max(m.lp_sd for m in modes)
    return ModeReport(modes=modes, separated_by=separated_by, similar_density=bool(similar))


def _pointwise_loo(log_lik: np.ndarray) -> np.ndarray:
    """PSIS-LOO log predictive density of each observation from draws ``log_lik`` [N, n_obs]."""
    import arviz as az
    from scipy.special import logsumexp

    log_weights, _ = az.psislw(-log_lik.T)  # [n_obs, N], normalised
    return logsumexp(np.asarray(log_weights) + log_lik.T, axis=1)


def stacking_weights(pointwise_lpd: np.ndarray, iterations: int = 2000) -> np.ndarray:
    """Weights [K] on the simplex maximising ``sum_i log sum_k w_k exp(lpd[k, i])`` for
    pointwise log predictive densities ``pointwise_lpd`` [K, n_obs] (a concave problem;
    solved by the EM fixed point ``w_k <- mean_i w_k p_ki / sum_j w_j p_ji``)."""
    lpd = np.asarray(pointwise_lpd, np.float64)
    density = np.exp(lpd - lpd.max(axis=0, keepdims=True))  # common factor per i cancels
    weights = np.full(lpd.shape[0], 1.0 / lpd.shape[0])
    for _ in range(iterations):
        mixture = weights @ density
        updated = weights * (density / mixture).mean(axis=1)
        if np.max(np.abs(updated - weights)) < 1e-10:
            weights = updated
            break
        weights = updated
    return weights / weights.sum()


def stack_modes(idata, report: ModeReport) -> np.ndarray:
    """Stacking weights of the modes (stored in ``report.modes[k].weight`` too)."""
    log_lik = np.asarray(idata.log_likelihood["y"].values, np.float64)  # [chain, draw, obs]
    lpd = np.stack([_pointwise_loo(log_lik[m.chains].reshape(-1, log_lik.shape[-1])) for m in report.modes])
    weights = stacking_weights(lpd)
    for mode, weight in zip(report.modes, weights):
        mode.weight = float(weight)
    return weights


def _take(ds, chains: np.ndarray, draws: np.ndarray):
    """Draws (chain[i], draw[i]) of a dataset as one chain."""
    import xarray as xr

    chain_index = xr.DataArray(chains, dims="sample")
    draw_index = xr.DataArray(draws, dims="sample")
    picked = ds.isel(chain=chain_index, draw=draw_index).drop_vars(["chain", "draw"], errors="ignore")
    picked = picked.rename({"sample": "draw"}).assign_coords(draw=np.arange(len(draws)))
    return picked.expand_dims(chain=[0]).transpose("chain", "draw", ...)


def stacked_fit(idata, report: ModeReport | None = None):
    """The fit a multimodal posterior enters comparison with: one chain holding each mode's
    draws in proportion to its stacking weight (evenly thinned, none repeated). A unimodal
    fit is returned unchanged."""
    report = find_modes(idata) if report is None else report
    if not report.multimodal:
        return idata
    weights = stack_modes(idata, report) if report.modes[0].weight is None else np.array([m.weight for m in report.modes])
    n_draws = idata.posterior.sizes["draw"]
    kept = [(m, w) for m, w in zip(report.modes, weights) if w >= MIN_STACKING_WEIGHT]
    total = sum(w for _, w in kept)
    # the largest sample whose share per mode fits in that mode's draws
    size = int(min(len(m.chains) * n_draws / (w / total) for m, w in kept))
    chains, draws = [], []
    for mode, weight in kept:
        count = max(1, int(round(size * weight / total)))
        flat = np.linspace(0, len(mode.chains) * n_draws - 1, count).round().astype(int)
        chains.append(np.asarray(mode.chains)[flat // n_draws])
        draws.append(flat % n_draws)
    chains, draws = np.concatenate(chains), np.concatenate(draws)
    stacked = idata.copy()
    for group in ("posterior", "log_likelihood", "posterior_predictive", "sample_stats"):
        if group in stacked.groups():
            setattr(stacked, group, _take(getattr(idata, group), chains, draws))
    stacked.attrs["stacked_modes"] = str([round(float(w), 4) for w in weights])
    return stacked
