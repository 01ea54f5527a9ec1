"""Environmental memory: how far back a policy's recurrent state remembers the world.

For each checkpoint the policy is rolled out in Craftax-Classic on its own behaviour
(fixed seeds: the same worlds and keys for every checkpoint) and, at every step ``t``,
its state is recorded with facts about the world that an *earlier* observation showed
but the current one does not (:data:`MEMORY_FEATURES`, defined in
:data:`FEATURE_DEFINITIONS`). Held-out linear decoders are fitted from the state at
``t`` to each fact at lags ``k = 1 .. K`` and compared with the same decoder given only
what the current observation holds (what needs no memory). The **memory horizon** of a
feature is the largest lag at which the state beats that decoder by the margin
:data:`MEMORY_MARGIN` (:data:`HORIZON_RULE`, :func:`memory_horizon`).

What "only the current observation" holds: the observation itself *and the network's
own memoryless read-out of it* (a GRU: the same step from a zero hidden state, as at an
episode's start; a feed-forward policy: its hidden layer). Against the observation
alone, a state that is a nonlinear function of the current observation can look like
memory: a random feed-forward policy's last hidden layer (256 units x 2 layers, no
memory at all) beat a linear decoder of the raw observation on ``water_direction`` at
lag 14 of a calibration rollout (lower end of the interval 0.06; the view around the
player says where water tends to be); given its read-out too, it reached 0.033.

Pieces, each usable on its own:

- :func:`collect_memory_rollouts`: the rollout, recording the state (a GRU policy: its
  actor's hidden state after reading ``obs_t``; a feed-forward policy, the control: its
  actor's last hidden layer), its memoryless counterpart, and the per-step facts read
  from the Craftax ``EnvState``.
- :func:`memory_targets`: the lagged features from the per-step facts (plain numpy, so
  synthetic sequences with a known answer go through the same code).
- :func:`decode_memory`: the decoders, cross-validated by episode, and the bootstrap
  interval of the state's advantage; :func:`memory_horizon`.
- :func:`memory_probe`: all of it over the checkpoints of a run -> an xarray Dataset
  (``valuedyn probe RUN --memory`` writes it to ``<RUN stem>.memory.nc``).

Decoders (:data:`DECODER_DESCRIPTION`; the same for the state and the baseline): each
input block centred over the rollout's states, constant columns dropped and, beyond
``max_components`` columns, projected on its own leading principal components (the share
of variance kept is recorded); ridge regression with an unpenalised intercept; the
penalty of each held-out fold chosen by an inner cross-validation over its training
folds. A binary target is decoded as a linear probability, so one score serves every
feature: the held-out **skill** ``1 - SSE(decoder) / SSE(training-fold mean)``, summed
over the held-out folds (R^2 of a real target, the Brier skill score of a binary one;
0 = no better than the base rate). Folds are whole episodes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from valuedyn._errors import ValuedynError

CLASSIC_ENV = "Craftax-Classic-Symbolic-v1"

#: Features that the current observation does not show but an earlier one did.
MEMORY_FEATURES: tuple[str, ...] = ("water_seen", "table_seen", "tree_seen", "water_direction", "steps_since_drink")

#: Blocks of the ``*_seen`` features, in that order (Craftax-Classic ``BlockType`` names).
SEEN_BLOCKS: tuple[tuple[str, str], ...] = (("water_seen", "WATER"), ("table_seen", "CRAFTING_TABLE"), ("tree_seen", "TREE"))

#: The lag-k target of each feature and the states it is scored on.
FEATURE_DEFINITIONS: dict[str, str] = {
    **{
        name: (
            f"binary: a {block.lower().replace('_', ' ')} tile was in the view window k steps ago; "
            "scored on the states where none is in view now and the episode is at least k steps old"
        )
        for name, block in SEEN_BLOCKS
    },
    "water_direction": (
        "sin and cos of the angle of (water - player) in map axes (cos: axis 0, sin: axis 1), from the player's "
        "position now to the water tile nearest the player when water was last in view; scored on the states "
        "where water was last in view at least k steps ago (none in view for the last k steps, seen before in the episode)"
    ),
    "steps_since_drink": (
        "steps since the drink meter was last refilled: 0 on the observation right after a drink or at the start of "
        "the episode (the meter starts full), +1 per step; scored on the states where it is at least k"
    ),
}

#: The state beats the baseline at a lag when the lower end of the 95 % bootstrap
#: interval of its advantage in held-out skill exceeds this margin: 0.1, i.e. the state
#: explains at least a tenth of the target's held-out variance more. Why 0.1: memoryless
#: states edge out the baseline by more than the interval allows for, through what the
#: interval does not cover (a larger baseline design overfits more across episodes; the
#: principal-component projections keep other directions of each input; a GRU's gates
#: read the current observation differently once its hidden state is not zero). In
#: calibration rollouts (32 envs x 256 steps, lags 1..16) the largest lower end that a
#: memoryless state reached was 0.033 (a random feed-forward policy's 256-unit layer,
#: water_direction), and 0.06 against the raw observation alone; a state that holds the
#: lagged fact clears 0.1 wherever the fact explains that much (synthetic: 0.27 at the
#: lag held for water_direction, 1.0 for the *_seen features).
MEMORY_MARGIN = 0.1
#: Coverage of the bootstrap interval of the advantage (resampling episodes).
INTERVAL = 0.95
#: A (feature, lag) is scored only when its states span at least this many episodes: the
#: interval resamples episodes, and with fewer it is meaningless (states from 4 episodes
#: gave spurious horizons in calibration). Unscored: NaN, never a beat.
MIN_EPISODES = 10
HORIZON_RULE = (
    "memory_horizon = the largest lag k at which the lower end of the {interval:.0%} bootstrap interval (over episodes) "
    "of memory_advantage = skill(state) - skill(baseline) exceeds the margin {margin}; 0 if no lag does; a lag whose "
    "states span fewer than {min_episodes} episodes is not scored"
).format(interval=INTERVAL, margin=MEMORY_MARGIN, min_episodes=MIN_EPISODES)

#: Ridge penalties tried, in units of the mean eigenvalue of the training Gram matrix.
RIDGE_PENALTIES = tuple(float(x) for x in np.logspace(-4, 3, 15))

DECODER_DESCRIPTION = (
    "ridge regression (a binary target as a linear probability) with an unpenalised intercept; each input block (the "
    "state; the observation; the memoryless read-out) centred over the rollout's states, constant columns dropped, and "
    "projected on its own leading principal components beyond memory_components columns; the penalty of each held-out fold chosen by an inner cross-validation over its "
    "training folds, from 1e-4 .. 1e3 times the mean eigenvalue of the training Gram matrix (15 values, log-even); "
    "predictions clipped to the training targets' range; folds = whole episodes; skill = 1 - SSE / SSE of the "
    "training-fold mean, summed over the held-out folds (R^2, or the Brier skill score of a binary target)"
)
BASELINE_DESCRIPTION = (
    "what needs no memory: the decoder given the current observation and the network's memoryless read-out of it "
    "(a GRU: the same step from a zero hidden state; a feed-forward policy: its last hidden layer)"
)


@dataclasses.dataclass(frozen=True)
class MemorySettings:
    """How the memory probe rolls out and decodes (``valuedyn probe --memory-*`` flags)."""

    num_envs: int = 32  # environments per rollout
    num_steps: int = 256  # steps per rollout
    num_lags: int = 32  # K: lags 1..K
    num_folds: int = 5  # cross-validation folds (whole episodes)
    num_bootstrap: int = 1000  # bootstrap resamples of episodes for the interval
    max_components: int = 128  # decoder inputs wider than this: their leading principal components
    seed: int = 0  # rollouts, folds, bootstrap

    def validate(self) -> None:
        checks = [
            (self.num_lags >= 1, "--memory-lags must be >= 1", self.num_lags),
            (self.num_steps > self.num_lags, f"--memory-steps must exceed --memory-lags ({self.num_lags})", self.num_steps),
            # each held-out fold's penalty is chosen on two or more training folds
            (self.num_folds >= 3, "--memory-folds must be >= 3", self.num_folds),
            # every environment gives at least one episode, so this many envs fill every fold
            (self.num_envs >= self.num_folds, f"--memory-envs must be >= --memory-folds ({self.num_folds})", self.num_envs),
            (self.num_bootstrap >= 100, "--memory-bootstrap must be >= 100", self.num_bootstrap),
            (self.max_components >= 1, "--memory-components must be >= 1", self.max_components),
        ]
        for ok, rule, received in checks:
            if not ok:
                raise ValuedynError(f"{rule}, received {received}; pass a value in range")


# --------------------------------------------------------------------------- rollouts


class MemoryRollout(NamedTuple):
    """Per-step records of a rollout, shapes ``[env, step, ...]`` (a leading ``seed`` axis
    where batched). Step ``t``'s state has read observation ``t``."""

    observation: np.ndarray  # float32 [..., obs_dim]
    state: np.ndarray  # float32 [..., state_dim]: the GRU hidden state (feed-forward: last hidden layer)
    memoryless_state: np.ndarray  # float32 [..., state_dim]: the same from the current observation alone
    first: np.ndarray  # bool: step t is the first of an episode
    player_position: np.ndarray  # int32 [..., 2] map position
    in_view: np.ndarray  # bool [..., 3]: a water, crafting-table, tree tile in the view window (SEEN_BLOCKS order)
    water_position: np.ndarray  # int32 [..., 2]: the water tile in view nearest the player; -1 where none
    drank: np.ndarray  # bool: the action at step t drank water


