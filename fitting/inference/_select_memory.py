"""Memory behaviours: the memory horizon of a feature over training, from a memory probe file.

``valuedyn probe RUN --memory`` writes ``<RUN stem>.memory.nc``
(:func:`valuedyn.data.memory_probe`): per seed, checkpoint and feature the **memory
horizon** ``memory_horizon[seed, checkpoint, feature]``, the largest lag ``k`` in
``1 .. num_lags`` (attr ``num_lags``) at which the recurrent state decodes the feature
better than the observation alone, 0 if none. A behaviour ``memory:FEATURE`` (e.g.
``memory:water_direction``; features: the file's ``feature`` coordinate,
:data:`valuedyn.data.MEMORY_FEATURES`) is that horizon over training:

=====================  ===================================  ===========  ===========
behaviour              observation ``y[seed, checkpoint]``  exposure     family
=====================  ===================================  ===========  ===========
``memory:FEATURE``     ``memory_horizon`` (lags)            ``num_lags`` binomial
=====================  ===================================  ===========  ===========

**Which file.** The fit's data file is the memory file itself (``.memory.nc``), passed where
a trajectory goes (``valuedyn fit RUN.memory.nc --behaviour memory:water_direction``,
``valuedyn conditions A.memory.nc B.memory.nc ...``), not the trajectory beside it. The
file that is hashed is then the file whose numbers are fitted: the fit's
``trajectory_sha256`` and every cache key change when the probe is rerun (a trajectory's
hash would not), and a probe file shipped without its trajectory can be fitted. A
trajectory passed with a memory behaviour is refused with the name of the memory file
beside it (:func:`open_behaviour_data`). The conditions of a comparison are read from the
training config the probe stores (attr ``train_config``), so runs of several ``--gru-hidden``
sizes are conditions like any trained setting.

**Observation model: the binomial family** (its default, the beta-binomial; or
``--observation binomial``). The horizon is a bounded count of lags, ``0 .. num_lags``, so
the model's level is the horizon as a fraction of the lags probed (``horizon / num_lags``,
a probability-like level in [0, 1], ``level_scale`` 1) and ``y ~ BetaBinomial(num_lags,
level)``. A Poisson or negative binomial would put mass above ``num_lags``, which the probe
cannot report, and a lognormal has no zeros (a horizon of 0, no memory, is the common
value early in training). The beta-binomial rather than the binomial by default: the
horizon is the *largest* lag that beats the baseline, not a sum of ``num_lags`` independent
trials, so its scatter between checkpoints is larger than a binomial's; the fitted
dispersion says by how much (0 is the binomial). Censoring: a horizon equal to
``num_lags`` means "at least ``num_lags``"; the model treats it as the top count, so probe
with more lags (``--memory-lags``) when the horizon reaches the top.

**Masked cells.** A checkpoint at which no lag of the feature was scored (its states span
too few episodes, ``memory_lags_scored == 0``) holds no information and is masked (the
likelihood skips it); nothing else is.

**Time.** Each checkpoint is one cell, at its ``env_step``; ``updates`` are the
checkpoints' update numbers (coord ``update`` on ``checkpoint``), so ``--updates FIRST:LAST``
selects checkpoints by their update.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from valuedyn._errors import ValuedynError

#: the behaviour kind of a memory horizon (``memory:FEATURE``)
MEMORY_KIND = "memory"
#: the suffix ``valuedyn probe --memory`` gives its file (``<RUN stem>.memory.nc``)
MEMORY_SUFFIX = ".memory.nc"
#: variables a memory file must hold for a memory behaviour
MEMORY_VARIABLES = ("memory_horizon", "memory_lags_scored")


def is_memory_file(path) -> bool:
    """True for a file named like a memory probe's output (``*.memory.nc``)."""
    return Path(path).name.endswith(MEMORY_SUFFIX)


def memory_file_for(trajectory) -> Path:
    """The memory probe file of a run: ``<trajectory stem>.memory.nc`` beside the trajectory."""
    trajectory = Path(trajectory)
    return trajectory.with_name(trajectory.stem + MEMORY_SUFFIX)


def is_memory_behaviour(behaviour: str) -> bool:
    return isinstance(behaviour, str) and behaviour.partition(":")[0] == MEMORY_KIND


