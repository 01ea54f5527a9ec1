"""Does a motif depend on the conditions of training? One fit across conditions.

**Conditions from files** (:func:`find_conditions`). Each trajectory file stores its full
training config as JSON (attribute ``config``). The settings whose values are not the same
in every file are the *conditions*; each condition is named by its values of those settings
(e.g. ``reward_every=[place_plant]`` vs ``reward_every=[]``), and files of the same
condition pool their seeds. Settings that change how a run was driven or which agents it
holds, not what was trained, are ignored (:data:`IGNORED_SETTINGS`): the trainer's
run-only fields (out path, resume, force, progress, distributed, checkpoint cadence), the
seeds (``seed`` base seed and ``seeds`` count: two files of 1 seed each with base seeds 0
and 1 are the same condition with two seeds), and ``chunk_updates`` (how many updates one
jitted call holds; the trained agents are the same).

**The model** (:func:`build_conditions_model`). For every parameter ``p`` of the dynamical
model, condition ``c`` and seed ``s`` in condition ``c[s]``::

    p_loc[c]  ~ Normal(m, s)                          one population location per condition
    p_scale   ~ LogNormal(log(0.25 s), 0.75)          one between-seed scale, shared
    u[s]      ~ Normal(p_loc[c[s]], p_scale)          seeds partially pooled within condition
    p[s]      = T(u[s])

with ``T``, ``m``, ``s`` the bijection and moment-matched prior of the single fits
(:func:`valuedyn.fitting._model.parameter_spaces`), so a conditions fit of one condition is
the single hierarchical fit. The scale is *shared* across conditions: with 1-4 seeds per
condition a per-condition scale is hardly informed by the data (its posterior would be its
prior), and a condition change is expected to move the typical value of a parameter, not
the seed-to-seed spread of training runs; sharing lets every seed inform the spread, which
is what makes a location difference measurable with few seeds. Observation parameters
(the negative binomial's concentration, the lognormal's sigma) are shared too. ``u`` is
sampled in the same partially centred coordinates as single fits, with the weights chosen
from the curvature at the MAP (:func:`valuedyn.fitting._model.centring_weights`).

**Effects** (:func:`condition_effects`). The typical value of ``p`` in condition ``c`` is
``T(p_loc[c])`` (the population median of ``p``, in the model's units). For every pair of
conditions (b after a, in the order the conditions were found) the posterior of the
difference ``T(p_loc[b]) - T(p_loc[a])`` and of the ratio ``T(p_loc[b]) / T(p_loc[a])`` is
stored in the fit file (posterior variables ``p_difference[pair]``, ``p_ratio[pair]``) and
summarised (median, 90 % interval, probability of each sign). An effect is *clear* when
its 90 % interval excludes 0 (equivalently the probability of its sign exceeds 0.95) and
the fit passes the diagnostics gate; an untrustworthy fit declares no effect.

Levels of count behaviours are normalised by one ``level_scale`` over the pooled data of
all conditions, so level parameters (floor, optimum, excess) are comparable across
conditions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from valuedyn._config import config_to_json
from valuedyn._errors import ValuedynError
from valuedyn._io import file_sha256, provenance, refuse_overwrite, require_file

#: training settings that do not define a condition (see the module docstring)
IGNORED_SETTINGS = ("config_class", "out", "resume", "force", "progress", "distributed", "checkpoint_every",
                    "seed", "seeds", "chunk_updates")

#: probability of the sign above which (with a trustworthy fit) an effect is clear: the
#: 90 % interval then excludes 0
CLEAR_SIGN_PROBABILITY = 0.95
INTERVAL = (0.05, 0.95)


# ---------------------------------------------------------------- conditions from files
@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition: its ``name``, its values of the differing ``settings``, and the
    ``files`` (paths) whose seeds it pools."""

    name: str
    settings: dict
    files: tuple[str, ...]


def _format_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def condition_name(settings: dict) -> str:
    """``{"recurrent": True, "gru_hidden": 64}`` -> ``"gru_hidden=64, recurrent=true"``."""
    return ", ".join(f"{key}={_format_value(settings[key])}" for key in sorted(settings))