def collect_memory_rollouts(rng: jax.Array, actor, params, num_envs: int, num_steps: int) -> MemoryRollout:
    """Roll the policy of every seed out on its own behaviour: ``params`` has a leading seed
    axis (the actor parameters of a checkpoint); the result ``[seed, env, step, ...]``.

    ``actor`` is the run's actor module (:func:`valuedyn.data.make_networks`): a
    ``RecurrentActor`` records its GRU hidden state, an ``Actor`` (feed-forward) its last
    hidden layer (tanh), a state without memory. Every seed starts from the same worlds
    and uses the same keys (``rng``); episodes that end are reset as in training
    (optimistic resets, :func:`valuedyn.data._envs.optimistic_reset`).
    Compiled once per ``(num_envs, num_steps, actor)``.
    """
    program = _memory_rollout_program(num_envs, num_steps, actor)
    records = jax.device_get(program(rng, params))
    return MemoryRollout(*(np.swapaxes(np.asarray(x), 1, 2) for x in records))  # [seed, step, env] -> [seed, env, step]


def _view_facts(state):
    """``(in_view bool[3], water_position int32[2])`` of one unbatched Craftax-Classic state:
    the blocks of :data:`SEEN_BLOCKS` in the window the symbolic observation shows (the
    renderer's own slicing), and the water tile in it nearest the player (-1 if none)."""
    from craftax.craftax_classic.constants import OBS_DIM, BlockType

    pad = max(OBS_DIM) + 2
    half = jnp.array(OBS_DIM) // 2
    padded = jnp.pad(state.map, pad, constant_values=BlockType.OUT_OF_BOUNDS.value)
    view = jax.lax.dynamic_slice(padded, state.player_position - half + pad, OBS_DIM)
    blocks = jnp.array([BlockType[block].value for _, block in SEEN_BLOCKS])
    in_view = jnp.any(view[None] == blocks[:, None, None], axis=(1, 2))
    rows, cols = jnp.meshgrid(jnp.arange(OBS_DIM[0]) - half[0], jnp.arange(OBS_DIM[1]) - half[1], indexing="ij")
    distance = jnp.where(view == BlockType.WATER.value, rows**2 + cols**2, jnp.iinfo(jnp.int32).max)
    nearest = jnp.argmin(distance.ravel())
    offset = jnp.stack([rows.ravel()[nearest], cols.ravel()[nearest]])
    water_position = jnp.where(in_view[0], state.player_position + offset, -1).astype(jnp.int32)
    return in_view, water_position


