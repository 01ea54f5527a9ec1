"""Simulation-based calibration (``valuedyn sbc``), Talts et al. (2018).

For each simulation: draw every latent quantity from the prior of the full numpyro model
(model parameters under the chosen pooling, observation-model parameters), simulate
data with the observation model (``exposure`` finished episodes per update, no masked
cells, ``tau`` evenly spaced over [0, 1], level scale 1), fit it with the same sampler a
real fit uses (compiled once for all simulations), thin the posterior to ``L`` evenly
spaced draws and record the rank of the truth among them (0..L). If inference is
calibrated, each rank is uniform on 0..L. By default every fit runs at the sampler
settings of the report's fits (:data:`valuedyn.fitting.settings.SBC`: hierarchical pooling,
4 chains x (500 + up to 1000), early stop, target 0.99, tree depth 8, 6 for models without a
closed form), so what is calibrated is the sampler as the fits run it.

Uniformity per scalar parameter: a chi-square test of the rank histogram (``bins``
bins) and a Kolmogorov-Smirnov test of the randomised fractional ranks
``(rank + U) / (L + 1)``; the combined p-value of each test is the Bonferroni minimum
over parameters (min p times their number, capped at 1).
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from valuedyn._config import config_to_json
from valuedyn._errors import ValuedynError
from valuedyn._io import provenance, refuse_overwrite, write_dataset_atomic
from valuedyn.fitting.inference._nuts import SamplerSettings
from valuedyn.fitting.settings import SBC, tree_depth_for, validate_sampler_config

MAX_PRIOR_REDRAWS = 100


@dataclasses.dataclass
class SBCResult:
    dataset: object  # xarray Dataset: ranks [simulation, parameter], truth, ...
    p_chi2: dict
    p_ks: dict
    p_chi2_combined: float
    p_ks_combined: float
    untrustworthy_fits: int
    rejected_prior_draws: int


def _template(kind: str, n_seeds: int, n_updates: int, exposure: float):
    from valuedyn.fitting.inference._select import KIND_FAMILY, Selection

    family = KIND_FAMILY[kind]
    continuous = family == "continuous"
    shape = (n_seeds, n_updates)
    return Selection(
        behaviour=f"{kind}:simulated",
        kind=kind,
        name="simulated",
        family=family,
        seeds=np.arange(n_seeds),
        updates=np.arange(n_updates),
        y=np.zeros(shape, np.float64 if continuous else np.int64),
        exposure=np.full(shape, 1.0 if continuous else float(exposure)),
        mask=np.ones(shape, bool),
        env_step=np.arange(1, n_updates + 1, dtype=np.float64),
        tau=np.linspace(0.0, 1.0, n_updates),
        level_scale=1.0,
        time_origin=1.0,
        time_scale=float(n_updates - 1),
    )


def default_settings(model) -> SamplerSettings:
    """The sampler settings of an SBC fit of ``model`` by default: :data:`~valuedyn.fitting.settings.SBC`'s,
    which are the report's fits' (the tree depth capped for a model without a closed form)."""
    return SamplerSettings(
        num_warmup=SBC.warmup, num_draws=SBC.draws, num_chains=SBC.chains, target_accept=SBC.target_accept,
        max_tree_depth=tree_depth_for(model, SBC.max_tree_depth, SBC.ode_max_tree_depth), dense_mass=SBC.dense_mass,
        saturated_draws=SBC.saturated_draws, min_draws=SBC.min_draws,
    )


def run_sbc(
    model_name: str,
    *,
    kind: str = "unlock",
    observation: str = "auto",
    pooling: str = SBC.pooling,
    simulations: int = 20,
    n_seeds: int = 4,
    n_updates: int = 40,
    exposure: float = 50.0,
    settings: SamplerSettings | None = None,
    thin_to: int = 99,
    bins: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> SBCResult:
    import dataclasses as dc

    import jax
    import xarray as xr
    from numpyro import handlers
    from scipy import stats

    from valuedyn.fitting.inference._fit import compile_for, flat_draws, get_model, sampled_draws
    from valuedyn.fitting.inference._model import fit_data, observable_for, parameter_spaces
    from valuedyn.fitting.inference._observation import observation_for

    if simulations < 2 or n_seeds < 1 or n_updates < 3 or thin_to < 1 or bins < 2 or exposure <= 0:
        raise ValuedynError(
            f"sbc needs simulations >= 2, n_seeds >= 1, n_updates >= 3, thin_to >= 1, bins >= 2, exposure > 0; received "
            f"simulations={simulations}, n_seeds={n_seeds}, n_updates={n_updates}, thin_to={thin_to}, bins={bins}, exposure={exposure}"
        )
    model = get_model(model_name)
    if settings is None:
        settings = default_settings(model)
    # the fewest draws per chain a fit can return: all, or those of an early stop or of a cut
    fewest = min([settings.num_draws] + [n for n in (settings.min_draws, settings.saturated_draws) if n > 0])
    if thin_to > settings.num_chains * fewest:
        raise ValuedynError(
            f"--thin-to {thin_to} exceeds the {settings.num_chains * fewest} posterior draws a fit may return "
            f"({settings.num_chains} chains x {fewest}: --draws, or --min-draws / --saturated-draws where set); "
            "lower it or raise those")
    template = _template(kind, n_seeds, n_updates, exposure)
    obs_model = observation_for(template.family, observation)
    observable = observable_for(model, kind)
    data0 = fit_data(template, len(parameter_spaces(model)))
    compiled = compile_for(model, obs_model, pooling, observable, data0, settings)
    numpyro_model = compiled.model

    def prior_draw(key, data):
        trace = handlers.trace(handlers.seed(numpyro_model, key)).get_trace(data, observe=False)
        values = {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] in ("sample", "deterministic") and name not in ("y", "solve_ok", "level") and not name.endswith(("_z", "_u"))
        }
        ok = jax.numpy.isfinite(trace["solve_ok"]["fn"].log_factor) & jax.numpy.all(jax.numpy.isfinite(trace["y"]["value"]))
        return values, trace["y"]["value"], ok

    prior_draw = jax.jit(prior_draw)
    names = [s.name for s in parameter_spaces(model)]
    ranked = list(names)
    if pooling == "hierarchical":
        ranked += [n + suffix for n in names for suffix in ("_loc", "_scale")]
    ranked += [n for n, _ in obs_model.parameters]

    key = jax.random.PRNGKey(seed)
    components: list[str] | None = None
    ranks, truths = [], []
    untrustworthy = 0
    rejected = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=simulations, desc=f"SBC {model.name}", file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        for index in range(simulations):
            for _ in range(MAX_PRIOR_REDRAWS):
                key, key_prior = jax.random.split(key)
                truth, y, ok = prior_draw(key_prior, data0)
                if bool(ok):
                    break
                rejected += 1
            else:
                raise ValuedynError(
                    f"sbc: {MAX_PRIOR_REDRAWS} prior draws in a row failed to solve for {model.name}; check the model's priors"
                )
            y = np.asarray(y)
            selection = dc.replace(template, y=y.astype(template.y.dtype))
            data = fit_data(selection, len(parameter_spaces(model)))
            key, key_run, key_out = jax.random.split(key, 3)
            data, result = compiled.run(data, key_run, progress=False)
            total_draws = settings.num_chains * sampled_draws(result)  # fewer than asked after an early stop or a cut
            flat = flat_draws(result, settings.num_chains, sampled_draws(result))
            keep = np.linspace(0, total_draws - 1, thin_to).round().astype(int)
            thinned = {k: v[keep] for k, v in flat.items()}
            # the default batch: its kernel was compiled ahead while the first fit sampled
            constrained, _, _ = compiled.outputs(data, thinned, key_out, replicate=False)
            if int(result["diverging"].sum()) > 0:
                untrustworthy += 1
            row_rank, row_truth, row_names = [], [], []
            for name in ranked:
                true_value = np.atleast_1d(np.asarray(truth[name], np.float64))
                draws = np.asarray(constrained[name], np.float64).reshape(thin_to, -1)
                if draws.shape[1] != true_value.size:  # complete pooling: one value
                    draws = draws[:, :1]
                for j in range(true_value.size):
                    row_names.append(name if true_value.size == 1 else f"{name}[{j}]")
                    row_rank.append(int((draws[:, j] < true_value[j]).sum()))
                    row_truth.append(float(true_value[j]))
            components = row_names
            ranks.append(row_rank)
            truths.append(row_truth)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    ranks_arr = np.asarray(ranks, np.int64)
    rng = np.random.default_rng(seed)
    p_chi2, p_ks = {}, {}
    for j, name in enumerate(components):
        counts = np.histogram(ranks_arr[:, j], bins=bins, range=(0, thin_to + 1))[0]
        p_chi2[name] = float(stats.chisquare(counts).pvalue)
        fractional = (ranks_arr[:, j] + rng.uniform(size=ranks_arr.shape[0])) / (thin_to + 1)
        p_ks[name] = float(stats.kstest(fractional, "uniform").pvalue)
    combined = lambda p: float(min(1.0, min(p.values()) * len(p)))  # noqa: E731
    dataset = xr.Dataset(
        {
            "rank": (("simulation", "parameter"), ranks_arr),
            "truth": (("simulation", "parameter"), np.asarray(truths)),
            "p_chi2": (("parameter",), np.array([p_chi2[c] for c in components])),
            "p_ks": (("parameter",), np.array([p_ks[c] for c in components])),
        },
        coords={"simulation": np.arange(simulations), "parameter": components},
        attrs={
            "model": model.name,
            "kind": kind,
            "observation_model": obs_model.name,
            "pooling": pooling,
            "thin_to": int(thin_to),
            "bins": int(bins),
            "p_chi2_combined": combined(p_chi2),
            "p_ks_combined": combined(p_ks),
            "untrustworthy_fits": int(untrustworthy),
            "rejected_prior_draws": int(rejected),
            **provenance(),
        },
    )
    return SBCResult(dataset, p_chi2, p_ks, combined(p_chi2), combined(p_ks), untrustworthy, rejected)


def run_sbc_config(config) -> SBCResult:
    """``valuedyn sbc``: :func:`run_sbc` at ``config``'s settings (an
    :class:`~valuedyn.fitting.settings.SBCConfig`), the result written to ``config.out``."""
    from valuedyn.fitting.inference._fit import get_model, settings_from

    refuse_overwrite(config.out, config.force)
    validate_sampler_config(config)
    settings = dataclasses.replace(settings_from(config), max_tree_depth=tree_depth_for(
        get_model(config.model), config.max_tree_depth, config.ode_max_tree_depth))
    result = run_sbc(
        config.model, kind=config.kind, observation=config.observation, pooling=config.pooling,
        simulations=config.simulations, n_seeds=config.n_seeds, n_updates=config.n_updates,
        exposure=config.exposure, settings=settings, thin_to=config.thin_to, bins=config.bins,
        seed=config.seed, progress=config.progress,
    )
    result.dataset.attrs["config"] = config_to_json(config)
    write_dataset_atomic(result.dataset, config.out)
    return result


def format_sbc(result: SBCResult) -> str:
    ds = result.dataset
    lines = [
        f"SBC of {ds.attrs['model']} ({ds.attrs['kind']}, {ds.attrs['observation_model']}, {ds.attrs['pooling']} pooling): "
        f"{ds.sizes['simulation']} simulations, ranks among {ds.attrs['thin_to']} draws",
        f"  {'parameter':<24}{'chi2 p':>10}{'KS p':>10}",
    ]
    for name in ds["parameter"].values:
        lines.append(f"  {str(name):<24}{result.p_chi2[str(name)]:>10.3f}{result.p_ks[str(name)]:>10.3f}")
    lines.append(
        f"  combined (Bonferroni): chi2 p = {result.p_chi2_combined:.3f}, KS p = {result.p_ks_combined:.3f}; "
        f"fits with divergences: {result.untrustworthy_fits}; rejected prior draws: {result.rejected_prior_draws}"
    )
    return "\n".join(lines)


__all__ = ["SBCResult", "run_sbc", "run_sbc_config", "format_sbc", "json"]
