"""Schema-valid trajectory files from simulated data (parameter recovery, SBC, benchmarks).

:func:`simulate_trajectory` draws one behaviour from a model's level with the observation
model a real fit would use (Binomial unlocks / action counts, Poisson or negative
binomial event totals), fills every other variable of the trajectory contract with
plausible counts, and returns an ``xarray.Dataset`` that passes
:func:`valuedyn.data.validate_trajectory`.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from valuedyn.data._schema import TRAJECTORY_VARIABLES
from valuedyn.fitting.inference._select import parse_behaviour

ACHIEVEMENTS = ("collect_wood", "place_table", "collect_sapling", "place_plant", "eat_plant")
EVENTS = ("place_plant", "place_table", "collect_wood", "eat_plant", "drink_water")
ACTIONS = ("noop", "left", "right", "up", "down", "do", "sleep", "place_plant")
N_PLACEMENT_BINS = 4


def simulate_trajectory(
    model,
    params: dict[str, np.ndarray],
    *,
    behaviour: str = "unlock:place_table",
    n_updates: int = 200,
    episodes_per_update: float = 40.0,
    steps_per_update: int = 4096,
    masked_updates: int = 3,
    observation: str = "negbin",
    concentration: float = 3.0,
    level_scale: float = 2.0,
    seed: int = 0,
    episodes_range: tuple[int, int] | None = None,
):
    """A trajectory Dataset whose ``behaviour`` follows ``model`` with per-seed ``params``.

    ``params``: parameter name -> array [S] (one value per seed). The first
    ``masked_updates`` updates finish no episode (they must be masked by a fit).
    Finished episodes per update are Poisson(``episodes_per_update``), or uniform on the
    inclusive ``episodes_range`` when it is given.
    Event totals have mean ``episodes * level_scale * level`` per update (the model level
    is in normalised units); unlocks and action shares use the level as a probability.
    ``observation``: ``poisson`` or ``negbin`` (default) for event totals; ``betabinomial``
    makes unlocks overdispersed (per-update probability ~ Beta with mean ``level`` and
    ``concentration``), any other value leaves them Binomial.
    """
    import xarray as xr

    kind, name = parse_behaviour(behaviour)
    rng = np.random.default_rng(seed)
    n_seeds = len(next(iter(params.values())))
    env_step = (np.arange(1, n_updates + 1) * steps_per_update).astype(np.int64)
    tau = (env_step - env_step[0]) / (env_step[-1] - env_step[0])
    # the expected observation of an update: the level averaged over its span, as the fit's likelihood has it
    solve = jax.jit(jax.vmap(lambda p: model.solve_binned(p, jnp.asarray(tau, jnp.float32))))
    outputs, ok = solve({k: jnp.asarray(v, jnp.float32) for k, v in params.items()})
    if not bool(np.all(np.asarray(ok))):
        raise ValueError("the model's solve failed for these parameters")
    level = np.asarray(outputs[model.applies_to[kind]], np.float64)  # [S, U]

    if episodes_range is None:
        episodes = rng.poisson(episodes_per_update, size=(n_seeds, n_updates)).astype(np.int64)
    else:
        episodes = rng.integers(episodes_range[0], episodes_range[1] + 1, size=(n_seeds, n_updates)).astype(np.int64)
    episodes[:, :masked_updates] = 0
    shape = (n_seeds, n_updates)
    unlocks = np.stack(
        [rng.binomial(episodes, 0.3) for _ in ACHIEVEMENTS], axis=-1
    ).astype(np.int64)
    events = np.stack([rng.poisson(episodes * 1.5) for _ in EVENTS], axis=-1).astype(np.int64)
    action_share = rng.dirichlet(np.ones(len(ACTIONS)) * 5, size=shape)
    actions = np.stack(
        [rng.multinomial(steps_per_update, action_share[s, u]) for s in range(n_seeds) for u in range(n_updates)]
    ).reshape(shape + (len(ACTIONS),)).astype(np.int64)

    if kind == "unlock":
        index = ACHIEVEMENTS.index(name)
        probability = np.clip(level, 0.0, 1.0)
        if observation == "betabinomial":  # the per-update rate scatters as a Beta around the level
            inside = np.clip(level, 1e-6, 1.0 - 1e-6)
            probability = rng.beta(inside * concentration, (1.0 - inside) * concentration)
        unlocks[..., index] = rng.binomial(episodes, probability)
    elif kind == "event":
        index = EVENTS.index(name)
        mean = episodes * level_scale * np.maximum(level, 1e-9)
        if observation == "poisson":
            events[..., index] = rng.poisson(mean)
        else:
            total_concentration = np.maximum(episodes * concentration, 1e-9)
            rate = rng.gamma(total_concentration, mean / total_concentration)
            events[..., index] = np.where(episodes > 0, rng.poisson(rate), 0)
    elif kind == "action":
        index = ACTIONS.index(name)
        chosen = rng.binomial(steps_per_update, np.clip(level, 0.0, 1.0))
        others = np.delete(actions, index, axis=-1)
        rest = steps_per_update - chosen
        other_share = others / np.maximum(others.sum(-1, keepdims=True), 1)
        spread = np.stack(
            [rng.multinomial(rest[s, u], other_share[s, u]) for s in range(n_seeds) for u in range(n_updates)]
        ).reshape(others.shape)
        actions = np.insert(spread, index, chosen, axis=-1)
    else:
        raise ValueError("simulate_trajectory draws unlock, event or action behaviours")
    unlocks = np.minimum(unlocks, episodes[..., None])
    events = np.where(episodes[..., None] > 0, events, 0)

    histogram = np.zeros(shape + (len(("table", "plant")), N_PLACEMENT_BINS), np.int64)
    histogram[..., 0] = episodes[..., None]
    zeros = np.zeros(shape)
    values = {
        "episodes_finished": episodes,
        "achievement_unlocks": unlocks,
        "event_total": events,
        "action_count": actions,
        "return_sum": episodes * 2.0,
        "length_sum": episodes * 100,
        "placement_histogram": histogram,
        "policy_loss": zeros,
        "value_loss": zeros,
        "entropy": zeros + 1.0,
        "approx_kl": zeros,
        "clip_fraction": zeros,
    }
    data_vars = {name: (dims, values[name]) for name, (dims, _) in TRAJECTORY_VARIABLES.items()}  # the contract's dims
    coords = {
        "seed": np.arange(n_seeds),
        "update": np.arange(n_updates),
        "env_step": ("update", env_step),
        "achievement": list(ACHIEVEMENTS),
        "event": list(EVENTS),
        "action": list(ACTIONS),
        "placement": ["table", "plant"],
        "count_bin": np.arange(N_PLACEMENT_BINS),
    }
    truth = {k: [float(x) for x in np.asarray(v)] for k, v in params.items()}
    attrs = {
        "config": json.dumps({"simulated": True, "model": model.name, "behaviour": behaviour, "truth": truth}),
        "valuedyn_version": "simulated",
        "git_commit": "simulated",
        "craftax_version": "none",
        "jax_version": jax.__version__,
        "device": "simulation",
        "wall_time_s": 0.0,
        "steps_per_second": 0.0,
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_trajectory(dataset, path) -> None:
    """Write a simulated trajectory atomically (the way the trainer does)."""
    from valuedyn._io import write_dataset_atomic

    write_dataset_atomic(dataset, path)


def simulate_deviated_selection(model, params: dict[str, float], *, n_seeds: int = 3, n_updates: int = 30,
                                episodes: int = 200, deviation_sd: float = 0.6, deviation_time: float = 0.15,
                                seed: int = 0):
    """An in-memory unlock selection (no file) whose logit is the model's level plus an
    Ornstein-Uhlenbeck deviation per seed (the process of
    :mod:`valuedyn.fitting.inference._deviation`: size ``deviation_sd`` in logit units,
    timescale ``deviation_time`` in tau units, exact recursion, stationary start), with
    Binomial counts of ``episodes`` finished episodes per update; ``params``: one value per
    parameter, shared by the seeds. Returns (Selection, the deviation [S, U])."""
    from valuedyn.fitting.inference._deviation import link
    from valuedyn.fitting.inference._select import Selection

    rng = np.random.default_rng(seed)
    tau = np.linspace(0.0, 1.0, n_updates)
    values = {k: jnp.full((n_seeds,), v, jnp.float32) for k, v in params.items()}
    outputs, ok = jax.vmap(lambda p: model.solve_binned(p, jnp.asarray(tau, jnp.float32)))(values)
    if not bool(np.all(np.asarray(ok))):
        raise ValueError("the model's solve failed for these parameters")
    level = np.asarray(outputs[model.applies_to["unlock"]], np.float64)
    deviation = np.zeros_like(level)
    deviation[:, 0] = deviation_sd * rng.standard_normal(n_seeds)
    for u in range(1, n_updates):
        rho = np.exp(-(tau[u] - tau[u - 1]) / deviation_time)
        deviation[:, u] = rho * deviation[:, u - 1] + deviation_sd * np.sqrt(1.0 - rho**2) * rng.standard_normal(n_seeds)
    probability = 1.0 / (1.0 + np.exp(-(link("binomial", level, xp=np) + deviation)))
    exposure = np.full((n_seeds, n_updates), episodes, np.int64)
    y = rng.binomial(exposure, probability).astype(np.int64)
    selection = Selection(
        behaviour="unlock:place_table", kind="unlock", name="place_table", family="binomial",
        seeds=np.arange(n_seeds), updates=np.arange(n_updates), y=y, exposure=exposure.astype(np.float64),
        mask=np.ones_like(y, bool), env_step=(np.arange(n_updates) + 1) * 4096, tau=tau, level_scale=1.0,
        time_origin=4096.0, time_scale=float((n_updates - 1) * 4096),
    )
    return selection, deviation
