"""Developmental-interpretability measures on a fixed probe set of Craftax-Classic states.

Three pieces, each usable on its own:

- **Probe set** (:func:`collect_rollout_states`, :func:`stratified_indices`,
  :func:`probe_set_dataset`): environment states gathered from rollouts of a random
  policy and of several checkpoints, then subsampled so that rare situations (holding a
  sapling while facing grass, standing next to water, night, a zombie close by, any
  state where a behaviour is possible) are present. Reproducible from one seed.
- **Context size** (:func:`context_size`): for every action, and for every
  event-producing behaviour (an action *in a state where it produces its event*, e.g.
  PLACE_PLANT while holding a sapling and facing grass), the number and fraction of
  probe states in which the policy gives it probability above a threshold, and its mean
  probability.
- **Essential dynamics** (:func:`essential_dynamics`): PCA of the policy's log-probabilities
  on the probe set, jointly over seeds and checkpoints; the trajectory in PC space.

State features and behaviour contexts read the Craftax-Classic ``EnvState`` directly;
they are the same rules Craftax applies (see ``craftax_classic.game_logic``) and the
same event names as the trainer's event counter (:mod:`valuedyn.data._events`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from valuedyn._errors import ValuedynError

CLASSIC_ENV = "Craftax-Classic-Symbolic-v1"

#: Default probability above which a policy "chooses" an action in a state. A uniform
#: policy over Craftax's 17 actions gives 1/17 = 0.059 to each, so an untrained agent
#: chooses nothing and the context of a behaviour grows from zero as it is learned.
DEFAULT_THRESHOLD = 0.1

#: State features used to stratify the probe set (all Craftax-Classic).
FEATURES: tuple[str, ...] = (
    "sapling_facing_grass",  # holding a sapling and facing grass: PLACE_PLANT would plant
    "near_water",  # water in the 8 cells around the player
    "near_tree",
    "near_table",
    "near_zombie",  # a zombie within 3 cells (Chebyshev distance)
    "night",  # light level below 0.5
    "low_food",  # food <= 3 of 9
    "low_drink",  # drink <= 3 of 9
    "low_energy",  # energy <= 3 of 9
)

#: Event-producing behaviours: (event name as in the trajectory's ``event`` dim, action).
BEHAVIOURS: tuple[tuple[str, str], ...] = (
    ("place_plant", "place_plant"),
    ("place_table", "place_table"),
    ("place_stone", "place_stone"),
    ("place_furnace", "place_furnace"),
    ("collect_wood", "do"),
    ("collect_stone", "do"),
    ("collect_coal", "do"),
    ("collect_iron", "do"),
    ("collect_diamond", "do"),
    ("collect_sapling", "do"),  # possible on grass; Craftax then draws a sapling with p = 0.1
    ("collect_drink", "do"),
    ("make_wood_pickaxe", "make_wood_pickaxe"),
    ("make_stone_pickaxe", "make_stone_pickaxe"),
    ("make_iron_pickaxe", "make_iron_pickaxe"),
    ("make_wood_sword", "make_wood_sword"),
    ("make_stone_sword", "make_stone_sword"),
    ("make_iron_sword", "make_iron_sword"),
    ("eat_plant", "do"),
    ("attack_cow", "do"),  # any hit on a cow (eat_cow is the lethal one)
    ("attack_zombie", "do"),
    ("sleep", "sleep"),
)


def classic_action_names() -> tuple[str, ...]:
    from craftax.craftax_classic.constants import Action

    return tuple(member.name.lower() for member in sorted(Action, key=lambda m: m.value))


def behaviour_labels(action_names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """Labels, kinds and action indices of the ``behaviour`` dim: every action, then every behaviour.

    Actions are labelled ``action_<name>`` (context: every state); behaviours by their event name.
    """
    index = {name: i for i, name in enumerate(action_names)}
    labels = tuple(f"action_{name}" for name in action_names) + tuple(event for event, _ in BEHAVIOURS)
    kinds = ("action",) * len(action_names) + ("event",) * len(BEHAVIOURS)
    actions = tuple(range(len(action_names))) + tuple(index[action] for _, action in BEHAVIOURS)
    return labels, kinds, actions


# --------------------------------------------------------------------------- state features


def _near(state, block_value) -> jax.Array:
    from craftax.craftax_classic.constants import CLOSE_BLOCKS

    positions = state.player_position[None, :] + CLOSE_BLOCKS
    shape = jnp.array(state.map.shape)
    on_map = jnp.all((positions >= 0) & (positions < shape), axis=-1)
    clipped = jnp.clip(positions, 0, shape - 1)
    return jnp.any(on_map & (state.map[clipped[:, 0], clipped[:, 1]] == block_value))


def _mob_at(mobs, position) -> jax.Array:
    return jnp.any(jnp.all(mobs.position == position, axis=-1) & mobs.mask)


def classic_state_features(state) -> tuple[jax.Array, jax.Array]:
    """``(features bool[len(FEATURES)], contexts bool[len(BEHAVIOURS)])`` of one unbatched
    Craftax-Classic ``EnvState``. A context is true where taking the behaviour's action
    produces its event (collect_sapling: can produce it; Craftax draws with p = 0.1)."""
    from craftax.craftax_classic.constants import DIRECTIONS, SOLID_BLOCKS, BlockType

    inv = state.inventory
    target = state.player_position + DIRECTIONS[state.player_direction]
    shape = jnp.array(state.map.shape)
    on_map = jnp.all((target >= 0) & (target < shape))
    cell = jnp.clip(target, 0, shape - 1)
    facing = jnp.where(on_map, state.map[cell[0], cell[1]], BlockType.OUT_OF_BOUNDS.value)
    mob_facing = on_map & (state.mob_map[cell[0], cell[1]] | _mob_at(state.zombies, target) | _mob_at(state.cows, target)
                           | _mob_at(state.skeletons, target))
    free_block = on_map & ~mob_facing
    solid = jnp.any(facing == SOLID_BLOCKS)
    awake = ~state.is_sleeping
    near_table = _near(state, BlockType.CRAFTING_TABLE.value)
    near_furnace = _near(state, BlockType.FURNACE.value)
    zombie_distance = jnp.max(jnp.abs(state.zombies.position - state.player_position[None, :]), axis=-1)

    def facing_is(block):
        return free_block & (facing == block.value)

    features = {
        "sapling_facing_grass": (inv.sapling > 0) & facing_is(BlockType.GRASS),
        "near_water": _near(state, BlockType.WATER.value),
        "near_tree": _near(state, BlockType.TREE.value),
        "near_table": near_table,
        "near_zombie": jnp.any(state.zombies.mask & (zombie_distance <= 3)),
        "night": state.light_level < 0.5,
        "low_food": state.player_food <= 3,
        "low_drink": state.player_drink <= 3,
        "low_energy": state.player_energy <= 3,
    }
    can_place = free_block & ~solid
    wood, stone, coal, iron = inv.wood >= 1, inv.stone >= 1, inv.coal >= 1, inv.iron >= 1
    contexts = {
        "place_plant": (inv.sapling > 0) & facing_is(BlockType.GRASS),
        "place_table": (inv.wood >= 2) & can_place,
        "place_stone": stone & free_block & (~solid | (facing == BlockType.WATER.value)),
        "place_furnace": stone & can_place,
        "collect_wood": facing_is(BlockType.TREE),
        "collect_stone": facing_is(BlockType.STONE) & (inv.wood_pickaxe >= 1),
        "collect_coal": facing_is(BlockType.COAL) & (inv.wood_pickaxe >= 1),
        "collect_iron": facing_is(BlockType.IRON) & (inv.stone_pickaxe >= 1),
        "collect_diamond": facing_is(BlockType.DIAMOND) & (inv.iron_pickaxe >= 1),
        "collect_sapling": facing_is(BlockType.GRASS),
        "collect_drink": facing_is(BlockType.WATER),
        "make_wood_pickaxe": wood & near_table,
        "make_stone_pickaxe": wood & stone & near_table,
        "make_iron_pickaxe": wood & stone & coal & iron & near_table & near_furnace,
        "make_wood_sword": wood & near_table,
        "make_stone_sword": wood & stone & near_table,
        "make_iron_sword": wood & stone & coal & iron & near_table & near_furnace,
        "eat_plant": facing_is(BlockType.RIPE_PLANT),
        "attack_cow": on_map & _mob_at(state.cows, target),
        "attack_zombie": on_map & _mob_at(state.zombies, target),
        "sleep": state.player_energy < 9,
    }
    feature_vector = jnp.stack([jnp.asarray(features[name], bool) for name in FEATURES])
    # A sleeping player's actions are replaced by NOOP: nothing is possible while asleep.
    context_vector = jnp.stack([jnp.asarray(contexts[name], bool) & awake for name, _ in BEHAVIOURS])
    return feature_vector, context_vector


# --------------------------------------------------------------------------- rollouts


class RolloutStates(NamedTuple):
    """States visited by one rollout, flattened over (step, env). Shapes ``[num_states, ...]``."""

    observation: np.ndarray  # float32 [n, obs_dim]
    feature: np.ndarray  # bool [n, len(FEATURES)]
    context: np.ndarray  # bool [n, len(BEHAVIOURS)]
    timestep: np.ndarray  # int32 [n]: env steps since the episode began


def collect_rollout_states(
    rng: jax.Array,
    num_envs: int,
    num_steps: int,
    env_name: str = CLASSIC_ENV,
    actor=None,
    actor_params=None,
) -> RolloutStates:
    """Run ``num_envs`` Craftax-Classic environments for ``num_steps`` steps and keep every state.

    Actions are sampled from ``actor.apply({"params": actor_params}, obs) -> logits``; with
    ``actor_params=None`` they are uniformly random. Finished episodes are reset with the
    trainer's optimistic reset. The compiled rollout is cached per
    ``(env_name, num_envs, num_steps, actor)`` and takes the parameters as an argument, so a
    random rollout and rollouts of any number of checkpoints of one run compile once
    (pass the actor with ``actor_params=None`` for the random policy to share it).
    """
    if env_name != CLASSIC_ENV:
        raise ValuedynError(f"probe measures support {CLASSIC_ENV!r} only, received {env_name!r}; train on {CLASSIC_ENV}")
    rollout, template = _rollout_program(env_name, num_envs, num_steps, actor)
    random_policy = actor_params is None
    params = template if random_policy else actor_params
    obs, feature, context, timestep = jax.device_get(rollout(rng, params, random_policy))
    flat = lambda x: np.asarray(x).reshape((-1,) + x.shape[2:])  # noqa: E731
    return RolloutStates(flat(obs).astype(np.float32), flat(feature), flat(context), flat(timestep).astype(np.int32))


def cheap_compile_options(small: bool) -> dict | None:
    """XLA options that compile fast and run slower, for small work on CPU (else ``None``).

    On CPU, compiling Craftax (or an SGLD loop) with full optimisation takes far longer
    than running a short rollout (or a few SGLD steps); the cheapest backend settings cut
    the compile time by more than half and make the run ~10x slower. Never used on GPU.
    """
    if small and jax.default_backend() == "cpu":
        return {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    return None


@functools.lru_cache(maxsize=8)
def _rollout_program(env_name: str, num_envs: int, num_steps: int, actor):
    from valuedyn.data._envs import make_env, optimistic_reset

    env, env_params = make_env(env_name)
    num_actions = env.num_actions

    def choose(key, obs, actor_params, random_policy):
        uniform = jnp.zeros((obs.shape[0], num_actions))
        if actor is None:
            logits = uniform
        else:
            logits = jnp.where(random_policy, uniform, actor.apply({"params": actor_params}, obs))
        return jax.random.categorical(key, logits, axis=-1)

    @functools.partial(jax.jit, compiler_options=cheap_compile_options(num_envs * num_steps <= 2048))
    def rollout(rng, actor_params, random_policy):
        reset_key, rng = jax.random.split(rng)
        obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(jax.random.split(reset_key, num_envs), env_params)

        def step(carry, key):
            obs, state = carry
            action_key, step_key, reset_key = jax.random.split(key, 3)
            feature, context = jax.vmap(classic_state_features)(state)
            record = (obs, feature, context, state.timestep)
            action = choose(action_key, obs, actor_params, random_policy)
            next_obs, next_state, _, done, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, num_envs), state, action, env_params
            )
            next_obs, next_state = optimistic_reset(reset_key, env, env_params, done, next_obs, next_state, 1)
            return (next_obs, next_state), record

        _, records = jax.lax.scan(step, (obs, state), jax.random.split(rng, num_steps))
        return records

    template = None
    if actor is not None:  # parameters of the right structure for the random policy (values unused)
        obs_shape = env.observation_space(env_params).shape
        template = actor.init(jax.random.PRNGKey(0), jnp.zeros((1, *obs_shape)))["params"]
    return rollout, template


def stratified_indices(rng: jax.Array, strata: np.ndarray, num_states: int, stratified_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``num_states`` of the candidate states so every stratum is represented.

    ``strata``: bool ``[num_candidates, num_strata]`` (a state may be in several). Up to
    ``stratified_share * num_states`` slots are split evenly over the non-empty strata,
    filled rarest first, each from its not-yet-chosen members drawn at random; a stratum
    with fewer members than its share contributes all of them and leaves the rest of its
    share to the commoner strata. The remaining slots are drawn uniformly from the
    remaining candidates. Deterministic given ``rng``.

    Returns ``(indices int64[num_states], chosen_for int32[num_states])``: the stratum that
    claimed each state, -1 for the uniform fill.
    """
    strata = np.asarray(strata, bool)
    num_candidates, num_strata = strata.shape
    if num_states > num_candidates:
        raise ValuedynError(
            f"probe set of {num_states} states needs at least as many candidate states, found {num_candidates}; "
            "raise --rollout-steps/--rollout-envs or lower --num-probe-states"
        )
    priorities = np.asarray(jax.random.uniform(rng, (num_candidates,)))  # one random order, reused by every stratum
    order = np.argsort(priorities, kind="stable")
    slots = int(stratified_share * num_states)
    taken = np.zeros(num_candidates, bool)
    chosen, chosen_for = [], []
    sizes = strata.sum(axis=0)
    nonempty = [int(s) for s in np.argsort(sizes, kind="stable") if sizes[s] > 0]
    for position, stratum in enumerate(nonempty):
        # Rarest first; what a rare stratum cannot fill passes on to the commoner ones.
        quota = (slots - len(chosen)) // (len(nonempty) - position)
        members = order[strata[order, stratum] & ~taken[order]][:quota]
        taken[members] = True
        chosen.extend(members.tolist())
        chosen_for.extend([stratum] * len(members))
    rest = order[~taken[order]][: num_states - len(chosen)]
    chosen.extend(rest.tolist())
    chosen_for.extend([-1] * len(rest))
    return np.asarray(chosen, np.int64), np.asarray(chosen_for, np.int32)


