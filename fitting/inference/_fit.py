"""``fit_trajectory``: trajectory file -> one behaviour -> NUTS -> fit file.

:func:`infer` is the reusable core (also used by leave-future-out refits and SBC): it
takes an in-memory :class:`~valuedyn.fitting.inference._select.Selection` and returns an
InferenceData with every group of the fit-file contract plus its diagnostics.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np

from valuedyn._config import config_to_json
from valuedyn._errors import ValuedynError
from valuedyn._io import file_sha256, provenance, refuse_overwrite, require_file
from valuedyn.fitting.inference._deviation import deviation_attrs, deviation_key, deviation_of, with_deviation
from valuedyn.fitting.inference._diagnostics import diagnose, format_diagnostics
from valuedyn.fitting.inference._model import FitData, build_numpyro_model, diagnosed_sites, fit_data, observable_for, parameter_spaces, parameter_spaces_ahead
from valuedyn.fitting.inference._nuts import SamplerSettings, compiled_posterior
from valuedyn.fitting.inference._observation import observation_for
from valuedyn.fitting.inference._select import Selection, aggregate_blocks, parse_behaviour, parse_updates, select_behaviour
from valuedyn.fitting.inference._store import OBS_DIM, OBS_GROUPS, save_fit
from valuedyn.fitting.inference._timing import format_timings, mark, timing, timings_json
from valuedyn.fitting.settings import validate_sampler_config


@dataclasses.dataclass
class Inference:
    idata: object
    diagnostics: dict
    compiled: object
    data: FitData
    parameter_names: list[str]
    flat_z: dict


def get_model(name: str):
    from valuedyn.models import get_model as _get_model

    return _get_model(name)


def settings_from(config) -> SamplerSettings:
    return SamplerSettings(
        num_warmup=int(config.warmup),
        num_draws=int(config.draws),
        num_chains=int(config.chains),
        max_tree_depth=int(config.max_tree_depth),
        target_accept=float(config.target_accept),
        dense_mass=bool(config.dense_mass),
        saturated_draws=int(getattr(config, "saturated_draws", 0)),
        min_draws=int(getattr(config, "min_draws", 0)),
    )


def compile_for(model, observation, pooling: str, observable: str, data: FitData, settings: SamplerSettings):
    """The cached compiled posterior of this model structure and data shape (the centring
    of a hierarchy is data, so every parameterization shares it)."""
    key = (model.name, id(model), observation.name, pooling, observable) + deviation_key(observation)
    return compiled_posterior(
        key,
        lambda: build_numpyro_model(model, observation, pooling, observable),
        data,
        settings,
        observation=observation,
        spaces=parameter_spaces(model),
        pooling=pooling,
        count_failures=not model.closed_form,
    )


def sampled_draws(result: dict) -> int:
    """Draws per chain the sampler returned (fewer than asked when it cut them, ``draws_cut``)."""
    return int(np.shape(result["diverging"])[1])


def flat_draws(result: dict, chains: int, draws: int) -> dict:
    """The sampler's draws of every latent site (``result["z"]``, [chain, draw, ...]) with
    chains and draws flattened into one axis, as :meth:`compiled.outputs` takes them."""
    return {k: np.asarray(v).reshape((chains * draws,) + v.shape[2:]) for k, v in result["z"].items()}


def inference_data(selection: Selection, observation, constrained: dict, log_lik, y_rep, result: dict, posterior: dict,
                   dims: dict, *, chains: int, draws: int, coords: dict | None = None, constant_data: dict | None = None,
                   prior: dict | None = None, prior_predictive=None):
    """The InferenceData of a fit (every group of the fit-file contract) from the sampler's
    ``result`` and the compiled model's outputs (``constrained``, ``log_lik``, ``y_rep``,
    each over the flattened draws). ``posterior``: the model-parameter variables, shaped
    [chain, draw, ...], with their ``dims``; the observation parameters and ``level``
    [seed, update] are added here. ``coords`` and ``constant_data`` add to the selection's
    (seed, update; exposure, mask, env_step, tau, level_scale). ``prior`` (variables shaped
    [1, draw, ...], the posterior's names) and ``prior_predictive`` ([draw, seed, update])
    add the ``prior`` and ``prior_predictive`` groups. Single fits and conditions fits share it.

    The data groups are ArviZ-native (:data:`~valuedyn.fitting.inference._store.OBS_DIM`):
    ``observed_data``, ``posterior_predictive``, ``log_likelihood`` and
    ``prior_predictive`` hold ``y`` on one dimension ``obs`` of the observed cells only
    ([obs], [chain, draw, obs]; ``y`` in observation units, counts stored as floats), in
    the order of ``np.nonzero(mask)`` (seed-major), with coordinates ``obs_seed`` and
    ``obs_update`` naming each cell. Masked updates are dropped rather than stored as 0
    (``az.plot_ppc`` would count fake zeros) or NaN (``az.loo`` turns every sum into NaN):
    so ``az.loo``, ``az.compare``, ``az.loo_pit``, ``az.plot_loo_pit`` and ``az.plot_ppc``
    run on the file unaided and count real data only. Counts are floats so that
    ``az.loo_pit`` takes them as they are (it cubic-spline smooths integer data, a number
    no check of the package reports): its value is then the LOO probability
    ``P(y_rep <= y)``, the upper end of the package's randomised PIT
    (:func:`~valuedyn.fitting.judge._check.loo_pit_values`); ``observed_data.y`` carries
    ``discrete = 1`` for counts. :func:`~valuedyn.fitting.inference._store.on_grid` puts any of
    them back on [..., seed, update] (NaN where masked)."""
    import arviz as az

    n_seeds, n_updates = selection.y.shape
    posterior = dict(posterior)
    for name, _ in observation.parameters:
        posterior[name] = np.asarray(constrained[name]).reshape(chains, draws)
    posterior["level"] = np.asarray(constrained["level"], np.float32).reshape(chains, draws, n_seeds, n_updates)
    deviation_dims = {}
    if "deviation" in constrained:  # a structured deviation: its timescale and path (its z are not stored)
        posterior["deviation_time"] = np.asarray(constrained["deviation_time"]).reshape(chains, draws)
        posterior["deviation"] = np.asarray(constrained["deviation"], np.float32).reshape(chains, draws, n_seeds, n_updates)
        deviation_dims = {"deviation": ["seed", "update"]}

    mask = np.asarray(selection.mask, bool)
    obs_seed_index, obs_update_index = np.nonzero(mask)

    def cells(values, dtype):  # [..., seed, update] -> [..., obs], the observed cells only
        return np.asarray(values)[..., obs_seed_index, obs_update_index].astype(dtype)

    is_count = selection.family != "continuous"
    groups = {
        "observed_data": {"y": cells(selection.y, np.float64)},
        "posterior_predictive": {"y": cells(np.asarray(y_rep).reshape(chains, draws, n_seeds, n_updates), np.float32)},
        "log_likelihood": {"y": cells(np.asarray(log_lik).reshape(chains, draws, n_seeds, n_updates), np.float32)},
    }
    if prior is not None:
        groups["prior"] = prior
    if prior_predictive is not None:
        groups["prior_predictive"] = {"y": cells(np.asarray(prior_predictive)[None], np.float32)}
    idata = az.from_dict(
        posterior=posterior,
        **groups,
        constant_data={
            "exposure": selection.exposure,
            "mask": mask,
            "env_step": selection.env_step,
            "tau": selection.tau,
            "level_scale": np.asarray(selection.level_scale),
            **(constant_data or {}),
        },
        sample_stats={
            "diverging": result["diverging"],
            "tree_depth": result["tree_depth"],
            "n_steps": result["n_steps"],
            "acceptance_rate": result["acceptance_rate"],
            "energy": result["energy"],
            "lp": -result["potential_energy"],
            "step_size": result["step_size"],
        },
        coords={"seed": selection.seeds, "update": selection.updates, OBS_DIM: np.arange(obs_seed_index.size),
                **(coords or {})},
        dims={
            **dims,
            "level": ["seed", "update"],
            **deviation_dims,
            "y": [OBS_DIM],
            "exposure": ["seed", "update"],
            "mask": ["seed", "update"],
            "env_step": ["update"],
            "tau": ["update"],
        },
    )
    cell_coords = {"obs_seed": (OBS_DIM, np.asarray(selection.seeds)[obs_seed_index]),
                   "obs_update": (OBS_DIM, np.asarray(selection.updates)[obs_update_index])}
    for group in OBS_GROUPS:
        if group in idata.groups():
            setattr(idata, group, getattr(idata, group).assign_coords(cell_coords))
    idata.observed_data["y"].attrs["discrete"] = int(is_count)
    return idata


#: prior draws a fit stores (``prior`` and ``prior_predictive`` groups; 0: none)
PRIOR_DRAWS = 200


def prior_draws(compiled, data: FitData, key, n: int) -> tuple[dict, np.ndarray]:
    """``n`` draws of the prior of ``compiled``'s numpyro model on ``data``: every site
    ({name: [n, ...]}: parameters, deterministics such as ``level`` [n, S, U], observation
    parameters) and the prior predictive ``y`` [n, S, U] (masked cells 0; dropped by
    :func:`inference_data`).

    The latent sites are drawn by a jitted trace of the model (:func:`prior_sampler`, which
    returns only them, so XLA drops the solve and the likelihood: for logistic_onset on
    2 seeds x 16 updates 1.7 s to compile at XLA's lowest optimisation level, against 4.4 s
    for numpyro's ``Predictive`` of every site, on 2 busy cores; it compiles on a thread
    while the chains run); the rest reuses what the fit compiled and ran: the compiled outputs kernel
    (:meth:`~valuedyn.fitting.inference._nuts.CompiledPosterior.outputs`) constrains them and
    computes ``level``, and the host draws the replicates exactly as for the posterior
    predictive (:meth:`~valuedyn.fitting.inference._nuts.CompiledPosterior.replicates`)."""
    import jax

    key_sites, key_y = jax.random.split(key)
    z = prior_sampler(compiled)(jax.random.split(key_sites, n), data)
    z = {name: np.asarray(value) for name, value in z.items()}
    constrained, _, y = compiled.outputs(data, z, key_y)
    if deviation_of(compiled.observation) != "none":
        # the outputs kernel's deviation is the path's conditional mode given the data: a
        # prior draw takes a path from the OU prior instead, and its replicates around it
        from valuedyn.fitting.inference._deviation import deviated, prior_paths
        from valuedyn.fitting.inference._nuts import numpy_rng

        family = compiled.observation.family
        constrained = dict(constrained)
        constrained["deviation"] = prior_paths(constrained, data.tau, numpy_rng(key_y))
        constrained["deviated_level"] = deviated(family, np.asarray(constrained["level"], np.float64),
                                                 constrained["deviation"], xp=np)
        y = compiled.replicates(data, constrained, jax.random.fold_in(key_y, 1))
    return constrained, y


def prior_sampler(compiled, n: int | None = None, data: FitData | None = None):
    """The jitted draw of the latent sites of ``compiled``'s model (unconstrained, as NUTS
    samples them) from the prior: ``sampler(keys [n, 2], data) -> {site: [n, ...]}``,
    compiled once per compiled posterior, data shape and ``n``. Given ``n`` and ``data``,
    its compiling starts on a thread (overlapping the sampling; tracing happens here)."""
    sampler = _PRIOR_SAMPLERS.get(compiled)
    if sampler is None:
        import jax
        from numpyro import handlers
        from numpyro.distributions import biject_to

        from valuedyn.fitting.inference._nuts import ONE_SHOT_OPT_LEVEL, _cpu_options, _CompiledOnce

        model = compiled.model

        def one(key, data):
            trace = handlers.trace(handlers.seed(model, key)).get_trace(data)
            return {name: biject_to(site["fn"].support).inv(site["value"]) for name, site in trace.items()
                    if site["type"] == "sample" and not site["is_observed"]}

        sampler = _CompiledOnce(jax.jit(jax.vmap(one, in_axes=(0, None))), _cpu_options(ONE_SHOT_OPT_LEVEL))
        _PRIOR_SAMPLERS[compiled] = sampler
    if n and data is not None:
        import jax

        sampler.compile_in_background(jax.ShapeDtypeStruct((n, 2), np.uint32), data)
    return sampler


_PRIOR_SAMPLERS = weakref.WeakKeyDictionary()


def prior_group(sites: dict, names: list[str], observation, pooling: str, n_seeds: int, n: int) -> dict:
    """The ``prior`` group's variables from :func:`prior_draws`' sites: the posterior's
    names and shapes with one chain ([1, n, ...]): the model parameters
    (:func:`parameter_draws`), the observation parameters, ``level`` [1, n, seed, update]
    and, for a structured deviation, ``deviation_time`` and ``deviation``."""
    out = parameter_draws(sites, names, pooling, n_seeds, 1, n)
    extra = [name for name, _ in observation.parameters] + ["level", "deviation_time", "deviation"]
    for name in extra:
        if name in sites:
            value = np.asarray(sites[name])
            out[name] = value.astype(np.float32 if value.ndim > 1 else value.dtype).reshape((1, n) + value.shape[1:])
    return out


def parameter_draws(constrained: dict, names: list[str], pooling: str, n_seeds: int, chains: int, draws: int) -> dict:
    """The model-parameter variables of a fit's posterior (or prior) from ``constrained``
    ({name: [chains * draws, ...]}): each parameter [chain, draw, seed] (a completely pooled
    one repeated over seeds) and under hierarchical pooling its ``_loc`` and ``_scale``
    [chain, draw]."""
    out = {}
    for name in names:
        value = np.asarray(constrained[name], np.float64)
        if value.ndim == 1:  # complete pooling: one value, the same for every seed
            value = np.repeat(value[:, None], n_seeds, axis=1)
        out[name] = value.reshape(chains, draws, n_seeds)
        if pooling == "hierarchical":
            for suffix in ("_loc", "_scale"):
                out[name + suffix] = np.asarray(constrained[name + suffix]).reshape(chains, draws)
    return out


def infer(
    model,
    observation,
    pooling: str,
    selection: Selection,
    settings: SamplerSettings,
    *,
    seed: int = 0,
    progress: bool = True,
    desc: str = "NUTS",
    parameterization: str = "auto",
    initial_points: dict | None = None,
    n_prior: int = 0,
) -> Inference:
    """MAP start, NUTS, postprocessing and diagnostics for one selection (no file I/O).
    ``initial_points``: posterior variable -> one value per chain ([chains] or
    [chains, seeds], the parameter's units; :func:`parse_initial_points`): the MAP search
    and the chains start there instead of around the prior median. ``n_prior``: prior
    draws for the ``prior`` and ``prior_predictive`` groups (:func:`prior_draws`; 0, for
    refits that only score, adds neither)."""
    import jax

    observable = observable_for(model, selection.kind)
    data = fit_data(selection, len(parameter_spaces(model)), deviation_of(observation))
    compiled = compile_for(model, observation, pooling, observable, data, settings)
    if n_prior:
        prior_sampler(compiled, n_prior, data)  # compiles while the chains run
    mark("imports_reading")
    key = jax.random.PRNGKey(seed)
    key_run, key_pp = jax.random.split(key)
    data, result = compiled.run(data, key_run, parameterization=parameterization, progress=progress, desc=desc,
                                initial_points=initial_points)
    chains, draws = settings.num_chains, sampled_draws(result)
    flat = flat_draws(result, chains, draws)
    if result.get("outputs") is not None:  # the sampler computed them for its stop
        constrained, log_lik = result["outputs"]
        y_rep = compiled.replicates(data, constrained, key_pp)
    else:
        constrained, log_lik, y_rep = compiled.outputs(data, flat, key_pp)

    n_seeds = selection.y.shape[0]
    spaces = parameter_spaces(model)
    names = [s.name for s in spaces]
    posterior = parameter_draws(constrained, names, pooling, n_seeds, chains, draws)
    prior = prior_predictive = None
    if n_prior:
        sites, prior_predictive = prior_draws(compiled, data, jax.random.fold_in(key, 1), n_prior)
        prior = prior_group(sites, names, observation, pooling, n_seeds, n_prior)
    idata = inference_data(selection, observation, constrained, log_lik, y_rep, result, posterior,
                           {name: ["seed"] for name in names}, chains=chains, draws=draws, prior=prior,
                           prior_predictive=prior_predictive)
    mark("outputs")
    diagnosed = diagnosed_sites(spaces, observation, pooling)
    diagnostics = diagnose(idata, diagnosed, settings.max_tree_depth, result["failed_solves"], result.get("draws_cut"))
    diagnostics["draws_stopped"] = result.get("draws_stopped")
    diagnostics["centring"] = np.asarray(data.centring).round(3).tolist() if pooling == "hierarchical" else None
    if not model.closed_form and model.ode_method == "grid":
        error = ode_grid_error(model, observable, {n: constrained[n] for n in names}, np.asarray(data.tau))
        diagnostics["ode_error"] = error
        if not error <= ODE_ERROR_WARN:
            diagnostics["warnings"].append(
                f"the RK4 grid's {observable} differs from the adaptive ODE solve by up to {error:.2g} level units "
                f"at {ODE_ERROR_DRAWS} posterior draws (> {ODE_ERROR_WARN}): refit with the model built with more "
                "ode_steps, or ode_steps=0 (adaptive, slower)")
    mark("diagnostics")
    return Inference(idata, diagnostics, compiled, data, names, flat)


#: posterior draws (evenly spaced) at which a fit of an ODE model checks its RK4 grid
ODE_ERROR_DRAWS = 16
#: the largest difference (level units) between the grid's and the adaptive solution that
#: passes without a warning; the grid's own error at 512 steps is < 5e-5 over 256 draws of the models' priors
ODE_ERROR_WARN = 1e-3


def ode_grid_error(model, observable: str, constrained: dict, tau: np.ndarray) -> float:
    """Largest :meth:`~valuedyn.models.Model.grid_error` of ``observable`` over
    :data:`ODE_ERROR_DRAWS` evenly spaced draws of ``constrained`` ({name: [draws] or
    [draws, seeds]}) and every seed, on ``tau`` and a uniform grid of [0, 1]."""
    import jax
    import jax.numpy as jnp

    n_draws = next(iter(constrained.values())).shape[0]
    picks = np.unique(np.linspace(0, n_draws - 1, min(ODE_ERROR_DRAWS, n_draws)).round().astype(int))
    # [draws] (complete pooling) or [draws, seeds] (every parameter alike): one row per solve
    params = {name: np.asarray(value, np.float32)[picks].reshape(-1) for name, value in constrained.items()}
    t = jnp.asarray(np.unique(np.concatenate([np.clip(tau, 0.0, None), np.linspace(0.0, 1.0, 101)])), jnp.float32)
    errors = _grid_errors(model, observable)(params, t)
    return float(np.max(np.asarray(errors)))


@functools.lru_cache(maxsize=None)
def _grid_errors(model, observable: str):
    import jax

    return jax.jit(jax.vmap(lambda p, t: model.grid_error(p, t, observable), in_axes=(0, None)))


def fit_file_attrs(config, model, observation, selection: Selection, diagnostics: dict, spaces, *, pooling: str,
                   trajectory: str, trajectory_sha256: str, selection_json: str) -> dict:
    """The top-level attributes of a fit file (the contract of :mod:`valuedyn.fitting.inference._store`)
    that single fits and conditions fits share, provenance included."""
    attrs = {
        "model": model.name,
        "behaviour": selection.behaviour,
        "observation_model": observation.name,
        "pooling": pooling,
        "parameterization": config.parameterization,
        "trajectory": trajectory,
        "trajectory_sha256": trajectory_sha256,
        "selection": selection_json,
        "config": config_to_json(config),
        "diagnostics": json.dumps(diagnostics, default=float),
        "trustworthy": int(diagnostics["trustworthy"]),
        "failed_solves": int(diagnostics["failed_solves"]),
        "time_scale_env_steps": float(selection.time_scale),
        "time_origin_env_step": float(selection.time_origin),
        "level_scale": float(selection.level_scale),
        "parameters": json.dumps([s.name for s in spaces]),
        "parameter_transforms": json.dumps({s.name: s.transform_name for s in spaces}),
        "observation_parameters": json.dumps([n for n, _ in observation.parameters]),
        "deviation": deviation_of(observation),
    }
    attrs.update(provenance())
    return attrs


def parse_initial_points(text: str | None) -> dict | None:
    """A FitConfig's ``initial_points`` (JSON: posterior variable -> one value per chain,
    a list per seed for a per-seed parameter) as arrays [chains] or [chains, seeds]; None
    when unset. Bad JSON is a :class:`ValuedynError`."""
    if not text:
        return None
    try:
        values = json.loads(text)
        if not isinstance(values, dict) or not values:
            raise ValueError("not a JSON object of variables")
        return {str(name): np.asarray(v, np.float64) for name, v in values.items()}
    except ValueError as err:
        raise ValuedynError(f"--initial-points must be a JSON object: variable -> one value per chain (a list per seed "
                            f"for a per-seed parameter); received {text[:80]!r} ({err})") from None


def selection_of(config, trajectory):
    """The cells a fit of ``config`` fits: its behaviour read from ``trajectory`` (a
    trajectory, or a memory file for a memory behaviour), its seeds and updates, in its
    blocks of updates (``--blocks``). The fit and its leave-future-out refit both read it here."""
    from valuedyn.fitting.inference._select_memory import open_behaviour_data  # a trajectory, or a memory file

    dataset = open_behaviour_data(trajectory, config.behaviour)
    selection = select_behaviour(dataset, config.behaviour, tuple(config.seeds) or None, parse_updates(config.updates))
    return aggregate_blocks(selection, getattr(config, "blocks", "none"))  # --blocks: a long run in blocks


def prepare(config):
    """Validate everything a fit needs, outside jit, before any sampling:
    returns (model, observation, selection, trajectory path, dataset)."""
    validate_sampler_config(config)
    parse_initial_points(getattr(config, "initial_points", None))
    parse_behaviour(config.behaviour)
    parse_updates(config.updates)
    if not config.out:
        raise ValuedynError("--out is required: the fit file to write")
    refuse_overwrite(config.out, config.force)
    trajectory = require_file(config.trajectory, "trajectory file")
    if Path(config.out).resolve() == trajectory.resolve():  # --force cannot make this right
        raise ValuedynError(f"--out {config.out} is the trajectory file being fitted; choose another --out")
    model = get_model(config.model)
    parameter_spaces_ahead(model)  # overlaps reading the trajectory
    selection = selection_of(config, trajectory)
    observation = with_deviation(observation_for(selection.family, config.observation), getattr(config, "deviation", "none"))
    observable_for(model, selection.kind)
    return model, observation, selection, trajectory


def fit_trajectory(config, *, before_write: Callable[[object], object] | None = None) -> Path:
    """Run NUTS for ``config`` (a FitConfig), write ``config.out`` atomically, return its path.

    Raises :class:`ValuedynError` for bad input before any work; an untrustworthy fit is
    written (marked ``trustworthy = 0``) and, with ``config.strict``, then raises.
    ``before_write``: called with the InferenceData, its attributes set, just before the
    one write (the batch runner stores the posterior predictive checks this way,
    :func:`~valuedyn.fitting.judge._check.attach_checks`: one write instead of two).

    Where the fit's time went (:mod:`~valuedyn.fitting.inference._timing`) is stored in the
    file's ``timings`` attribute (JSON: seconds per phase, the write included; the first fit
    of a process also counts the process's imports) and printed with ``config.verbose``.
    """
    first_of_process = _FIRST_FIT[0]
    _FIRST_FIT[0] = False
    with timing(since_process_start=first_of_process) as timer:
        out, inference, selection, model, observation = _fit_timed(config, before_write, timer)
    print(
        f"fit {model.name} to {selection.behaviour} ({selection.y.shape[0]} seeds x {selection.y.shape[1]} updates, "
        f"{selection.n_observed} observed, {observation.name}, {config.pooling} pooling) -> {out}",
        file=sys.stdout,
    )
    if selection.aggregated:
        print(selection.blocks_text, file=sys.stdout)
    print(format_diagnostics(inference.diagnostics), file=sys.stdout)
    if getattr(config, "verbose", False):
        print(format_timings(timer.last or timer.record()), file=sys.stdout)
    return out


#: whether no fit ran in this process yet (its timings then count the process's imports)
_FIRST_FIT = [True]


def _fit_timed(config, before_write, timer):
    """:func:`fit_trajectory`'s work under ``timer``: returns (the written path, the
    Inference, the selection, the model, the observation model)."""
    model, observation, selection, trajectory = prepare(config)
    sha = file_sha256(trajectory)
    inference = infer(
        model, observation, config.pooling, selection, settings_from(config), seed=config.seed,
        progress=config.progress, desc=f"fit {model.name} {selection.behaviour}",
        parameterization=config.parameterization, initial_points=parse_initial_points(config.initial_points),
        n_prior=PRIOR_DRAWS,
    )
    idata = inference.idata
    idata.attrs.update(fit_file_attrs(
        config, model, observation, selection, inference.diagnostics, parameter_spaces(model), pooling=config.pooling,
        trajectory=str(trajectory), trajectory_sha256=sha, selection_json=selection.selection_json(),
    ))
    idata.attrs.update(deviation_attrs(idata, observation))
    mark("outputs")
    if before_write is not None:
        before_write(idata)
        mark("checks")
    out = Path(config.out)
    refuse_overwrite(out, config.force)  # it may have appeared while sampling

    def timings() -> dict:
        mark("writing")
        return {"timings": timings_json(timer.record())}

    save_fit(idata, out, final_attrs=timings)
    return out, inference, selection, model, observation