@functools.lru_cache(maxsize=4)
def _memory_rollout_program(num_envs: int, num_steps: int, actor):
    from valuedyn.data._envs import make_env, num_resets, optimistic_reset
    from valuedyn.data._events import event_spec
    from valuedyn.data._networks import RecurrentActor
    from valuedyn.data._probe import cheap_compile_options

    env, env_params = make_env(CLASSIC_ENV)
    spec = event_spec(CLASSIC_ENV)
    drink = spec.events.index("collect_drink")
    recurrent = isinstance(actor, RecurrentActor)
    hidden_size = actor.hidden_size if recurrent else 1  # feed-forward: an unused placeholder carry
    resets = num_resets(num_envs)  # fresh worlds per step, as the trainer's default

    def policy(params, hidden, obs, first):
        """``(hidden', logits, state, memoryless state)`` of one step."""
        if recurrent:
            hidden, logits = actor.apply({"params": params}, hidden, obs[None], first[None])
            # the same GRU step from a zero hidden state (reset): the current observation alone
            memoryless, _ = actor.apply({"params": params}, jnp.zeros_like(hidden), obs[None], jnp.ones_like(first)[None])
            return hidden, logits[0], hidden, memoryless
        logits, captured = actor.apply({"params": params}, obs, capture_intermediates=True, mutable=["intermediates"])
        last_layer = jnp.tanh(captured["intermediates"]["MLPHead_0"][f"Dense_{actor.num_layers - 1}"]["__call__"][0])
        return hidden, logits, last_layer, last_layer

    def rollout(rng, params):
        reset_key, rng = jax.random.split(rng)
        obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(jax.random.split(reset_key, num_envs), env_params)
        hidden = jnp.zeros((num_envs, hidden_size), jnp.float32)

        def step(carry, key):
            obs, state, hidden, first = carry
            action_key, step_key, reset_key = jax.random.split(key, 3)
            hidden, logits, recorded, memoryless = policy(params, hidden, obs, first)
            action = jax.random.categorical(action_key, logits, axis=-1)
            in_view, water_position = jax.vmap(_view_facts)(state)
            next_obs, next_state, _, done, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, num_envs), state, action, env_params
            )
            drank = jax.vmap(spec.count)(state, action, next_state)[:, drink] > 0
            record = (obs, recorded.astype(jnp.float32), memoryless.astype(jnp.float32), first,
                      state.player_position.astype(jnp.int32), in_view, water_position, drank)
            next_obs, next_state = optimistic_reset(reset_key, env, env_params, done, next_obs, next_state, resets)
            return (next_obs, next_state, hidden, done), record

        first = jnp.ones((num_envs,), bool)
        _, records = jax.lax.scan(step, (obs, state, hidden, first), jax.random.split(rng, num_steps))
        return records

    options = cheap_compile_options(num_envs * num_steps <= 2048)
    return jax.jit(jax.vmap(rollout, in_axes=(None, 0)), compiler_options=options)