# --------------------------------------------------------------------------- measures


class ContextSize(NamedTuple):
    """Shapes ``[..., num_behaviours]`` (leading axes of the logits, e.g. seed)."""

    count: jax.Array  # int32: probe states where the behaviour is possible and chosen with p > threshold
    fraction: jax.Array  # count / number of probe states
    mean_prob: jax.Array  # mean over probe states of p(action) * [behaviour possible]


def context_size(
    logits: jax.Array, context: jax.Array, behaviour_action: jax.Array, threshold: float = DEFAULT_THRESHOLD
) -> ContextSize:
    """Context size of each behaviour from policy ``logits[..., num_states, num_actions]``.

    ``context``: bool ``[num_states, num_behaviours]``, where each behaviour is possible
    (all true for a plain action); ``behaviour_action``: int ``[num_behaviours]``, the
    action that performs it. Fractions and means are over *all* probe states; the share
    within a behaviour's own context is ``count / context.sum(0)``.
    """
    probs = jax.nn.softmax(logits, axis=-1)[..., behaviour_action]  # [..., n, behaviours]
    context = jnp.asarray(context, bool)
    chosen = (probs > threshold) & context
    count = chosen.sum(axis=-2).astype(jnp.int32)
    num_states = logits.shape[-2]
    return ContextSize(count=count, fraction=count / num_states, mean_prob=jnp.where(context, probs, 0.0).mean(axis=-2))


