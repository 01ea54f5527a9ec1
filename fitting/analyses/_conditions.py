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
(:func:`valuedyn.fitting.inference._model.parameter_spaces`), so a conditions fit of one condition is
the single hierarchical fit. The scale is *shared* across conditions: with 1-4 seeds per
condition a per-condition scale is hardly informed by the data (its posterior would be its
prior), and a condition change is expected to move the typical value of a parameter, not
the seed-to-seed spread of training runs; sharing lets every seed inform the spread, which
is what makes a location difference measurable with few seeds. Observation parameters
(the negative binomial's concentration, the lognormal's sigma) are shared too. ``u`` is
sampled in the same partially centred coordinates as single fits, with the weights chosen
from the curvature at the MAP (:func:`valuedyn.fitting.inference._model.centring_weights`).

**Effects** (:func:`condition_effects`). The typical value of ``p`` in condition ``c`` is
``T(p_loc[c])`` (the population median of ``p``, in the model's units). For every pair of
conditions (b after a, in the order the conditions were found) the posterior of the
difference ``T(p_loc[b]) - T(p_loc[a])`` and of the ratio ``T(p_loc[b]) / T(p_loc[a])`` is
stored in the fit file (posterior variables ``p_difference[pair]``, ``p_ratio[pair]``) and
summarised (median, 90 % interval, probability of each sign). An effect is *clear* when
its 90 % interval excludes 0 (equivalently the probability of its sign exceeds 0.95) and
the fit is trustworthy by the same verdict as a single fit
(:func:`valuedyn.fitting.judge._trust.classify_fit`: the diagnostics gate, and no cause such as a
parameter not identified or failed predictive checks); an untrustworthy fit declares no
effect. The verdict is stored in the fit file (attribute ``verdict``).

Levels of count behaviours are normalised by one ``level_scale`` over the pooled data of
all conditions, so level parameters (floor, optimum, excess) are comparable across
conditions.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from valuedyn._errors import ValuedynError
from valuedyn._io import file_sha256, refuse_overwrite, require_file

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


def training_config(attrs) -> dict | None:
    """The training config a trajectory's attributes store (``config``, a JSON object), or
    None when it is missing or not one, or when the file was imported (``valuedyn import``
    stores its import settings there, which are no training conditions)."""
    if "source_format" in attrs:
        return None
    text = attrs.get("config")
    try:
        config = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return None
    return config if isinstance(config, dict) else None


def refuse_imported(path, attrs) -> None:
    """Refuse a file written by ``valuedyn import`` in a comparison of conditions: its
    attribute ``config`` holds the import's settings, which must never be taken for the
    conditions of training (another trainer's logs do not say them)."""
    if "source_format" in attrs:
        raise ValuedynError(
            f"{path} was imported from another trainer's logs (valuedyn import, {attrs['source_format']}): its attribute "
            "'config' holds the import's settings, not the conditions of training, so it cannot enter a comparison of "
            "conditions; compare files written by `valuedyn train`, or fit each imported file alone"
        )


def read_config(path) -> dict:
    """The training config stored in a trajectory file's attributes (file not loaded);
    an imported file is refused (:func:`refuse_imported`)."""
    import xarray as xr

    path = require_file(path, "trajectory file")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            attrs = dict(ds.attrs)
    except Exception as err:  # h5py raises many types for a corrupt file
        raise ValuedynError(f"cannot read {path} as netCDF4 ({type(err).__name__}: {err}); pass trajectory files") from None
    refuse_imported(path, attrs)
    config = training_config(attrs)
    if config is None:
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
    conditions, differing = group_conditions(paths, configs)
    if not differing:
        raise ValuedynError(
            f"the {len(paths)} trajectory files were trained with the same settings (ignoring {', '.join(IGNORED_SETTINGS[1:])}); "
            "a comparison needs files that differ in a setting such as --reward-every or --recurrent"
        )
    return conditions, differing


def group_conditions(paths, configs: list[dict]) -> tuple[list[Condition], tuple[str, ...]]:
    """:func:`find_conditions` without its refusals: files whose configs differ in no
    setting form one condition (named ``""``, no differing settings)."""
    paths = [str(p) for p in paths]
    keys = sorted({k for c in configs for k in c} - set(IGNORED_SETTINGS))
    differing = tuple(k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1)
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
    :class:`~valuedyn.fitting.inference._select.Selection` over every seed of every file (seed axis
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


def pool_conditions(paths, behaviour: str, updates=None, seeds=(), max_seeds: int = 0) -> ConditionsSelection:
    """Read the files, find the conditions, select ``behaviour`` in each file and pool the
    seeds (``seeds``: the labels to keep in every file, else the first ``max_seeds`` of
    each, 0 = all; :func:`valuedyn.fitting.inference._select.chosen_seeds`). All files must share one
    update grid (the same ``env_step`` coordinate)."""
    from valuedyn.fitting.inference._select_memory import open_behaviour_data  # a trajectory, or a memory file
    from valuedyn.fitting.inference._select import _level_scale, chosen_seeds, select_behaviour

    paths = [str(require_file(p, "trajectory file")) for p in paths]
    datasets = [open_behaviour_data(p, behaviour) for p in paths]
    configs = []
    for path, ds in zip(paths, datasets):
        refuse_imported(path, ds.attrs)
        config = training_config(ds.attrs)
        if config is None:
            raise ValuedynError(f"{path}: attribute 'config' is not a JSON object; pass files written by `valuedyn train`")
        configs.append(config)
    conditions, differing = find_conditions(paths, configs)
    condition_of = {f: i for i, c in enumerate(conditions) for f in c.files}
    selections = [select_behaviour(ds, behaviour, chosen_seeds(ds, seeds, max_seeds) or None, updates) for ds in datasets]
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
    """:class:`~valuedyn.fitting.inference._model.FitData` plus ``condition`` [S] (int32): the
    condition of each seed. Same units and shapes otherwise."""

    y: object
    exposure: object
    mask: object
    tau: object
    level_scale: object
    centring: object
    location: object  # unused: conditions keep their own locations per condition
    edges: object
    deviation_time_bounds: object
    condition: object


def condition_data(pooled: ConditionsSelection, n_parameters: int, deviation: str = "none") -> ConditionData:
    import jax.numpy as jnp

    from valuedyn.fitting.inference._model import fit_data

    base = fit_data(pooled.selection, n_parameters, deviation)
    return ConditionData(*base, condition=jnp.asarray(pooled.condition_index, jnp.int32))


def build_conditions_model(model, observation, observable: str, n_conditions: int):
    """``numpyro_model(data: ConditionData, observe=True, count_failures=False)``, the
    hierarchy of the module docstring; sites ``p_loc`` [C], ``p_scale``, ``p_z`` [S],
    deterministics ``p`` [S] and ``level`` [S, U]; likelihood as in single fits."""
    import numpyro
    import numpyro.distributions as dist

    from valuedyn.fitting.inference._model import observe_solution, parameter_spaces, population_scale, seed_parameter

    spaces = parameter_spaces(model)

    def numpyro_model(data: ConditionData, observe: bool = True, count_failures: bool = False):
        n_seeds = data.y.shape[0]
        params = {}
        for index, space in enumerate(spaces):
            with numpyro.plate("condition", n_conditions):
                loc = numpyro.sample(f"{space.name}_loc", dist.Normal(space.loc_mean, space.loc_sd))
            params[space.name] = seed_parameter(space, loc[data.condition], population_scale(space), data.centring[index],
                                                n_seeds)
        observe_solution(model, observation, observable, params, data, observe, count_failures)

    return numpyro_model


# ---------------------------------------------------------------- sampling (the one place)
def sample_conditions(model, observation, observable: str, data: ConditionData, n_conditions: int, settings, *,
                      seed: int, parameterization: str, progress: bool, desc: str, n_prior: int = 0):
    """MAP, centring weights, NUTS: the package's compiled sampler
    (:func:`valuedyn.fitting.inference._nuts.compiled_posterior`) run on the conditions model.
    ``n_prior``: prior draws to come (:func:`valuedyn.fitting.inference._fit.prior_draws`), whose
    sampler then compiles on a thread while the chains run. Returns (compiled sampler, data
    with the centring weights, sampler result)."""
    import jax

    from valuedyn.fitting.inference._deviation import deviation_key
    from valuedyn.fitting.inference._fit import prior_sampler
    from valuedyn.fitting.inference._model import centring_weights, fixed_centring, likelihood_variances, parameter_spaces, recentre
    from valuedyn.fitting.inference._nuts import compiled_posterior

    spaces = parameter_spaces(model)
    compiled = compiled_posterior(
        ("conditions", model.name, id(model), observation.name, observable, n_conditions)
        + deviation_key(observation),
        lambda: build_conditions_model(model, observation, observable, n_conditions),
        data, settings, observation=observation, count_failures=not model.closed_form,
    )
    key_map, key_draws, key_nuts = jax.random.split(jax.random.PRNGKey(seed), 3)
    zeros = np.zeros(np.shape(data.centring), np.float32)
    data = data._replace(centring=zeros)
    start, _ = compiled.find_map(data, key_map)
    n_params, n_seeds = zeros.shape
    if parameterization == "auto":
        hessian = compiled.hessian(start, data)
        sigma2, (mean, variance) = likelihood_variances(spaces, start, hessian, compiled.index_of_sites())
        normal = np.asarray(jax.random.normal(key_draws, (n_params, 256)), np.float64)
        weights = centring_weights(sigma2, mean[:, None] + np.sqrt(variance)[:, None] * normal)
    else:
        weights = fixed_centring(parameterization, n_params, n_seeds)
    start = recentre(spaces, start, zeros, weights, condition_index=np.asarray(data.condition))
    data = data._replace(centring=jax.numpy.asarray(weights))
    if n_prior:
        prior_sampler(compiled, n_prior, data)  # compiles while the chains run
    data, result = compiled.sample(data, key_nuts, start, progress=progress, desc=desc)
    return compiled, data, result


# ---------------------------------------------------------------- inference and effects
def pair_names(conditions) -> list[tuple[int, int, str]]:
    """(a, b, "name_b vs name_a") for every pair of conditions, b after a."""
    names = [c.name for c in conditions]
    return [(a, b, f"{names[b]} vs {names[a]}") for a in range(len(names)) for b in range(a + 1, len(names))]


def condition_parameters(constrained: dict, spaces, pairs, chains: int, draws: int, n_seeds: int,
                         n_conditions: int) -> tuple[dict, dict]:
    """The model-parameter variables of a conditions fit's posterior (or prior) from
    ``constrained`` ({name: [chains * draws, ...]}) and their dims: per parameter ``p``,
    ``p`` [chain, draw, seed], ``p_loc`` and ``p_typical`` [chain, draw, condition] (location
    on the unconstrained scale; typical value ``T(p_loc)`` in the model's units),
    ``p_scale`` [chain, draw], ``p_difference`` and ``p_ratio`` [chain, draw, pair]."""
    out, dims = {}, {}
    for space in spaces:
        name = space.name
        out[name] = np.asarray(constrained[name], np.float64).reshape(chains, draws, n_seeds)
        loc = np.asarray(constrained[f"{name}_loc"], np.float64).reshape(chains, draws, n_conditions)
        out[f"{name}_loc"] = loc
        out[f"{name}_scale"] = np.asarray(constrained[f"{name}_scale"], np.float64).reshape(chains, draws)
        typical = np.asarray(space.transform(loc), np.float64)
        out[f"{name}_typical"] = typical
        out[f"{name}_difference"] = np.stack([typical[..., b] - typical[..., a] for a, b, _ in pairs], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{name}_ratio"] = np.stack([typical[..., b] / typical[..., a] for a, b, _ in pairs], axis=-1)
        dims[name] = ["seed"]
        dims[f"{name}_loc"] = dims[f"{name}_typical"] = ["condition"]
        dims[f"{name}_difference"] = dims[f"{name}_ratio"] = ["pair"]
    return out, dims


def infer_conditions(model, observation, pooled: ConditionsSelection, settings, *, seed: int = 0,
                     parameterization: str = "auto", progress: bool = True, n_prior: int | None = None):
    """Sample the conditions model and build its InferenceData (every group of the fit-file
    contract, plus ``p_loc`` [condition], ``p_typical`` [condition], ``p_difference`` and
    ``p_ratio`` [pair]); returns (idata, diagnostics). ``n_prior`` (default
    :data:`~valuedyn.fitting.inference._fit.PRIOR_DRAWS`, as single fits; 0: none) prior
    draws make the ``prior`` group (the posterior's variables, one chain [1, draw, ...]) and
    the ``prior_predictive`` group (``y`` [1, draw, obs], the observed cells of
    ``observed_data``), drawn as for single fits
    (:func:`~valuedyn.fitting.inference._fit.prior_draws`: the latent sites by a jitted trace
    of the conditions model, the replicates by the fit's compiled outputs)."""
    import jax

    from valuedyn.fitting.inference._diagnostics import diagnose
    from valuedyn.fitting.inference._fit import PRIOR_DRAWS, flat_draws, inference_data, prior_draws, prior_group, sampled_draws
    from valuedyn.fitting.inference._deviation import deviation_of
    from valuedyn.fitting.inference._model import observable_for, observation_diagnosed, parameter_spaces

    selection = pooled.selection
    observable = observable_for(model, selection.kind)
    spaces = parameter_spaces(model)
    n_conditions = len(pooled.conditions)
    data = condition_data(pooled, len(spaces), deviation_of(observation))
    n_prior = PRIOR_DRAWS if n_prior is None else int(n_prior)
    compiled, data, result = sample_conditions(
        model, observation, observable, data, n_conditions, settings, seed=seed, parameterization=parameterization,
        progress=progress, desc=f"conditions {model.name} {selection.behaviour}", n_prior=n_prior,
    )
    chains, draws = settings.num_chains, sampled_draws(result)
    constrained, log_lik, y_rep = compiled.outputs(data, flat_draws(result, chains, draws), jax.random.PRNGKey(seed + 1))

    n_seeds = selection.y.shape[0]
    pairs = pair_names(pooled.conditions)
    posterior, dims = condition_parameters(constrained, spaces, pairs, chains, draws, n_seeds, n_conditions)
    prior = prior_predictive = None
    if n_prior:
        sites, prior_predictive = prior_draws(compiled, data, jax.random.fold_in(jax.random.PRNGKey(seed), 2), n_prior)
        prior, _ = condition_parameters(sites, spaces, pairs, 1, n_prior, n_seeds, n_conditions)
        # observation parameters, level and a deviation's variables, as in a single fit's prior
        prior.update(prior_group(sites, [], observation, "conditions", n_seeds, n_prior))
    idata = inference_data(
        selection, observation, constrained, log_lik, y_rep, result, posterior, {**dims, "condition_index": ["seed"]},
        chains=chains, draws=draws, constant_data={"condition_index": pooled.condition_index},
        coords={"condition": [c.name for c in pooled.conditions], "pair": [p[2] for p in pairs]},
        prior=prior, prior_predictive=prior_predictive,
    )
    names = [s.name for s in spaces]
    diagnosed = [n + s for n in names for s in ("", "_loc", "_scale")] + observation_diagnosed(observation)
    diagnostics = diagnose(idata, diagnosed, settings.max_tree_depth, result["failed_solves"], result.get("draws_cut"))
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
    trustworthy). ``trustworthy`` defaults to the fit file's verdict (:func:`fit_trust`)."""
    from valuedyn.fitting.inference._store import fit_attrs

    attrs = fit_attrs(idata)
    if trustworthy is None:
        trustworthy, _ = fit_trust(attrs)
    parameters = attrs["parameters"] if "parameters" in attrs else [
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


def fit_trust(attrs) -> tuple[bool, list[str]]:
    """Whether a conditions fit is trustworthy, and why not (one line per cause), from its
    attributes: the stored verdict of :func:`valuedyn.fitting.judge._trust.classify_fit` (gate and
    causes), or the diagnostics gate alone in a file written before verdicts were stored.
    ``attrs``: the fit's attributes, JSON decoded or not."""
    from valuedyn.fitting.inference._store import decoded_attrs

    attrs = decoded_attrs(attrs)
    verdict = attrs.get("verdict")
    if verdict is not None:
        reasons = [f"{c['kind']}: {c['summary']}" for c in verdict.get("causes", [])]
        return bool(verdict["trustworthy"]), reasons or list(verdict.get("gate_reasons", []))
    diagnostics = attrs.get("diagnostics") or {}
    return bool(int(attrs.get("trustworthy", 0))), list(diagnostics.get("reasons", []))


def conditions_attrs(idata) -> dict:
    """The conditions-specific attributes of a conditions fit, JSON decoded: ``conditions``
    (name, settings, files, seeds), ``differing_settings``, ``effects``, ``diagnostics``,
    ``verdict`` (when stored), ``trustworthy`` and ``why_not`` (:func:`fit_trust`). :class:`ValuedynError` for a file that is not a conditions fit."""
    from valuedyn.fitting.inference._store import fit_attrs

    attrs = fit_attrs(idata)
    if attrs.get("pooling") != "conditions" or "conditions" not in attrs:
        raise ValuedynError(
            f"this fit file is a {attrs.get('pooling', 'unknown')!r} fit, not a conditions fit; pass a file written by "
            "`valuedyn conditions`"
        )
    out = {key: attrs[key] for key in ("conditions", "differing_settings", "effects", "diagnostics", "checks", "verdict")
           if key in attrs}
    out["trustworthy"], out["why_not"] = fit_trust(attrs)
    return out


def format_effects(effects: list[dict], trustworthy: bool, why_not: list[str] = ()) -> str:
    lines = [f"{'parameter':<10} {'pair':<44} {'difference [90% interval]':>32} {'ratio [90% interval]':>26} {'P(sign)':>8}"]
    for e in effects:
        d, r = e["difference"], e["ratio"]
        mark = "  clear" if e["clear"] else ""
        lines.append(
            f"{e['parameter']:<10} {e['pair'][:44]:<44} {d['median']:>10.3g} [{d['low']:>8.3g}, {d['high']:>8.3g}]"
            f" {r['median']:>8.3g} [{r['low']:>6.3g}, {r['high']:>6.3g}] {e['sign_probability']:>8.3f}{mark}"
        )
    if not trustworthy:
        lines.append("the fit is not trustworthy" + (f" ({'; '.join(why_not)})" if why_not else "")
                     + ": no effect is reported as a finding")
    return "\n".join(lines)


# ---------------------------------------------------------------- the command's work
def fit_conditions(config) -> Path:
    """Fit ``config`` (a :class:`~valuedyn.fitting.settings.ConditionsConfig`): read the
    files, find the conditions, sample, run the posterior predictive checks, write the fit
    file atomically and return its path. Bad input raises :class:`ValuedynError` before any
    sampling."""
    from valuedyn.fitting.judge._check import compute_checks
    from valuedyn.fitting.inference._diagnostics import format_diagnostics
    from valuedyn.fitting.inference._fit import fit_file_attrs, get_model, settings_from
    from valuedyn.fitting.settings import validate_sampler_config
    from valuedyn.fitting.inference._model import observable_for, parameter_spaces
    from valuedyn.fitting.inference._deviation import deviation_attrs, with_deviation
    from valuedyn.fitting.inference._observation import observation_for
    from valuedyn.fitting.inference._select import parse_behaviour, parse_updates
    from valuedyn.fitting.inference._store import save_fit
    from valuedyn.fitting.judge._trust import classify_fit

    validate_sampler_config(config)
    parse_behaviour(config.behaviour)
    updates = parse_updates(config.updates)
    if not config.out:
        raise ValuedynError("--out is required: the conditions fit file to write")
    refuse_overwrite(config.out, config.force)
    model = get_model(config.model)
    if config.max_seeds < 0:
        raise ValuedynError(f"--max-seeds must be >= 0 (0 = all seeds); received {config.max_seeds}")
    pooled = pool_conditions(config.trajectories, config.behaviour, updates, config.seeds, config.max_seeds)
    selection = pooled.selection
    observation = with_deviation(observation_for(selection.family, config.observation),
                                 getattr(config, "deviation", "none"))
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
    idata.attrs.update(fit_file_attrs(
        config, model, observation, selection, diagnostics, spaces, pooling="conditions",
        trajectory=json.dumps(list(pooled.sha256)), trajectory_sha256=json.dumps(pooled.sha256),
        selection_json=json.dumps({
            "seeds": [int(s) for s in selection.seeds],
            "seed_file": pooled.seed_file,
            "seed_label": pooled.seed_label,
            "updates": [int(selection.updates[0]), int(selection.updates[-1])],
            "n_updates": int(len(selection.updates)),
        }),
    ))
    idata.attrs.update({"conditions": json.dumps(conditions), "differing_settings": json.dumps(list(pooled.differing))})
    idata.attrs.update(deviation_attrs(idata, observation))
    # the same posterior predictive checks as a single fit (coverage, LOO-PIT, p-values per seed)
    checks = compute_checks(idata, seed=config.seed)
    checks.update(model=model.name, behaviour=selection.behaviour)
    idata.attrs["checks"] = json.dumps(checks)
    # the verdict of a single fit (gate and named causes) decides whether effects are findings
    verdict = classify_fit(idata, name=f"conditions {model.name}")
    idata.attrs["verdict"] = json.dumps(verdict.to_dict(), default=float)
    trustworthy, why_not = fit_trust(idata.attrs)
    effects = condition_effects(idata, trustworthy=trustworthy)
    idata.attrs["effects"] = json.dumps(effects)
    out = Path(config.out)
    refuse_overwrite(out, config.force)  # it may have appeared while sampling
    save_fit(idata, out)
    summary = "; ".join(f"{c['name']}: {len(c['files'])} files, {len(c['seeds'])} seeds" for c in conditions)
    print(f"conditions fit {model.name} to {selection.behaviour} ({summary}; {observation.name}) -> {out}", file=sys.stdout)
    print(format_diagnostics(diagnostics), file=sys.stdout)
    print(format_effects(effects, trustworthy, why_not), file=sys.stdout)
    return out