# --------------------------------------------------------------------------- targets


class MemoryTargets(NamedTuple):
    """Lagged features of one rollout, flattened over (env, step): ``n = envs x steps``."""

    values: tuple[np.ndarray, ...]  # per feature (MEMORY_FEATURES order): float64 [lag, n, outputs]
    valid: np.ndarray  # bool [feature, lag, n]: the states each (feature, lag) is scored on
    episode: np.ndarray  # int64 [n]: episode index, 0 .. num_episodes - 1 (contiguous per env)
    num_episodes: int


def _running(first: np.ndarray, reset_value, update):
    """Scan over steps (axis 1) of ``[env, step]`` arrays: ``value[t] = reset_value(t)`` at an
    episode's first step, else ``update(t, value[t-1])``."""
    out = []
    previous = None
    for t in range(first.shape[1]):
        restart = first[:, t] if t else np.ones(first.shape[0], bool)
        fresh = reset_value(t)
        value = fresh if previous is None else np.where(restart, fresh, update(t, previous))
        out.append(value)
        previous = value
    return np.stack(out, axis=1)


def memory_targets(rollout: MemoryRollout, num_lags: int) -> MemoryTargets:
    """The lagged features of :data:`FEATURE_DEFINITIONS` at lags ``1 .. num_lags`` from the
    per-step facts of one seed's rollout (arrays ``[env, step, ...]``; ``observation`` and
    ``state`` are not read). The first step of the rollout starts an episode."""
    first = np.asarray(rollout.first, bool).copy()
    first[:, 0] = True
    num_envs, num_steps = first.shape
    in_view = np.asarray(rollout.in_view, bool)
    position = np.asarray(rollout.player_position, np.float64)
    drank = np.asarray(rollout.drank, bool)

    episode_step = _running(first, lambda t: np.zeros(num_envs, np.int64), lambda t, prev: prev + 1)
    per_env = np.cumsum(first, axis=1) - 1
    offsets = np.concatenate([[0], np.cumsum(first.sum(axis=1))[:-1]])
    episode = (per_env + offsets[:, None]).reshape(-1)

    lags = np.arange(1, num_lags + 1)
    values, valid = [], []
    for index, _ in enumerate(SEEN_BLOCKS):
        seen = in_view[..., index]
        past = np.zeros((num_lags, num_envs, num_steps, 1))
        for k in lags:
            past[k - 1, :, k:, 0] = seen[:, :-k]
        values.append(past)
        valid.append((episode_step[None] >= lags[:, None, None]) & ~seen[None])

    # Water: age of the last sighting (-1: none yet in this episode) and the tile seen then.
    water_seen = in_view[..., 0]
    water_age = _running(
        first,
        lambda t: np.where(water_seen[:, t], 0, -1),
        lambda t, prev: np.where(water_seen[:, t], 0, np.where(prev >= 0, prev + 1, -1)),
    )
    last_water = np.asarray(rollout.water_position, np.float64).copy()
    for t in range(1, num_steps):
        carry = ~water_seen[:, t] & ~first[:, t]
        last_water[carry, t] = last_water[carry, t - 1]
    delta = last_water - position
    norm = np.hypot(delta[..., 0], delta[..., 1])
    direction = np.stack([delta[..., 1], delta[..., 0]], axis=-1) / np.where(norm > 0, norm, 1.0)[..., None]  # sin, cos
    values.append(np.broadcast_to(direction, (num_lags, *direction.shape)))
    valid.append((water_age[None] >= lags[:, None, None]) & (norm > 0)[None])

    # Drink: steps since the meter was last refilled (a drink at step t refills it for step t + 1).
    refilled = np.zeros_like(drank)
    refilled[:, 1:] = drank[:, :-1]
    drink_age = _running(first, lambda t: np.zeros(num_envs, np.int64), lambda t, prev: np.where(refilled[:, t], 0, prev + 1))
    values.append(np.broadcast_to(drink_age[None, ..., None].astype(np.float64), (num_lags, num_envs, num_steps, 1)))
    valid.append(drink_age[None] >= lags[:, None, None])

    flat_values = tuple(v.reshape(num_lags, num_envs * num_steps, v.shape[-1]) for v in values)
    flat_valid = np.stack([v.reshape(num_lags, -1) for v in valid])
    return MemoryTargets(flat_values, flat_valid, episode.astype(np.int64), int(first.sum()))


# --------------------------------------------------------------------------- decoders


class MemoryScores(NamedTuple):
    """Decoding of each feature at each lag; shapes ``[feature, lag]`` unless stated. NaN
    where a (feature, lag) is not scored: its states span fewer than :data:`MIN_EPISODES`
    episodes or three folds, or its target does not vary on them."""

    skill_state: np.ndarray  # held-out skill of the decoder from the state
    skill_baseline: np.ndarray  # held-out skill of the decoder from what the current observation holds
    advantage: np.ndarray  # skill_state - skill_baseline
    advantage_low: np.ndarray  # bootstrap interval (resampling episodes) of the advantage, lower end
    advantage_high: np.ndarray
    samples: np.ndarray  # int: states scored
    episodes: np.ndarray  # int: episodes holding them
    horizon: np.ndarray  # int [feature]: the memory horizon (memory_horizon)
    components_kept: dict  # "state" / "baseline" -> (input columns after the projection, share of variance kept)