def read_config(path) -> dict:
    """The training config stored in a trajectory file's attributes (file not loaded)."""
    import xarray as xr

    path = require_file(path, "trajectory file")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            text = ds.attrs.get("config")
    except Exception as err:  # h5py raises many types for a corrupt file
        raise ValuedynError(f"cannot read {path} as netCDF4 ({type(err).__name__}: {err}); pass trajectory files") from None
    try:
        config = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        raise ValuedynError(
            f"{path}: attribute 'config' is missing or not a JSON object; conditions are read from the training "
            "config that `valuedyn train` stores, so pass files written by it"
        )
    return config


def find_conditions(paths, configs: list[dict] | None = None) -> tuple[list[Condition], tuple[str, ...]]:
    """Group trajectory files by the settings that differ between their configs.

    Returns (conditions in order of first appearance, the differing setting names). A
    setting absent from a file counts as ``None``. Raises :class:`ValuedynError` for fewer
    than two files, a file named twice, or files that do not differ in any setting."""
    paths = [str(p) for p in paths]
    if len(paths) < 2:
        raise ValuedynError(f"a comparison of conditions needs at least 2 trajectory files; received {len(paths)}")
    resolved = [str(Path(p).resolve()) for p in paths]
    if len(set(resolved)) < len(resolved):
        twice = sorted({p for p in paths if resolved.count(str(Path(p).resolve())) > 1})
        raise ValuedynError(f"trajectory files {twice} are named more than once; name each file once")
    configs = configs if configs is not None else [read_config(p) for p in paths]
    keys = sorted({k for c in configs for k in c} - set(IGNORED_SETTINGS))
    differing = tuple(k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1)
    if not differing:
        raise ValuedynError(
            f"the {len(paths)} trajectory files were trained with the same settings (ignoring {', '.join(IGNORED_SETTINGS[1:])}); "
            "a comparison needs files that differ in a setting such as --reward-every or --recurrent"
        )
    groups: dict[str, list] = {}
    for path, config in zip(paths, configs):
        settings = {k: config.get(k) for k in differing}
        groups.setdefault(condition_name(settings), [settings, []])[1].append(path)
    conditions = [Condition(name, settings, tuple(files)) for name, (settings, files) in groups.items()]
    return conditions, differing


# ---------------------------------------------------------------- pooled data
@dataclasses.dataclass(frozen=True)
class ConditionsSelection:
    """The pooled data of all conditions. ``selection``: one
    :class:`~valuedyn.fitting._select.Selection` over every seed of every file (seed axis
    = the files' seeds one after another; its ``seeds`` are 0..S-1); ``condition_index``
    [S]: the condition of each seed; ``seed_file``, ``seed_label`` [S]: where each seed
    came from."""

    selection: object
    conditions: list[Condition]
    differing: tuple[str, ...]
    condition_index: np.ndarray
    seed_file: list[str]
    seed_label: list[int]
    sha256: dict


def pool_conditions(paths, behaviour: str, updates=None) -> ConditionsSelection:
    """Read the files, find the conditions, select ``behaviour`` in each file and pool the
    seeds. All files must share one update grid (the same ``env_step`` coordinate)."""
    from valuedyn.data import open_trajectory
    from valuedyn.fitting._select import _level_scale, select_behaviour

    paths = [str(require_file(p, "trajectory file")) for p in paths]
    datasets = [open_trajectory(p) for p in paths]
    configs = []
    for path, ds in zip(paths, datasets):
        try:
            config = json.loads(ds.attrs["config"])
        except (TypeError, json.JSONDecodeError):
            config = None
        if not isinstance(config, dict):
            raise ValuedynError(f"{path}: attribute 'config' is not a JSON object; pass files written by `valuedyn train`")
        configs.append(config)
    conditions, differing = find_conditions(paths, configs)
    condition_of = {f: i for i, c in enumerate(conditions) for f in c.files}
    selections = [select_behaviour(ds, behaviour, None, updates) for ds in datasets]
    first = selections[0]
    for path, sel in zip(paths[1:], selections[1:]):
        if sel.env_step.shape != first.env_step.shape or not np.array_equal(sel.env_step, first.env_step):
            raise ValuedynError(
                f"{path} has another update grid than {paths[0]} ({len(sel.env_step)} updates, env steps "
                f"{sel.env_step[0]:.0f}..{sel.env_step[-1]:.0f} vs {len(first.env_step)}, {first.env_step[0]:.0f}.."
                f"{first.env_step[-1]:.0f}); conditions are compared on one grid: train them with the same "
                "--total-steps, --num-envs and --num-steps, or select a common window with --updates"
            )
    y = np.concatenate([s.y for s in selections])
    exposure = np.concatenate([s.exposure for s in selections])
    mask = np.concatenate([s.mask for s in selections])
    n_seeds = y.shape[0]
    pooled = dataclasses.replace(
        first, seeds=np.arange(n_seeds), y=y, exposure=exposure, mask=mask,
        level_scale=_level_scale(first.family, y, exposure, mask),
    )
    condition_index = np.concatenate([np.full(len(s.seeds), condition_of[p]) for p, s in zip(paths, selections)])
    seed_file = [p for p, s in zip(paths, selections) for _ in s.seeds]
    seed_label = [int(label) for s in selections for label in s.seeds]
    return ConditionsSelection(pooled, conditions, differing, condition_index.astype(np.int32), seed_file, seed_label,
                               {p: file_sha256(p) for p in paths})