class EssentialDynamics(NamedTuple):
    coords: jax.Array  # [seed, checkpoint, pc]: projection of each policy on the principal components
    explained_variance: jax.Array  # [pc]: share of the total variance along each component
    components: jax.Array  # [pc, num_states * num_actions]: unit principal directions
    mean: jax.Array  # [num_states * num_actions]: the mean output the coordinates are relative to


def essential_dynamics(outputs: jax.Array, num_components: int) -> EssentialDynamics:
    """PCA of policy outputs ``[seed, checkpoint, num_states, num_actions]`` (e.g. log-probs).

    Every (seed, checkpoint) is one point in ``num_states * num_actions`` dimensions; the
    points are centred on their joint mean and decomposed by SVD. ``num_components`` is
    capped at the number of points (further components have zero variance). Component
    signs are fixed so the largest-magnitude loading of each is positive.
    """
    num_seeds, num_checkpoints = outputs.shape[:2]
    points = outputs.reshape(num_seeds * num_checkpoints, -1).astype(jnp.float32)
    mean = points.mean(axis=0)
    centred = points - mean
    left, singular, right = jnp.linalg.svd(centred, full_matrices=False)
    k = min(num_components, singular.shape[0])
    # Deterministic signs: SVD's sign is arbitrary.
    pivot = jnp.take_along_axis(right[:k], jnp.argmax(jnp.abs(right[:k]), axis=1)[:, None], axis=1)[:, 0]
    sign = jnp.where(pivot < 0, -1.0, 1.0)
    components = right[:k] * sign[:, None]
    coords = centred @ components.T
    total = jnp.sum(jnp.square(singular))
    explained = jnp.where(total > 0, jnp.square(singular[:k]) / jnp.where(total > 0, total, 1.0), 0.0)
    return EssentialDynamics(
        coords=coords.reshape(num_seeds, num_checkpoints, k), explained_variance=explained, components=components, mean=mean
    )