def memory_horizon(advantage_low: np.ndarray, margin: float = MEMORY_MARGIN) -> np.ndarray:
    """The memory horizon ``[...]`` from ``advantage_low[..., lag]`` (lags 1..K): the largest
    lag whose interval's lower end exceeds ``margin`` (NaN never does); 0 if none."""
    beats = np.nan_to_num(np.asarray(advantage_low, np.float64), nan=-np.inf) > margin
    lags = np.arange(1, beats.shape[-1] + 1)
    return np.max(np.where(beats, lags, 0), axis=-1).astype(np.int32)


def episode_folds(episode: np.ndarray, num_episodes: int, num_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of every state ``[n]``: whole episodes, in a random order, each to the fold that
    holds the fewest states so far (folds of similar size, never splitting an episode)."""
    sizes = np.bincount(episode, minlength=num_episodes)
    fold_of_episode = np.zeros(num_episodes, np.int64)
    load = np.zeros(num_folds, np.int64)
    for e in rng.permutation(num_episodes):
        target = int(np.argmin(load))
        fold_of_episode[e] = target
        load[target] += sizes[e]
    return fold_of_episode[episode]


def _decoder_inputs(blocks, n: int, max_components: int) -> tuple[np.ndarray, int, float]:
    """The inputs of one decoder from one array or a sequence of arrays (blocks), each
    ``[n, ...]``: every block centred, its constant columns dropped and, where wider than
    ``max_components``, projected on its own leading principal components; the blocks
    side by side. Returns ``(inputs [n, d], d, share of the blocks' variance kept)``."""
    parts, kept, total = [], 0.0, 0.0
    for block in [blocks] if isinstance(blocks, np.ndarray) else blocks:
        x = np.asarray(block, np.float64).reshape(n, -1)
        x = x - x.mean(axis=0)
        x = x[:, np.any(x != 0, axis=0)]
        variance = float(np.square(x).sum())
        total += variance
        if x.shape[1] > max_components:
            eigenvalues, eigenvectors = np.linalg.eigh(x.T @ x)
            order = np.argsort(eigenvalues)[::-1][:max_components]
            x = x @ eigenvectors[:, order]
            variance = float(np.clip(eigenvalues[order], 0.0, None).sum())
        kept += variance
        parts.append(x)
    inputs = np.concatenate(parts, axis=1)
    return inputs, inputs.shape[1], kept / total if total > 0 else 1.0


class _FoldGrams:
    """Gram sums ``X^T X``, ``sum X`` and row counts per fold over a set of rows, updated by
    the rows that enter or leave it (the states scored at successive lags are nested)."""

    def __init__(self, x, fold, num_folds):
        self.x, self.fold, self.num_folds = x, fold, num_folds
        d = x.shape[1]
        self.gram = np.zeros((num_folds, d, d))
        self.total = np.zeros((num_folds, d))
        self.count = np.zeros(num_folds, np.int64)
        self.rows = np.zeros(len(x), bool)

    def _add(self, rows, sign):
        for g in np.unique(self.fold[rows]):
            part = self.x[rows & (self.fold == g)]
            self.gram[g] += sign * (part.T @ part)
            self.total[g] += sign * part.sum(axis=0)
            self.count[g] += sign * len(part)

    def set_rows(self, rows):
        enter, leave = rows & ~self.rows, self.rows & ~rows
        if enter.sum() + leave.sum() > rows.sum():  # cheaper (and exact) to start again
            self.gram[:], self.total[:], self.count[:] = 0.0, 0.0, 0
            enter, leave = rows, np.zeros_like(rows)
        if enter.any():
            self._add(enter, 1)
        if leave.any():
            self._add(leave, -1)
        self.rows = rows.copy()


def _ridge_held_out(grams: _FoldGrams, y: np.ndarray, rows: np.ndarray):
    """Out-of-fold predictions of a ridge decoder and of the training mean.

    ``y [n, m]``; ``rows [n]`` the states scored. Each held-out fold's penalty is chosen by
    an inner cross-validation over its training folds (whole episodes again: rows of one
    episode are alike, so a per-row criterion such as GCV picks far too small a penalty
    and the decoder fails on other worlds), all from per-fold sums. Returns
    ``(pred [n, m], mean_pred [n, m], scored_folds)``: predictions on the rows of every
    fold held out whose training part spans at least two folds (others left NaN).
    """
    x, fold, num_folds = grams.x, grams.fold, grams.num_folds
    d, m = x.shape[1], y.shape[1]
    pred = np.full(y.shape, np.nan)
    mean_pred = np.full(y.shape, np.nan)
    active = [int(g) for g in np.flatnonzero(grams.count > 0)]
    if len(active) < 3:  # an outer fold needs two training folds for its inner choice
        return pred, mean_pred, 0
    stats, span = {}, {}
    for g in active:
        member = rows & (fold == g)
        ym = y[member]
        stats[g] = (grams.gram[g], grams.total[g], int(grams.count[g]), x[member].T @ ym, ym.sum(axis=0), np.square(ym).sum(axis=0))
        span[g] = (ym.min(axis=0), ym.max(axis=0))

    def summed(folds):
        parts = [stats[g] for g in folds]
        return tuple(sum(p[i] for p in parts) for i in range(6))

    # One fit per training set: every fold but one (outer) and every fold but two (inner).
    excluded = [(g,) for g in active] + [(g, h) for i, g in enumerate(active) for h in active[i + 1 :]]
    fits = {}
    grams_c = []
    for out in excluded:
        gram, total, count, b, sy, _ = summed([g for g in active if g not in out])
        xm, ym = total / count, sy / count
        grams_c.append(gram - count * np.outer(xm, xm))
        fits[out] = (xm, ym, b - count * np.outer(xm, ym))
    if d:
        eigenvalues, eigenvectors = np.linalg.eigh(np.stack(grams_c))
        eigenvalues = np.clip(eigenvalues, 0.0, None)
    penalties = np.asarray(RIDGE_PENALTIES)
    for i, out in enumerate(excluded):
        xm, ym, b_c = fits[out]
        if not d:
            fits[out] = (xm, ym, None)
            continue
        s, vectors = eigenvalues[i], eigenvectors[i]
        shrink = 1.0 / (s[None, :] + penalties[:, None] * max(float(s.mean()), 1e-300))  # [L, d]
        coefficients = np.einsum("de,le,em->ldm", vectors, shrink, vectors.T @ b_c)  # [L, d, m], one per penalty
        fits[out] = (xm, ym, coefficients)

    def held_sse(out, h):
        """SSE on fold h of the fit without ``out``, for every penalty [L] (from h's sums alone)."""
        xm, ym, coefficients = fits[out]
        gram, total, count, b, sy, syy = stats[h]
        vv = float((syy - 2 * ym * sy + count * np.square(ym)).sum())
        if coefficients is None:
            return np.full(len(penalties), vv)
        uu = gram - np.outer(total, xm) - np.outer(xm, total) + count * np.outer(xm, xm)
        uv = b - np.outer(total, ym) - np.outer(xm, sy) + count * np.outer(xm, ym)
        return vv - 2 * np.einsum("dm,ldm->l", uv, coefficients) + np.einsum("ldm,ldm->l", coefficients, uu @ coefficients)

    for g in active:
        inner = sum(held_sse(tuple(sorted((g, h))), h) for h in active if h != g)
        # Ties (a target constant on the inner folds) go to the strongest penalty: the
        # weakest would extrapolate wildly on a held-out episode unlike the training ones.
        best = int(np.flatnonzero(inner <= inner.min() + 1e-9 * max(float(np.abs(inner).max()), 1e-12))[-1])
        xm, ym, coefficients = fits[(g,)]
        held = rows & (fold == g)
        mean_pred[held] = ym
        if coefficients is None:
            pred[held] = ym
            continue
        # A prediction outside the range of the training targets is never closer to a
        # target inside it: clip (binary targets stay probabilities, directions in [-1, 1]).
        low = np.min([span[h][0] for h in active if h != g], axis=0)
        high = np.max([span[h][1] for h in active if h != g], axis=0)
        pred[held] = np.clip((x[held] - xm) @ coefficients[best] + ym, low, high)
    return pred, mean_pred, len(active)


def decode_memory(
    state: np.ndarray,
    baseline: np.ndarray,
    targets: MemoryTargets,
    *,
    num_folds: int = 5,
    num_bootstrap: int = 1000,
    max_components: int = 128,
    rng: np.random.Generator | None = None,
    margin: float = MEMORY_MARGIN,
) -> MemoryScores:
    """Decode every feature at every lag from the state and from the baseline.

    ``state [n, state_dim]``; ``baseline [n, baseline_dim]``: functions of the current
    observation only (what needs no memory), or a sequence of such arrays, each reduced
    to ``max_components`` principal components on its own (:func:`memory_probe` passes
    the observation and the network's memoryless read-out of it, so the read-out is in
    the baseline as fully as the state is in the state's decoder); arrays may be
    ``[env, step, ...]``, flattened like the targets. Both decoders see the same folds (whole episodes), so
    the advantage ``skill_state - skill_baseline`` is paired; its interval resamples
    episodes (the same resamples for every feature and lag). Deterministic given ``rng``.
    """
    from threadpoolctl import threadpool_limits

    # Hundreds of small eigendecompositions: one BLAS thread each. A threaded OpenBLAS
    # spins against whatever else runs (a training run beside it): 30x slower on 2 cores.
    with threadpool_limits(limits=1, user_api="blas"):
        return _decode_memory(state, baseline, targets, num_folds, num_bootstrap, max_components,
                              np.random.default_rng(0) if rng is None else rng, margin)


def _decode_memory(state, baseline, targets, num_folds, num_bootstrap, max_components, rng, margin) -> MemoryScores:
    n = targets.episode.shape[0]
    designs, kept = {}, {}
    for name, x in (("state", state), ("baseline", baseline)):
        designs[name], *kept[name] = _decoder_inputs(x, n, max_components)
    fold = episode_folds(targets.episode, targets.num_episodes, num_folds, rng)
    resample = rng.multinomial(targets.num_episodes, np.full(targets.num_episodes, 1.0 / targets.num_episodes), size=num_bootstrap)
    num_features, num_lags = targets.valid.shape[:2]
    shape = (num_features, num_lags)
    skill = {name: np.full(shape, np.nan) for name in designs}
    low, high = np.full(shape, np.nan), np.full(shape, np.nan)
    samples, episodes = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    tail = 100 * (1 - INTERVAL) / 2
    for f in range(num_features):
        grams = {name: _FoldGrams(x, fold, num_folds) for name, x in designs.items()}
        for lag in reversed(range(num_lags)):  # fewest states first: the sets grow as the lag shrinks
            rows = targets.valid[f, lag]
            samples[f, lag] = rows.sum()
            episodes[f, lag] = np.unique(targets.episode[rows]).size
            if episodes[f, lag] < MIN_EPISODES:
                continue
            y = targets.values[f][lag]
            errors = {}
            for name, g in grams.items():
                g.set_rows(rows)
                pred, mean_pred, scored = _ridge_held_out(g, y, rows)  # the same folds for both designs
                errors[name] = np.square(pred - y).sum(axis=1)
            errors["mean"] = np.square(mean_pred - y).sum(axis=1)
            scored_rows = rows & np.isfinite(errors["mean"])
            if scored < 3:
                continue
            per_episode = {
                name: np.bincount(targets.episode[scored_rows], weights=e[scored_rows], minlength=targets.num_episodes)
                for name, e in errors.items()
            }
            reference = per_episode["mean"].sum()
            if not reference > 0:  # the target is constant on the scored states
                continue
            for name in designs:
                skill[name][f, lag] = 1.0 - per_episode[name].sum() / reference
            gain = resample @ (per_episode["baseline"] - per_episode["state"])
            denominator = resample @ per_episode["mean"]
            draws = gain[denominator > 0] / denominator[denominator > 0]
            if draws.size >= num_bootstrap // 2:
                low[f, lag], high[f, lag] = np.percentile(draws, [tail, 100 - tail])
    return MemoryScores(
        skill_state=skill["state"], skill_baseline=skill["baseline"], advantage=skill["state"] - skill["baseline"],
        advantage_low=low, advantage_high=high, samples=samples, episodes=episodes,
        horizon=memory_horizon(low, margin), components_kept={name: tuple(k) for name, k in kept.items()},
    )


# --------------------------------------------------------------------------- over a run's checkpoints

def memory_probe(run, settings: MemorySettings = MemorySettings(), *, progress: bool = False, out=None):
    """Memory measures of every checkpoint of the run whose trajectory file is ``run``
    (checkpoints in ``<run>.ckpt/``) as an xarray Dataset; written atomically to ``out``
    only if given (netCDF4, h5netcdf).

    Dims ``seed``, ``checkpoint`` (coords ``update``, ``env_step``), ``feature``
    (:data:`MEMORY_FEATURES`), ``lag`` (1 .. ``settings.num_lags``). The horizon
    ``memory_horizon[seed, checkpoint, feature]`` is a count in ``0 .. num_lags``
    (attr ``num_lags``). A feed-forward run is probed through its last hidden layer (the
    memoryless control; attr ``state_kind``).
    """
    import xarray as xr
    from tqdm import tqdm

    from valuedyn._config import config_to_json
    from valuedyn._io import file_sha256, provenance, require_file, write_dataset_atomic
    from valuedyn.data._checkpoint import checkpoint_coords, checkpoint_dir, list_checkpoints, load_checkpoint, same_run
    from valuedyn.data._networks import make_networks

    start = time.time()
    settings.validate()
    run = require_file(run, "trajectory file")
    checkpoints = list_checkpoints(run)
    if not checkpoints:
        raise ValuedynError(
            f"run {run} has no checkpoints in {checkpoint_dir(run)}/; the memory probe needs the checkpoints `valuedyn train` writes there"
        )
    first = load_checkpoint(checkpoints[0])
    train_config = first.config
    if train_config.env != CLASSIC_ENV:
        raise ValuedynError(f"the memory probe supports {CLASSIC_ENV!r} only (its features read that world), the run used {train_config.env!r}")
    actor, _ = make_networks(train_config)
    rng = jax.random.PRNGKey(settings.seed)  # the same worlds and keys for every checkpoint and seed
    num_seeds, num_lags = train_config.seeds, settings.num_lags

    per_checkpoint = []
    updates, env_steps, seconds = [], [], []
    bar = tqdm(checkpoints, desc="memory probe", unit="ckpt", disable=not progress)
    for index, path in enumerate(bar):
        began = time.time()
        checkpoint = first if index == 0 else load_checkpoint(path)
        if not same_run(checkpoint.config, train_config):
            raise ValuedynError(f"checkpoint {path} was written with another config than {checkpoints[0]}; one run per folder")
        params = jax.tree.map(jnp.asarray, checkpoint.params["actor"])
        records = collect_memory_rollouts(rng, actor, params, settings.num_envs, settings.num_steps)
        seeds = []
        for seed in range(num_seeds):
            rollout = MemoryRollout(*(x[seed] for x in records))
            targets = memory_targets(rollout, num_lags)
            scores = decode_memory(
                rollout.state, (rollout.observation, rollout.memoryless_state), targets, num_folds=settings.num_folds, num_bootstrap=settings.num_bootstrap,
                max_components=settings.max_components, rng=np.random.default_rng([settings.seed, seed, index]),
            )
            seeds.append((scores, targets.num_episodes))
        per_checkpoint.append(seeds)
        updates.append(checkpoint.update)
        env_steps.append(checkpoint.env_step)
        seconds.append(time.time() - began)
        bar.set_postfix(update=checkpoint.update)
    bar.close()

    def gather(field, dtype):  # [seed, checkpoint, ...]
        return np.stack([np.stack([getattr(s, field) for s, _ in seeds]) for seeds in per_checkpoint], axis=1).astype(dtype)

    def kept(design, which):
        return np.array([[s.components_kept[design][which] for s, _ in seeds] for seeds in per_checkpoint]).T

    sfl = ("seed", "checkpoint", "feature", "lag")
    low = gather("advantage_low", np.float64)
    data = {
        "memory_horizon": (("seed", "checkpoint", "feature"), gather("horizon", np.int32)),
        "memory_lags_scored": (("seed", "checkpoint", "feature"), np.isfinite(low).sum(axis=-1).astype(np.int32)),
        "memory_beats": (sfl, (np.nan_to_num(low, nan=-np.inf) > MEMORY_MARGIN).astype(np.int8)),
        "memory_advantage": (sfl, gather("advantage", np.float32)),
        "memory_advantage_low": (sfl, low.astype(np.float32)),
        "memory_advantage_high": (sfl, gather("advantage_high", np.float32)),
        "memory_skill_state": (sfl, gather("skill_state", np.float32)),
        "memory_skill_baseline": (sfl, gather("skill_baseline", np.float32)),
        "memory_samples": (sfl, gather("samples", np.int32)),
        "memory_episodes": (sfl, gather("episodes", np.int32)),
        "rollout_episodes": (("seed", "checkpoint"), np.array([[e for _, e in seeds] for seeds in per_checkpoint], np.int32).T),
        "state_components": (("seed", "checkpoint"), kept("state", 0).astype(np.int32)),
        "state_variance_kept": (("seed", "checkpoint"), kept("state", 1).astype(np.float32)),
        "baseline_components": (("seed", "checkpoint"), kept("baseline", 0).astype(np.int32)),
        "baseline_variance_kept": (("seed", "checkpoint"), kept("baseline", 1).astype(np.float32)),
        "probe_seconds": (("checkpoint",), np.asarray(seconds, np.float32)),
    }
    state_kind = "gru_hidden" if train_config.recurrent else "last_hidden_layer"
    attrs = {
        "measures": "memory",
        "settings": json.dumps(dataclasses.asdict(settings), sort_keys=True),
        "num_lags": int(num_lags),
        "margin": float(MEMORY_MARGIN),
        "interval": float(INTERVAL),
        "min_episodes": int(MIN_EPISODES),
        "horizon_rule": HORIZON_RULE,
        "baseline": BASELINE_DESCRIPTION,
        "feature_definitions": json.dumps(FEATURE_DEFINITIONS),
        "decoder": DECODER_DESCRIPTION,
        "state_kind": state_kind,
        "state_dim": int(records.state.shape[-1]),
        "state_description": (
            "the actor's GRU hidden state after reading the observation of the step" if train_config.recurrent
            else "the actor's last hidden layer (tanh): a feed-forward policy has no memory, the control"
        ),
        "rollout": "the policy's own actions (sampled), the same worlds and keys for every checkpoint and seed; episodes that end are reset",
        "train_config": config_to_json(train_config),
        "trajectory": str(run),
        "trajectory_sha256": file_sha256(run),
        "seconds_per_checkpoint": float(np.median(seconds)),  # the median: the first checkpoint's time includes compiling
        **provenance(),
    }
    attrs["wall_time_s"] = float(time.time() - start)
    dataset = xr.Dataset(
        data,
        coords={
            **checkpoint_coords(num_seeds, updates, env_steps),
            "feature": list(MEMORY_FEATURES),
            "lag": np.arange(1, num_lags + 1),
        },
        attrs=attrs,
    )
    if out is not None:
        write_dataset_atomic(dataset, out)
    return dataset