# ---------------------------------------------------------------- the numpyro model
class ConditionData(NamedTuple):
    """:class:`~valuedyn.fitting._model.FitData` plus ``condition`` [S] (int32): the
    condition of each seed. Same units and shapes otherwise."""

    y: object
    exposure: object
    mask: object
    tau: object
    level_scale: object
    centring: object
    location: object  # unused: conditions keep their own locations per condition
    condition: object


def condition_data(pooled: ConditionsSelection, n_parameters: int) -> ConditionData:
    import jax.numpy as jnp

    from valuedyn.fitting._model import fit_data

    base = fit_data(pooled.selection, n_parameters)
    return ConditionData(*base, condition=jnp.asarray(pooled.condition_index, jnp.int32))


def build_conditions_model(model, observation, observable: str, n_conditions: int):
    """``numpyro_model(data: ConditionData, observe=True, count_failures=False)``, the
    hierarchy of the module docstring; sites ``p_loc`` [C], ``p_scale``, ``p_z`` [S],
    deterministics ``p`` [S] and ``level`` [S, U]; likelihood as in single fits."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from valuedyn.fitting._model import SCALE_PRIOR_MEAN, SCALE_PRIOR_SD, _record_failure, parameter_spaces

    spaces = parameter_spaces(model)

    def numpyro_model(data: ConditionData, observe: bool = True, count_failures: bool = False):
        n_seeds = data.y.shape[0]
        params = {}
        for index, space in enumerate(spaces):
            with numpyro.plate("condition", n_conditions):
                loc = numpyro.sample(f"{space.name}_loc", dist.Normal(space.loc_mean, space.loc_sd))
            scale = numpyro.sample(
                f"{space.name}_scale", dist.LogNormal(math.log(SCALE_PRIOR_MEAN * space.loc_sd), SCALE_PRIOR_SD)
            )
            seed_loc = loc[data.condition]
            weight = data.centring[index]
            log_scale = jnp.log(jnp.maximum(scale, jnp.finfo(jnp.float32).tiny))
            with numpyro.plate("seed", n_seeds):
                z = numpyro.sample(f"{space.name}_z", dist.Normal(weight * seed_loc, jnp.exp(weight * log_scale)))
            unconstrained = seed_loc + jnp.exp((1.0 - weight) * log_scale) * (z - weight * seed_loc)
            params[space.name] = numpyro.deterministic(space.name, space.transform(unconstrained))
        obs_params = {name: numpyro.sample(name, prior) for name, prior in observation.parameters}

        outputs, ok = jax.vmap(lambda p: model.solve_binned(p, data.tau))(params)
        mean = outputs[observable] * data.level_scale
        ok = jnp.all(ok) & jnp.all(jnp.isfinite(mean))
        mean = jnp.where(ok, mean, 0.5 * data.level_scale)
        numpyro.deterministic("level", mean)
        if count_failures:
            jax.lax.cond(ok, lambda: None, lambda: jax.debug.callback(_record_failure, ok))
        numpyro.factor("solve_ok", jnp.where(ok, 0.0, -jnp.inf))
        if observe:
            numpyro.factor("y_loglik", jnp.sum(observation.log_kernel(data.y, mean, data.exposure, data.mask, obs_params)))
        else:
            distribution = observation.distribution(mean, data.exposure, data.mask, obs_params)
            with numpyro.plate("seed_obs", n_seeds, dim=-2), numpyro.plate("update", data.y.shape[1], dim=-1):
                numpyro.sample("y", distribution.mask(data.mask))

    return numpyro_model


def _recentre(spaces, point: dict, old: np.ndarray, new: np.ndarray, condition_index: np.ndarray) -> dict:
    """Move a point between the coordinates of centring weights ``old`` and ``new`` [P, S]
    (keeps ``u``; the conditions version of :func:`valuedyn.fitting._model.recentre`)."""
    import jax.numpy as jnp

    out = dict(point)
    for index, s in enumerate(spaces):
        loc = point[f"{s.name}_loc"][..., condition_index]
        log_scale = point[f"{s.name}_scale"][..., None]  # unconstrained: the log of the scale
        w_old, w_new = jnp.asarray(old[index], jnp.float32), jnp.asarray(new[index], jnp.float32)
        u = loc + jnp.exp((1.0 - w_old) * log_scale) * (point[f"{s.name}_z"] - w_old * loc)
        out[f"{s.name}_z"] = w_new * loc + jnp.exp((w_new - 1.0) * log_scale) * (u - loc)
    return out


# ---------------------------------------------------------------- sampling (the one place)
def sample_conditions(model, observation, observable: str, data: ConditionData, n_conditions: int, settings, *,
                      seed: int, parameterization: str, progress: bool, desc: str):
    """MAP, centring weights, NUTS: the package's compiled sampler
    (:func:`valuedyn.fitting._nuts.compiled_posterior`) run on the conditions model.
    Returns (compiled sampler, data with the centring weights, sampler result)."""
    import jax

    from valuedyn.fitting._model import centring_weights, fixed_centring, likelihood_variances, parameter_spaces
    from valuedyn.fitting._nuts import compiled_posterior

    spaces = parameter_spaces(model)
    compiled = compiled_posterior(
        ("conditions", model.name, id(model), observation.name, observable, n_conditions),
        lambda: build_conditions_model(model, observation, observable, n_conditions),
        data, settings, observation=observation,
    )
    key_map, key_draws, key_nuts = jax.random.split(jax.random.PRNGKey(seed), 3)
    zeros = np.zeros(np.shape(data.centring), np.float32)
    data = data._replace(centring=zeros)
    start, _ = compiled.find_map(data, key_map)
    n_params, n_seeds = zeros.shape
    if parameterization == "auto":
        hessian = np.asarray(compiled._hessian(start, data))
        sigma2, (mean, variance) = likelihood_variances(spaces, start, hessian, compiled.index_of_sites(start))
        normal = np.asarray(jax.random.normal(key_draws, (n_params, 256)), np.float64)
        weights = centring_weights(sigma2, mean[:, None] + np.sqrt(variance)[:, None] * normal)
    else:
        weights = fixed_centring(parameterization, n_params, n_seeds)
    start = _recentre(spaces, start, zeros, weights, np.asarray(data.condition))
    data = data._replace(centring=jax.numpy.asarray(weights))
    data, result = compiled.sample(data, key_nuts, start, progress=progress, desc=desc)
    return compiled, data, result


# ---------------------------------------------------------------- inference and effects
def pair_names(conditions) -> list[tuple[int, int, str]]:
    """(a, b, "name_b vs name_a") for every pair of conditions, b after a."""
    names = [c.name for c in conditions]
    return [(a, b, f"{names[b]} vs {names[a]}") for a in range(len(names)) for b in range(a + 1, len(names))]


def infer_conditions(model, observation, pooled: ConditionsSelection, settings, *, seed: int = 0,
                     parameterization: str = "auto", progress: bool = True):
    """Sample the conditions model and build its InferenceData (every group of the fit-file
    contract, plus ``p_loc`` [condition], ``p_typical`` [condition], ``p_difference`` and
    ``p_ratio`` [pair]); returns (idata, diagnostics)."""
    import arviz as az
    import jax

    from valuedyn.fitting._diagnostics import diagnose
    from valuedyn.fitting._model import observable_for, parameter_spaces

    selection = pooled.selection
    observable = observable_for(model, selection.kind)
    spaces = parameter_spaces(model)
    n_conditions = len(pooled.conditions)
    data = condition_data(pooled, len(spaces))
    compiled, data, result = sample_conditions(
        model, observation, observable, data, n_conditions, settings, seed=seed, parameterization=parameterization,
        progress=progress, desc=f"conditions {model.name} {selection.behaviour}",
    )
    chains, draws = settings.num_chains, settings.num_draws
    flat = {k: np.asarray(v).reshape((chains * draws,) + v.shape[2:]) for k, v in result["z"].items()}
    constrained, log_lik, y_rep = compiled.outputs(data, flat, jax.random.PRNGKey(seed + 1))

    n_seeds, n_updates = selection.y.shape
    pairs = pair_names(pooled.conditions)
    posterior = {}
    for space in spaces:
        name = space.name
        posterior[name] = np.asarray(constrained[name], np.float64).reshape(chains, draws, n_seeds)
        loc = np.asarray(constrained[f"{name}_loc"], np.float64).reshape(chains, draws, n_conditions)
        posterior[f"{name}_loc"] = loc
        posterior[f"{name}_scale"] = np.asarray(constrained[f"{name}_scale"], np.float64).reshape(chains, draws)
        typical = np.asarray(space.transform(loc), np.float64)
        posterior[f"{name}_typical"] = typical
        posterior[f"{name}_difference"] = np.stack([typical[..., b] - typical[..., a] for a, b, _ in pairs], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            posterior[f"{name}_ratio"] = np.stack([typical[..., b] / typical[..., a] for a, b, _ in pairs], axis=-1)
    for name, _ in observation.parameters:
        posterior[name] = np.asarray(constrained[name]).reshape(chains, draws)
    posterior["level"] = np.asarray(constrained["level"], np.float32).reshape(chains, draws, n_seeds, n_updates)

    mask = selection.mask
    obs_seed_index, obs_update_index = np.nonzero(mask)
    log_lik_obs = log_lik[:, obs_seed_index, obs_update_index].reshape(chains, draws, -1).astype(np.float32)
    is_count = selection.family != "continuous"
    y_obs = selection.y.astype(np.int64) if is_count else selection.y.astype(np.float64)
    y_rep = y_rep.reshape(chains, draws, n_seeds, n_updates)
    y_rep = y_rep.astype(np.int32) if is_count else y_rep.astype(np.float32)
    names = [s.name for s in spaces]
    dims = {name: ["seed"] for name in names}
    for name in names:
        dims[f"{name}_loc"] = dims[f"{name}_typical"] = ["condition"]
        dims[f"{name}_difference"] = dims[f"{name}_ratio"] = ["pair"]
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive={"y": y_rep},
        log_likelihood={"y": log_lik_obs},
        observed_data={"y": y_obs},
        constant_data={
            "exposure": selection.exposure, "mask": mask, "env_step": selection.env_step, "tau": selection.tau,
            "level_scale": np.asarray(selection.level_scale), "condition_index": pooled.condition_index,
        },
        sample_stats={
            "diverging": result["diverging"], "tree_depth": result["tree_depth"], "n_steps": result["n_steps"],
            "acceptance_rate": result["acceptance_rate"], "energy": result["energy"],
            "lp": -result["potential_energy"], "step_size": result["step_size"],
        },
        coords={
            "seed": np.arange(n_seeds), "update": selection.updates,
            "condition": [c.name for c in pooled.conditions], "pair": [p[2] for p in pairs],
        },
        dims={**dims, "level": ["seed", "update"], "y": ["seed", "update"], "exposure": ["seed", "update"],
              "mask": ["seed", "update"], "env_step": ["update"], "tau": ["update"], "condition_index": ["seed"]},
    )
    ll = idata.log_likelihood.rename({"y_dim_0": "obs"})
    idata.log_likelihood = ll.assign_coords(obs_seed=("obs", obs_seed_index), obs_update=("obs", selection.updates[obs_update_index]))
    diagnosed = [n + s for n in names for s in ("", "_loc", "_scale")] + [n for n, _ in observation.parameters]
    diagnostics = diagnose(idata, diagnosed, settings.max_tree_depth, result["failed_solves"])
    diagnostics["centring"] = np.asarray(data.centring).round(3).tolist()
    return idata, diagnostics


def summarise_effect(name: str, pair: str, difference, ratio, trustworthy: bool) -> dict:
    """The summary of one effect from its posterior draws (any shape) of the difference and
    the ratio; the keys of :func:`condition_effects`."""
    d = np.asarray(difference, np.float64).reshape(-1)
    r = np.asarray(ratio, np.float64).reshape(-1)
    d, r = d[np.isfinite(d)], r[np.isfinite(r)]
    p_positive = float(np.mean(d > 0))
    low, median, high = np.quantile(d, [INTERVAL[0], 0.5, INTERVAL[1]])
    r_low, r_median, r_high = np.quantile(r, [INTERVAL[0], 0.5, INTERVAL[1]]) if r.size else (np.nan,) * 3
    return {
        "parameter": name,
        "pair": pair,
        "difference": {"median": float(median), "low": float(low), "high": float(high)},
        "ratio": {"median": float(r_median), "low": float(r_low), "high": float(r_high)},
        "p_positive": p_positive,
        "sign_probability": max(p_positive, 1.0 - p_positive),
        "sign": 1 if p_positive >= 0.5 else -1,
        "clear": bool(trustworthy and (low > 0 or high < 0)),
    }


def condition_effects(idata, trustworthy: bool | None = None) -> list[dict]:
    """Summaries of every effect in a conditions fit: one dict per (parameter, pair) with
    ``parameter``, ``pair``, ``difference`` and ``ratio`` (each median, ``low``/``high``: the
    90 % interval), ``p_positive`` (P(difference > 0)), ``sign_probability`` (of the more
    probable sign), ``sign`` (+1/-1) and ``clear`` (interval excludes 0 and the fit is
    trustworthy). ``trustworthy`` defaults to the fit file's verdict."""
    if trustworthy is None:
        trustworthy = bool(int(idata.attrs.get("trustworthy", 0)))
    parameters = json.loads(idata.attrs["parameters"]) if "parameters" in idata.attrs else [
        v[: -len("_difference")] for v in idata.posterior.data_vars if v.endswith("_difference")
    ]
    out = []
    for parameter in parameters:
        difference = idata.posterior[f"{parameter}_difference"]
        ratio = idata.posterior[f"{parameter}_ratio"]
        for pair in difference["pair"].values:
            out.append(summarise_effect(parameter, str(pair), difference.sel(pair=pair).values,
                                        ratio.sel(pair=pair).values, trustworthy))
    return out