# --------------------------------------------------------------------------- probe set file

PROBE_SET_VARIABLES = ("observation", "feature_flag", "context_flag", "timestep", "source", "stratum")


def probe_set_dataset(candidates: RolloutStates, source: np.ndarray, source_names: tuple[str, ...], rng: jax.Array,
                      num_states: int, attrs: dict, stratified_share: float = 0.5):
    """Choose the probe set from candidate states and return it as an xarray Dataset.

    Strata are every feature and every behaviour context (rarest first; see
    :func:`stratified_indices`). ``source[num_candidates]`` indexes ``source_names``
    (which policy visited the state). Dims ``probe_state``, ``obs_dim``, ``feature``,
    ``context``, ``source_policy``.
    """
    import xarray as xr

    strata = np.concatenate([candidates.feature, candidates.context], axis=1)
    strata_names = FEATURES + tuple(name for name, _ in BEHAVIOURS)
    index, chosen_for = stratified_indices(rng, strata, num_states, stratified_share)
    stratum = np.array([strata_names[i] if i >= 0 else "uniform" for i in chosen_for], dtype=object)
    return xr.Dataset(
        {
            "observation": (("probe_state", "obs_dim"), candidates.observation[index]),
            "feature_flag": (("probe_state", "feature"), candidates.feature[index].astype(np.int8)),
            "context_flag": (("probe_state", "context"), candidates.context[index].astype(np.int8)),
            "timestep": (("probe_state",), candidates.timestep[index]),
            "source": (("probe_state",), np.asarray(source)[index].astype(np.int32)),
            "stratum": (("probe_state",), stratum.astype(str)),
            "candidate_feature_count": (("feature",), candidates.feature.sum(axis=0).astype(np.int64)),
            "candidate_context_count": (("context",), candidates.context.sum(axis=0).astype(np.int64)),
        },
        coords={
            "feature": list(FEATURES),
            "context": [name for name, _ in BEHAVIOURS],
            "source_policy": list(source_names),
        },
        attrs={**attrs, "num_candidates": int(len(candidates.timestep)), "stratified_share": float(stratified_share)},
    )


def open_probe_set(path) -> "xarray.Dataset":  # noqa: F821
    """Load a probe set file fully into memory and check it has the probe-set variables."""
    import xarray as xr

    from valuedyn._io import require_file

    path = require_file(path, "probe set file")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as err:  # h5py/h5netcdf raise many types for a corrupt file
        raise ValuedynError(f"cannot read {path} as netCDF4 ({type(err).__name__}); pass a file written by `valuedyn probe`") from None
    missing = [name for name in PROBE_SET_VARIABLES if name not in ds]
    if missing:
        raise ValuedynError(f"{path} is not a probe set: variables {missing} are missing; pass a *.probeset.nc written by `valuedyn probe`")
    if list(ds["context"].values) != [name for name, _ in BEHAVIOURS]:
        raise ValuedynError(f"{path} was written with other behaviour contexts; sample a new probe set (omit --probe-set)")
    return ds