def validate_memory(ds, source: str = "memory file") -> None:
    """Refuse a Dataset that is not a memory probe's output, in one line."""
    missing = [v for v in MEMORY_VARIABLES if v not in ds]
    if ds.attrs.get("measures") != "memory" or missing or "num_lags" not in ds.attrs:
        raise ValuedynError(
            f"{source} is not a memory probe file (attr measures='memory', attr num_lags and variables "
            f"{', '.join(MEMORY_VARIABLES)} expected; missing {', '.join(missing) or 'the attributes'}); "
            "make one with `valuedyn probe RUN --memory`"
        )
    for dim in ("seed", "checkpoint", "feature"):
        if dim not in ds.dims:
            raise ValuedynError(f"{source}: memory file lacks the dimension {dim!r}; rerun `valuedyn probe RUN --memory`")
    if "update" not in ds.coords or "env_step" not in ds.coords:
        raise ValuedynError(f"{source}: memory file lacks the coords update/env_step per checkpoint; rerun the probe")


def open_memory(path):
    """A memory probe file loaded fully into memory (the file is closed again) and checked.

    The training config the probe stores (attr ``train_config``) is put under ``config`` in
    the returned Dataset's attrs (in memory only), the name a trajectory gives it, so a
    comparison of conditions reads it the same way from either kind of file; the probe's own
    config, which the file stores as ``config`` (its ``run`` path differs between runs of
    one condition), moves to ``probe_config``."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise ValuedynError(f"memory file {path} does not exist; make it with `valuedyn probe RUN --memory`")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as err:  # h5py raises many types for a corrupt file
        raise ValuedynError(f"cannot read {path} as netCDF4 ({type(err).__name__}: {err}); the file is corrupt") from None
    validate_memory(ds, source=str(path))
    if "train_config" in ds.attrs:
        if "config" in ds.attrs:
            ds.attrs["probe_config"] = ds.attrs["config"]
        ds.attrs["config"] = ds.attrs["train_config"]
    return ds


def open_behaviour_data(path, behaviour: str):
    """The Dataset a fit of ``behaviour`` reads from ``path``: a memory file for a memory
    behaviour (:func:`open_memory`), a trajectory otherwise
    (:func:`valuedyn.data.open_trajectory`). A trajectory given for a memory behaviour, or
    a memory file for any other, is refused in one line naming the file to pass."""
    from valuedyn.data import open_trajectory

    if is_memory_behaviour(behaviour):
        if not is_memory_file(path):
            beside = memory_file_for(path)
            hint = (f"pass its memory file {beside}" if beside.is_file()
                    else f"probe it first (`valuedyn probe {path} --memory` writes {beside.name}) and pass that file")
            raise ValuedynError(
                f"behaviour {behaviour!r} is fitted from a memory probe file (*{MEMORY_SUFFIX}), not from the "
                f"trajectory {path}; {hint}"
            )
        return open_memory(path)
    if is_memory_file(path):
        raise ValuedynError(
            f"{path} is a memory probe file: it offers only memory behaviours "
            f"({', '.join(offered_memory_behaviours(open_memory(path)))}); pass the trajectory for {behaviour!r}"
        )
    return open_trajectory(path)


def offered_memory_behaviours(ds) -> list[str]:
    """``memory:FEATURE`` for every feature of a memory file."""
    return [f"{MEMORY_KIND}:{f}" for f in _features(ds)]


def _features(ds) -> list[str]:
    return [str(f) for f in ds["feature"].values] if "feature" in ds.coords else []


def memory_cells(ds, behaviour: str, name: str, seeds=None, updates=None) -> dict:
    """The cells of ``memory:NAME`` in a memory file's Dataset (:func:`open_memory`), as the
    fields of a :class:`~valuedyn.fitting.inference._select.Selection` (which
    :func:`~valuedyn.fitting.inference._select.select_behaviour` builds from them): ``y``
    ``[seed, checkpoint]`` the horizon (int64, lags), ``exposure`` ``num_lags`` (float),
    ``mask`` False where no lag was scored; ``seeds``, ``updates`` (the checkpoints' update
    numbers), ``env_step``, ``tau``, ``time_origin``, ``time_scale`` (env steps).
    ``seeds``: seed labels to keep (None = all); ``updates``: inclusive (first, last)
    update labels (None = all)."""
    if "memory_horizon" not in ds:
        raise ValuedynError(
            f"behaviour {behaviour!r} reads a memory probe file (*{MEMORY_SUFFIX}, `valuedyn probe RUN --memory`); "
            "this file is a trajectory: pass the memory file instead"
        )
    validate_memory(ds)
    features = _features(ds)
    if name not in features:
        raise ValuedynError(f"behaviour {behaviour!r}: feature {name!r} is not in this memory file; valid names: "
                            f"{', '.join(offered_memory_behaviours(ds))}")
    seed_labels = np.asarray(ds["seed"].values)
    if seeds:
        unknown = [s for s in seeds if s not in set(seed_labels.tolist())]
        if unknown:
            raise ValuedynError(f"--seeds {list(seeds)} names seeds {unknown} that the memory file does not hold; "
                                f"its seeds are {seed_labels.tolist()}")
        seed_index = np.array([int(np.nonzero(seed_labels == s)[0][0]) for s in seeds])
    else:
        seed_index = np.arange(len(seed_labels))
    update_labels = np.asarray(ds["update"].values)
    keep = np.ones(len(update_labels), bool)
    if updates is not None:
        first, last = updates
        if first is not None:
            keep &= update_labels >= first
        if last is not None:
            keep &= update_labels <= last
    checkpoint_index = np.nonzero(keep)[0]
    if len(seed_index) == 0 or len(checkpoint_index) < 2:
        raise ValuedynError(
            f"the selection (seeds {list(seeds) if seeds else 'all'}, updates {updates}) holds {len(seed_index)} seeds x "
            f"{len(checkpoint_index)} checkpoints; a fit needs at least 1 seed and 2 checkpoints; the memory file has "
            f"checkpoints at updates {update_labels.tolist()}"
        )
    sub = ds.isel(seed=seed_index, checkpoint=checkpoint_index).sel(feature=name)
    num_lags = int(ds.attrs["num_lags"])
    horizon = np.asarray(sub["memory_horizon"].values, np.int64)
    if horizon.min() < 0 or horizon.max() > num_lags:
        raise ValuedynError(f"behaviour {behaviour!r}: memory_horizon lies in {horizon.min()}..{horizon.max()}, outside "
                            f"0..num_lags ({num_lags}); the file is corrupt, rerun the probe")
    mask = np.asarray(sub["memory_lags_scored"].values) > 0
    if not mask.any():
        raise ValuedynError(f"behaviour {behaviour!r}: no lag was scored at any selected checkpoint (too few episodes per "
                            "rollout); probe with more --memory-envs or --memory-steps")
    env_step = np.asarray(sub["env_step"].values, np.float64)
    origin, scale = float(env_step[0]), float(env_step[-1] - env_step[0])
    if not scale > 0:
        raise ValuedynError(f"behaviour {behaviour!r}: the selected checkpoints do not advance in env steps; select others")
    return {
        "seeds": seed_labels[seed_index], "updates": update_labels[checkpoint_index],
        "y": np.where(mask, horizon, 0), "exposure": np.full(horizon.shape, float(num_lags)), "mask": mask,
        "env_step": env_step, "tau": (env_step - origin) / scale, "time_origin": origin, "time_scale": scale,
    }


def memory_train_config(ds) -> dict | None:
    """The training config a memory file stores (attr ``train_config``, JSON), or None."""
    text = ds.attrs.get("train_config")
    try:
        config = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return None
    return config if isinstance(config, dict) else None


def simulate_memory(model, params: dict, *, num_lags: int = 32, updates=None, steps_per_update: int = 1024,
                    train_config: str | None = None, observation: str = "binomial", concentration: float = 20.0,
                    unscored_checkpoints: int = 0, feature: str = "water_direction", seed: int = 0):
    """A memory probe Dataset (the variables, dims and attrs :func:`valuedyn.data.memory_probe`
    writes) whose ``memory_horizon`` of ``feature`` follows ``model``'s level with per-seed
    ``params`` (name -> array [S]): ``horizon ~ Binomial(num_lags, level)`` at each
    checkpoint (``observation="betabinomial"``: the level scatters as a Beta of
    ``concentration`` first), the level averaged over each checkpoint's span as a fit's
    likelihood has it. Other features have horizon 0. ``updates``: the checkpoints' update
    numbers (default 16 evenly spread over 1..160), ``env_step = update * steps_per_update``;
    the first ``unscored_checkpoints`` score no lag (masked by a fit). ``train_config``:
    the JSON the probe stores (attr ``train_config``; conditions are read from it).
    For tests and calibration: no rollout, no decoder; the per-lag variables are made
    consistent with the horizon (the state beats the baseline at lags 1..horizon)."""
    import jax
    import jax.numpy as jnp
    import xarray as xr

    from valuedyn.data._memory import MEMORY_FEATURES, MEMORY_MARGIN

    rng = np.random.default_rng(seed)
    updates = np.asarray(updates if updates is not None else np.linspace(1, 160, 16).round(), np.int64)
    env_step = updates * steps_per_update
    tau = (env_step - env_step[0]) / (env_step[-1] - env_step[0])
    solve = jax.jit(jax.vmap(lambda p: model.solve_binned(p, jnp.asarray(tau, jnp.float32))))
    outputs, ok = solve({k: jnp.asarray(v, jnp.float32) for k, v in params.items()})
    if not bool(np.all(np.asarray(ok))):
        raise ValueError("the model's solve failed for these parameters")
    level = np.clip(np.asarray(outputs[model.applies_to[MEMORY_KIND]], np.float64), 0.0, 1.0)  # [S, C]
    if observation == "betabinomial":
        inside = np.clip(level, 1e-6, 1.0 - 1e-6)
        level = rng.beta(inside * concentration, (1.0 - inside) * concentration)
    n_seeds, n_checkpoints = level.shape
    features = list(MEMORY_FEATURES)
    horizon = np.zeros((n_seeds, n_checkpoints, len(features)), np.int32)
    horizon[..., features.index(feature)] = rng.binomial(num_lags, level)
    scored = np.full(horizon.shape, num_lags, np.int32)
    scored[:, :unscored_checkpoints] = 0
    horizon[:, :unscored_checkpoints] = 0
    lag = np.arange(1, num_lags + 1)
    beats = (lag <= horizon[..., None]).astype(np.int8)  # [S, C, F, L]
    advantage = np.where(beats > 0, 0.3, 0.0).astype(np.float32)
    low = np.where(beats > 0, 2.0 * MEMORY_MARGIN, 0.0).astype(np.float32)
    low = np.where(scored[..., None] > 0, low, np.nan).astype(np.float32)
    sfl = ("seed", "checkpoint", "feature", "lag")
    data = {
        "memory_horizon": (("seed", "checkpoint", "feature"), horizon),
        "memory_lags_scored": (("seed", "checkpoint", "feature"), scored),
        "memory_beats": (sfl, beats),
        "memory_advantage": (sfl, advantage),
        "memory_advantage_low": (sfl, low),
        "memory_advantage_high": (sfl, (advantage + 0.1).astype(np.float32)),
        "probe_seconds": (("checkpoint",), np.zeros(n_checkpoints, np.float32)),
    }
    attrs = {
        "measures": "memory", "num_lags": int(num_lags), "margin": float(MEMORY_MARGIN),
        "state_kind": "gru_hidden", "simulated": json.dumps({"model": model.name, feature: {
            k: np.asarray(v).tolist() for k, v in params.items()}, "observation": observation}),
        "train_config": train_config if train_config is not None else json.dumps({"recurrent": True}),
        "trajectory": "simulated",
        # the probe's own config, as `valuedyn probe --memory` stores it: its run path names the file
        "config": json.dumps({"config_class": "ProbeConfig", "run": f"simulated_{seed}_{zlib.crc32(str(train_config).encode())}.nc",
                              "memory": True}),
    }
    return xr.Dataset(data, coords={
        "seed": np.arange(n_seeds), "checkpoint": np.arange(n_checkpoints), "update": ("checkpoint", updates),
        "env_step": ("checkpoint", env_step), "feature": features, "lag": lag,
    }, attrs=attrs)