def conditions_attrs(idata) -> dict:
    """The conditions-specific attributes of a conditions fit, JSON decoded: ``conditions``
    (name, settings, files, seeds), ``differing_settings``, ``effects``, ``diagnostics``,
    ``trustworthy``. :class:`ValuedynError` for a file that is not a conditions fit."""
    attrs = dict(idata.attrs)
    if attrs.get("pooling") != "conditions" or "conditions" not in attrs:
        raise ValuedynError(
            f"this fit file is a {attrs.get('pooling', 'unknown')!r} fit, not a conditions fit; pass a file written by "
            "`valuedyn conditions`"
        )
    out = {}
    for key in ("conditions", "differing_settings", "effects", "diagnostics", "checks"):
        if key in attrs:
            out[key] = json.loads(attrs[key])
    out["trustworthy"] = bool(int(attrs.get("trustworthy", 0)))
    return out


def format_effects(effects: list[dict], trustworthy: bool) -> str:
    lines = [f"{'parameter':<10} {'pair':<44} {'difference [90% interval]':>32} {'ratio [90% interval]':>26} {'P(sign)':>8}"]
    for e in effects:
        d, r = e["difference"], e["ratio"]
        mark = "  clear" if e["clear"] else ""
        lines.append(
            f"{e['parameter']:<10} {e['pair'][:44]:<44} {d['median']:>10.3g} [{d['low']:>8.3g}, {d['high']:>8.3g}]"
            f" {r['median']:>8.3g} [{r['low']:>6.3g}, {r['high']:>6.3g}] {e['sign_probability']:>8.3f}{mark}"
        )
    if not trustworthy:
        lines.append("the fit misses the diagnostics gate: no effect is reported as a finding")
    return "\n".join(lines)


# ---------------------------------------------------------------- the command's work
def fit_conditions(config) -> Path:
    """Fit ``config`` (a :class:`~valuedyn.fitting._conditions_cli.ConditionsConfig`): read the
    files, find the conditions, sample, run the posterior predictive checks, write the fit
    file atomically and return its path. Bad input raises :class:`ValuedynError` before any
    sampling."""
    from valuedyn.fitting._check import compute_checks
    from valuedyn.fitting._diagnostics import format_diagnostics
    from valuedyn.fitting._fit import get_model, settings_from, validate_sampler_config
    from valuedyn.fitting._model import observable_for, parameter_spaces
    from valuedyn.fitting._observation import observation_for
    from valuedyn.fitting._select import parse_behaviour, parse_updates
    from valuedyn.fitting._store import save_fit

    validate_sampler_config(config)
    parse_behaviour(config.behaviour)
    updates = parse_updates(config.updates)
    if not config.out:
        raise ValuedynError("--out is required: the conditions fit file to write")
    refuse_overwrite(config.out, config.force)
    model = get_model(config.model)
    pooled = pool_conditions(config.trajectories, config.behaviour, updates)
    selection = pooled.selection
    observation = observation_for(selection.family, config.observation)
    observable_for(model, selection.kind)
    idata, diagnostics = infer_conditions(
        model, observation, pooled, settings_from(config), seed=config.seed,
        parameterization=config.parameterization, progress=config.progress,
    )
    spaces = parameter_spaces(model)
    conditions = [
        {
            "name": c.name,
            "settings": c.settings,
            "files": list(c.files),
            "seeds": [int(i) for i in np.flatnonzero(pooled.condition_index == index)],
        }
        for index, c in enumerate(pooled.conditions)
    ]
    idata.attrs.update({
        "model": model.name,
        "behaviour": selection.behaviour,
        "observation_model": observation.name,
        "pooling": "conditions",
        "parameterization": config.parameterization,
        "trajectory": json.dumps(list(pooled.sha256)),
        "trajectory_sha256": json.dumps(pooled.sha256),
        "selection": json.dumps({
            "seeds": [int(s) for s in selection.seeds],
            "seed_file": pooled.seed_file,
            "seed_label": pooled.seed_label,
            "updates": [int(selection.updates[0]), int(selection.updates[-1])],
            "n_updates": int(len(selection.updates)),
        }),
        "config": config_to_json(config),
        "conditions": json.dumps(conditions),
        "differing_settings": json.dumps(list(pooled.differing)),
        "diagnostics": json.dumps(diagnostics, default=float),
        "trustworthy": int(diagnostics["trustworthy"]),
        "failed_solves": int(diagnostics["failed_solves"]),
        "time_scale_env_steps": float(selection.time_scale),
        "time_origin_env_step": float(selection.time_origin),
        "level_scale": float(selection.level_scale),
        "parameters": json.dumps([s.name for s in spaces]),
        "parameter_transforms": json.dumps({s.name: s.transform_name for s in spaces}),
        "observation_parameters": json.dumps([n for n, _ in observation.parameters]),
    })
    idata.attrs.update(provenance())
    # the same posterior predictive checks as a single fit (coverage, LOO-PIT, p-values per seed)
    checks = compute_checks(idata, seed=config.seed)
    checks.update(model=model.name, behaviour=selection.behaviour)
    idata.attrs["checks"] = json.dumps(checks)
    effects = condition_effects(idata, trustworthy=bool(diagnostics["trustworthy"]))
    idata.attrs["effects"] = json.dumps(effects)
    out = Path(config.out)
    refuse_overwrite(out, config.force)  # it may have appeared while sampling
    save_fit(idata, out)
    summary = "; ".join(f"{c['name']}: {len(c['files'])} files, {len(c['seeds'])} seeds" for c in conditions)
    print(f"conditions fit {model.name} to {selection.behaviour} ({summary}; {observation.name}) -> {out}", file=sys.stdout)
    print(format_diagnostics(diagnostics), file=sys.stdout)
    print(format_effects(effects, bool(diagnostics["trustworthy"])), file=sys.stdout)
    return out
