"""Event detection against real Craftax transitions: scripted cases and random rollouts.

The trainer's reward is computed from the same transitions and event counts, so it is
tested here too, on the Classic step this module compiles anyway.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.data import TrainConfig
from valuedyn.data._envs import ENV_NAMES, make_env
from valuedyn.data._events import event_spec
from valuedyn.data._train import parse_reward_spec, transition_reward

CLASSIC, FULL = ENV_NAMES
RIGHT = 2  # Action.RIGHT == direction index 2 == DIRECTIONS[2] == (0, +1) in both games


BATCH = 16  # every transition runs in one fixed-size vmapped batch: one compile per env


def canonical(tree):
    """Host arrays with 32-bit dtypes (no weak types), so every call hits one compiled step."""

    def host(x):
        x = np.asarray(x)
        return x.astype({"i": np.int32, "f": np.float32}.get(x.dtype.kind, x.dtype), copy=False)

    return jax.tree.map(host, tree)


class Game:
    """One environment with a jitted batched ``(states, actions, keys) -> (next_states, counts, rewards)``."""

    def __init__(self, env_name: str, compiler_options: dict | None):
        from importlib import import_module

        self.spec = event_spec(env_name)
        self.env, self.params = make_env(env_name)
        module = "craftax.craftax_classic.constants" if env_name == CLASSIC else "craftax.craftax.constants"
        constants = import_module(module)
        self.Action, self.BlockType = constants.Action, constants.BlockType

        def transition(state, action, key):
            _, next_state, reward, _, _ = self.env.step_env(key, state, action, self.params)
            return next_state, self.spec.count(state, action, next_state), reward

        self.batched = jax.jit(jax.vmap(transition), compiler_options=compiler_options)
        # jit: compiles faster than eager
        self.reset = jax.jit(lambda key: self.env.reset_env(key, self.params)[1], compiler_options=compiler_options)
        self.reset_state = canonical(self.reset(jax.random.PRNGKey(0)))
        self.base = canonical(self.calm(self.reset_state))

    @functools.cached_property
    def worlds(self):
        """Four freshly generated worlds (the reset state and three more)."""
        return [self.reset_state] + [canonical(self.reset(jax.random.PRNGKey(100 + w))) for w in range(3)]

    def run_batch(self, states, actions, keys):
        """``states`` batched over BATCH; returns host (next_states, counts int[BATCH, event], Craftax's reward float[BATCH])."""
        next_states, counts, rewards = self.batched(canonical(states), np.asarray(actions, np.int32), keys)
        return canonical(next_states), np.asarray(counts), np.asarray(rewards)

    def steps(self, cases, seed=2):
        """``cases``: list of (state, action); returns [(next_state, {event: count})]."""
        assert len(cases) <= BATCH
        padded = cases + [(self.base, self.Action.NOOP.value)] * (BATCH - len(cases))
        states = stack([c[0] for c in padded])
        keys = jax.random.split(jax.random.PRNGKey(seed), BATCH)
        next_states, counts, _ = self.run_batch(states, [c[1] for c in padded], keys)
        return [
            (jax.tree.map(lambda x, i=i: x[i], next_states), dict(zip(self.spec.events, counts[i].tolist())))
            for i in range(len(cases))
        ]

    def step(self, state, action, seed=2):
        return self.steps([(state, action)], seed)[0]

    def calm(self, state):
        """No mobs, grass around the player, facing right."""
        fields = {k: getattr(state, k).replace(mask=np.zeros_like(getattr(state, k).mask)) for k in self.mob_fields(state)}
        pos = np.asarray(state.player_position)
        game_map = np.array(state.map)
        area = (slice(pos[0] - 2, pos[0] + 3), slice(pos[1] - 2, pos[1] + 3))
        if hasattr(state, "player_level"):
            area = (int(state.player_level),) + area
        game_map[area] = self.BlockType.GRASS.value
        return state.replace(
            map=game_map,
            mob_map=np.zeros_like(state.mob_map),
            player_direction=np.asarray(RIGHT, np.asarray(state.player_direction).dtype),
            **fields,
        )

    @staticmethod
    def mob_fields(state):
        names = ("zombies", "cows", "skeletons", "melee_mobs", "passive_mobs", "ranged_mobs")
        return [n for n in names if hasattr(state, n)]

    def target(self, state):
        return np.asarray(state.player_position) + np.array([0, 1])

    def set_target_block(self, state, block):
        t = tuple(self.target(state))
        if hasattr(state, "player_level"):
            t = (int(state.player_level),) + t
        game_map = np.array(state.map)
        game_map[t] = block.value
        return state.replace(map=game_map)

    def set_inventory(self, state, **items):
        inv = state.inventory
        return state.replace(
            inventory=inv.replace(**{k: np.asarray(v, np.asarray(getattr(inv, k)).dtype) for k, v in items.items()})
        )

    def only(self, counts, **expected):
        """All counts zero except the named ones, which equal the given values."""
        assert {k: v for k, v in counts.items() if v} == expected


def stack(states):
    """One batched state from a list of unbatched ones."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *states)


def unstack(states):
    return [jax.tree.map(lambda x, i=i: x[i], states) for i in range(len(states.player_position))]


def put_mob(state, field, position, health):
    mobs = getattr(state, field)
    positions, healths, masks = np.array(mobs.position), np.array(mobs.health), np.array(mobs.mask)
    positions[0], healths[0], masks[0] = position, health, True
    return state.replace(**{field: mobs.replace(position=positions, health=healths, mask=masks)})


# ---------------------------------------------------------------------------
# Names and errors
# ---------------------------------------------------------------------------


def test_unknown_env_name_raises_valuedyn_error():
    with pytest.raises(ValuedynError, match=r"unknown environment 'Craftax-Nope'.*Craftax-Classic-Symbolic-v1"):
        event_spec("Craftax-Nope")


def test_classic_spec_names_follow_craftax_enums():
    from craftax.craftax_classic.constants import Achievement, Action

    spec = event_spec(CLASSIC)
    assert spec.achievements[Achievement.COLLECT_WOOD.value] == "collect_wood"
    assert spec.actions[Action.PLACE_TABLE.value] == "place_table"
    assert len(spec.achievements) == len(Achievement) and len(spec.actions) == len(Action)
    assert len(set(spec.events)) == len(spec.events)
    assert set(spec.placement_events) == {"place_plant", "place_table", "place_stone", "place_furnace"}
    assert spec.event_achievement["kill_zombie"] == "defeat_zombie"
    assert set(spec.event_achievement) <= set(spec.events)
    assert set(spec.event_achievement.values()) <= set(spec.achievements)
    hash(spec)  # usable as a static jit argument


# ---------------------------------------------------------------------------
# Craftax-Classic: scripted transitions
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classic():
    # the trainer's CPU options: faster to compile, as fast to run (these tests take ~500 steps)
    from valuedyn.data._train_cli import compiler_options

    return Game(CLASSIC, compiler_options())


def test_noop_counts_nothing(classic):
    _, counts = classic.step(classic.base, classic.Action.NOOP.value)
    classic.only(counts)


def test_place_plant_on_grass_with_a_sapling(classic):
    state = classic.set_inventory(classic.base, sapling=1)
    next_state, counts = classic.step(state, classic.Action.PLACE_PLANT.value)
    classic.only(counts, place_plant=1)
    t = classic.target(state)
    assert int(next_state.map[t[0], t[1]]) == classic.BlockType.PLANT.value


def test_place_plant_without_a_sapling_counts_nothing(classic):
    _, counts = classic.step(classic.base, classic.Action.PLACE_PLANT.value)
    classic.only(counts)


def test_place_table_needs_enough_wood(classic):
    _, counts = classic.step(classic.set_inventory(classic.base, wood=2), classic.Action.PLACE_TABLE.value)
    classic.only(counts, place_table=1)
    _, counts = classic.step(classic.set_inventory(classic.base, wood=1), classic.Action.PLACE_TABLE.value)
    classic.only(counts)


def test_place_stone_on_water_and_furnace_on_grass(classic):
    state = classic.set_inventory(classic.set_target_block(classic.base, classic.BlockType.WATER), stone=1)
    _, counts = classic.step(state, classic.Action.PLACE_STONE.value)
    classic.only(counts, place_stone=1)
    _, counts = classic.step(classic.set_inventory(classic.base, stone=1), classic.Action.PLACE_FURNACE.value)
    classic.only(counts, place_furnace=1)


@pytest.mark.parametrize("wood", [0, 9])  # 9: the inventory is full, the tree is still felled
def test_collect_wood_from_a_tree(classic, wood):
    state = classic.set_inventory(classic.set_target_block(classic.base, classic.BlockType.TREE), wood=wood)
    _, counts = classic.step(state, classic.Action.DO.value)
    classic.only(counts, collect_wood=1)


def test_mining_stone_needs_a_pickaxe(classic):
    state = classic.set_target_block(classic.base, classic.BlockType.STONE)
    _, counts = classic.step(state, classic.Action.DO.value)
    classic.only(counts)
    _, counts = classic.step(classic.set_inventory(state, wood_pickaxe=1), classic.Action.DO.value)
    classic.only(counts, collect_stone=1)


def test_drink_water(classic):
    state = classic.set_target_block(classic.base, classic.BlockType.WATER)
    _, counts = classic.step(state, classic.Action.DO.value)
    classic.only(counts, collect_drink=1)


def test_eat_ripe_plant(classic):
    state = classic.set_target_block(classic.base, classic.BlockType.RIPE_PLANT)
    _, counts = classic.step(state, classic.Action.DO.value)
    classic.only(counts, eat_plant=1)


def test_sapling_collection_is_seen_when_the_draw_succeeds(classic):
    """DO on grass yields a sapling with probability 0.1: count it exactly when it came."""
    seen = 0
    for seed in range(3):
        for next_state, counts in classic.steps([(classic.base, classic.Action.DO.value)] * BATCH, seed=seed):
            gained = int(next_state.inventory.sapling) - int(classic.base.inventory.sapling)
            assert counts["collect_sapling"] == gained
            classic.only({k: v for k, v in counts.items() if k != "collect_sapling"})
            seen += gained
    assert seen > 0


def test_eat_cow_and_attack_cow(classic):
    target = classic.target(classic.base)
    _, counts = classic.step(put_mob(classic.base, "cows", target, 1), classic.Action.DO.value)
    classic.only(counts, eat_cow=1)
    _, counts = classic.step(put_mob(classic.base, "cows", target, 3), classic.Action.DO.value)
    classic.only(counts, attack_cow=1)


def test_zombie_attack_and_kill_depend_on_the_sword(classic):
    target = classic.target(classic.base)
    zombie = put_mob(classic.base, "zombies", target, 5)
    _, counts = classic.step(zombie, classic.Action.DO.value)
    classic.only(counts, attack_zombie=1)
    _, counts = classic.step(classic.set_inventory(zombie, iron_sword=1), classic.Action.DO.value)
    classic.only(counts, kill_zombie=1)


def test_skeleton_kill(classic):
    skeleton = put_mob(classic.base, "skeletons", classic.target(classic.base), 1)
    _, counts = classic.step(skeleton, classic.Action.DO.value)
    classic.only(counts, kill_skeleton=1)


def test_sleep_and_wake_up(classic):
    tired = classic.base.replace(player_energy=np.int32(3))
    asleep, counts = classic.step(tired, classic.Action.SLEEP.value)
    classic.only(counts, sleep=1)
    assert bool(asleep.is_sleeping)
    # Still asleep: the sleeper's actions are replaced by NOOP, nothing is placed or drunk.
    rested = classic.set_inventory(asleep, wood=5)
    _, counts = classic.step(rested, classic.Action.PLACE_TABLE.value)
    classic.only(counts)
    _, counts = classic.step(classic.set_target_block(rested, classic.BlockType.WATER), classic.Action.DO.value)
    classic.only(counts)
    rested = rested.replace(player_energy=np.int32(9))
    _, counts = classic.step(rested, classic.Action.NOOP.value)
    classic.only(counts, wake_up=1)


def test_craft_wood_pickaxe_needs_a_table(classic):
    state = classic.set_inventory(classic.base, wood=1)
    _, counts = classic.step(state, classic.Action.MAKE_WOOD_PICKAXE.value)
    classic.only(counts)
    at_table = classic.set_target_block(state, classic.BlockType.CRAFTING_TABLE)
    _, counts = classic.step(at_table, classic.Action.MAKE_WOOD_PICKAXE.value)
    classic.only(counts, make_wood_pickaxe=1)
    rich = classic.set_inventory(at_table, wood=3, stone=2)
    _, counts = classic.step(rich, classic.Action.MAKE_STONE_SWORD.value)
    classic.only(counts, make_stone_sword=1)


# ---------------------------------------------------------------------------
# Random-policy rollouts: counts agree with the achievement flags
# ---------------------------------------------------------------------------


def random_rollout(game: Game, num_steps: int, seed: int, start_inventory: dict):
    """Per-step counts int[num_steps, BATCH, event] and achievements bool[num_steps, BATCH, ach].

    One episode per environment (four worlds, four environments each), no resets;
    Craftax keeps stepping after game over and the achievement rules still apply, so
    the comparison holds throughout.
    """
    states = stack([game.set_inventory(game.worlds[i % len(game.worlds)], **start_inventory) for i in range(BATCH)])
    assert not states.achievements.any()
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    all_counts, all_achievements = [], []
    for _ in range(num_steps):
        key, step_key = jax.random.split(key)
        actions = rng.integers(0, len(game.spec.actions), BATCH)
        states, counts, _ = game.run_batch(states, actions, jax.random.split(step_key, BATCH))
        all_counts.append(counts)
        all_achievements.append(np.asarray(states.achievements))
    return np.stack(all_counts), np.stack(all_achievements)


def check_counts_match_achievements(spec, counts, achievements):
    assert counts.dtype == np.int32 and counts.shape[-1] == len(spec.events)
    assert counts.min() >= 0
    totals = counts.sum(axis=0)  # [env, event]
    for event, achievement in spec.event_achievement.items():
        e, a = spec.events.index(event), spec.achievements.index(achievement)
        # (b) an unlock implies at least one occurrence in the episode
        unlocked = achievements[-1, :, a]
        assert np.all(totals[unlocked, e] >= 1), event
        # (c) the achievement turns on exactly at the first occurrence
        happened = np.cumsum(counts[:, :, e], axis=0) > 0
        np.testing.assert_array_equal(happened, achievements[:, :, a], err_msg=event)
    return totals


def test_classic_random_rollout_agrees_with_achievements(classic):
    counts, achievements = random_rollout(
        classic,
        num_steps=300,
        seed=0,
        start_inventory=dict(wood=9, stone=9, coal=3, iron=3, sapling=1, wood_pickaxe=1, stone_pickaxe=1),
    )
    totals = check_counts_match_achievements(classic.spec, counts, achievements)
    # The check above has teeth only if many kinds of event actually happened.
    occurred = {event for event, total in zip(classic.spec.events, totals.sum(axis=0)) if total}
    assert len(occurred) >= 12, occurred
    assert {"place_table", "collect_wood", "collect_sapling", "collect_drink"} <= occurred


# ---------------------------------------------------------------------------
# The trainer's reward knob, computed from each transition and its event counts. With
# the defaults it must equal Craftax's own reward exactly; "every occurrence" must pay a
# second plant placement that Craftax's first-unlock rule does not pay. Our rewards for
# four reward specs come from one small jitted function (no Craftax step inside it).
# ---------------------------------------------------------------------------

REWARD_CONFIGS = {
    "default": TrainConfig(),
    "every_plant": TrainConfig(reward_every=("place_plant",)),
    "no_health": TrainConfig(health_reward=False),
    "weighted": TrainConfig(reward_weights=("collect_wood=2.5",)),
}


@pytest.fixture(scope="module")
def our_rewards(classic):
    """``(states, next_states, counts) -> {config name: float[BATCH]}``, batched like ``classic.run_batch``."""
    reward_specs = {name: parse_reward_spec(config, classic.spec) for name, config in REWARD_CONFIGS.items()}

    @jax.jit
    def rewards(states, next_states, counts):
        return {
            name: jax.vmap(functools.partial(transition_reward, spec))(states, next_states, counts)
            for name, spec in reward_specs.items()
        }

    return lambda states, next_states, counts: {
        name: np.asarray(value) for name, value in rewards(canonical(states), next_states, counts).items()
    }


def test_default_reward_is_craftax_reward_exactly(classic, our_rewards):
    # Four worlds with materials to unlock achievements, and health below its maximum so
    # that it changes (Craftax's health term) without waiting for damage.
    start = dict(wood=9, stone=9, sapling=1, wood_pickaxe=1)
    states = stack([
        classic.set_inventory(classic.worlds[i % 4], **start).replace(player_health=np.asarray(5, classic.worlds[0].player_health.dtype))
        for i in range(BATCH)
    ])
    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(1)
    achievement_paid = health_changed = plants_placed = 0
    wood = classic.spec.achievements.index("collect_wood")
    plant_event, plant_achievement = classic.spec.events.index("place_plant"), classic.spec.achievements.index("place_plant")
    for _ in range(150):
        key, step_key = jax.random.split(key)
        actions = rng.integers(0, len(classic.spec.actions), BATCH)
        next_states, counts, craftax_reward = classic.run_batch(states, actions, jax.random.split(step_key, BATCH))
        ours = our_rewards(states, next_states, counts)
        np.testing.assert_array_equal(ours["default"], craftax_reward)
        delta = np.asarray(next_states.achievements, np.float32) - np.asarray(states.achievements, np.float32)
        np.testing.assert_array_equal(ours["no_health"], delta.sum(-1))
        np.testing.assert_allclose(ours["weighted"] - ours["default"], 1.5 * delta[:, wood], atol=1e-6)
        # every placement pays 1, the first unlock no longer does
        plants = counts[:, plant_event] - delta[:, plant_achievement]
        np.testing.assert_allclose(ours["every_plant"] - ours["default"], plants, atol=1e-6)
        plants_placed += int(counts[:, plant_event].sum())
        achievement_paid += int((delta.sum(-1) > 0).sum())
        health_changed += int((next_states.player_health != states.player_health).sum())
        states = next_states
    assert achievement_paid > 0 and health_changed > 0 and plants_placed > 0, "the rollout left a reward term unexercised"


def test_every_occurrence_pays_the_second_plant(classic, our_rewards):
    spec, place_plant = classic.spec, classic.Action.PLACE_PLANT.value
    plant_event, plant_achievement = spec.events.index("place_plant"), spec.achievements.index("place_plant")

    def ready_to_plant(state, unlocked):
        """5 saplings, awake, facing a grass cell; place_plant unlocked or not."""
        state = classic.set_inventory(classic.set_target_block(state, classic.BlockType.GRASS), sapling=5)
        achievements = np.array(state.achievements)
        achievements[plant_achievement] = unlocked
        return state.replace(is_sleeping=np.zeros_like(state.is_sleeping), achievements=achievements)

    keys = jax.random.split(jax.random.PRNGKey(2), BATCH)
    first_states = stack([ready_to_plant(classic.calm(classic.worlds[i % 4]), False) for i in range(BATCH)])
    after_first, counts_first, _ = classic.run_batch(first_states, np.full(BATCH, place_plant), keys)
    # second placement: the cell in front is grass again, the achievement is already unlocked
    second_states = stack([ready_to_plant(state, bool(state.achievements[plant_achievement])) for state in unstack(after_first)])
    after_second, counts_second, _ = classic.run_batch(second_states, np.full(BATCH, place_plant), keys)
    placed_first, placed_second = counts_first[:, plant_event] == 1, counts_second[:, plant_event] == 1
    both = placed_first & placed_second
    assert both.sum() >= BATCH // 2, "too few envs could place two plants; the test set-up is broken"
    assert np.all(after_first.achievements[placed_first, plant_achievement])
    first, second = our_rewards(first_states, after_first, counts_first), our_rewards(second_states, after_second, counts_second)
    # first placement: both rules pay the unlock once
    np.testing.assert_allclose(first["every_plant"][both], first["default"][both])
    # second placement: only "every occurrence" pays, exactly the achievement's weight (1)
    np.testing.assert_allclose(second["every_plant"][both] - second["default"][both], 1.0, atol=1e-6)


def test_reward_flags_are_checked():
    spec = event_spec(CLASSIC)
    with pytest.raises(ValuedynError, match="unknown achievement 'fly'"):
        parse_reward_spec(TrainConfig(reward_weights=("fly=1",)), spec)
    with pytest.raises(ValuedynError, match="must be a number"):
        parse_reward_spec(TrainConfig(reward_weights=("place_plant=lots",)), spec)
    every = parse_reward_spec(TrainConfig(reward_every=("place_plant",), reward_weights=("place_plant=3",)), spec)
    assert every.first_weights[spec.achievements.index("place_plant")] == 0.0
    assert every.every_weights == (3.0,) and every.every_events == (spec.events.index("place_plant"),)


# ---------------------------------------------------------------------------
# Craftax (full): one batch of scripted transitions and one small rollout
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full():
    # full Craftax compiles for most of a minute and these tests take ~150 steps: compile cheaply
    from valuedyn.data._probe import cheap_compile_options

    return Game(FULL, cheap_compile_options(True))


def test_full_spec_names_follow_craftax_enums():
    from craftax.craftax.constants import Achievement, Action

    spec = event_spec(FULL)
    assert spec.achievements[Achievement.COLLECT_RUBY.value] == "collect_ruby"
    assert spec.actions[Action.PLACE_TORCH.value] == "place_torch"
    assert len(spec.achievements) == len(Achievement) and len(spec.actions) == len(Action)
    assert len(set(spec.events)) == len(spec.events)
    assert set(spec.placement_events) == {"place_plant", "place_table", "place_stone", "place_furnace", "place_torch"}
    assert set(event_spec(CLASSIC).events) <= set(spec.events)  # shared names mean the same thing


def test_full_scripted_transitions(full):
    A, B = full.Action, full.BlockType
    base = full.base
    target = full.target(base)
    level = int(base.player_level)

    def with_mob(field, type_id, health):
        state = put_mob_on_level(base, field, level, target, health)
        mobs = getattr(state, field)
        types = np.array(mobs.type_id)
        types[level, 0] = type_id
        return state.replace(**{field: mobs.replace(type_id=types)})

    at_table = full.set_inventory(full.set_target_block(base, B.CRAFTING_TABLE), wood=2, stone=2)
    cases = {
        "noop": ((base, A.NOOP.value), {}),
        "tree": ((full.set_target_block(base, B.TREE), A.DO.value), {"collect_wood": 1}),
        "water": ((full.set_target_block(base, B.WATER), A.DO.value), {"collect_drink": 1}),
        "ruby": (
            (full.set_inventory(full.set_target_block(base, B.RUBY), pickaxe=4), A.DO.value),
            {"collect_ruby": 1},
        ),
        "torch": ((full.set_inventory(base, torches=3), A.PLACE_TORCH.value), {"place_torch": 1}),
        "table": ((full.set_inventory(base, wood=5), A.PLACE_TABLE.value), {"place_table": 1}),
        "arrow": ((at_table, A.MAKE_ARROW.value), {"make_arrow": 1}),
        "pickaxe": ((at_table, A.MAKE_STONE_PICKAXE.value), {"make_stone_pickaxe": 1}),
        "cow": ((with_mob("passive_mobs", 0, 1.0), A.DO.value), {"eat_cow": 1, "eat_passive": 1}),
        "cow_hit": ((with_mob("passive_mobs", 0, 3.0), A.DO.value), {"attack_cow": 1, "attack_passive": 1}),
        "zombie": ((with_mob("melee_mobs", 0, 1.0), A.DO.value), {"kill_zombie": 1, "kill_melee": 1}),
        "skeleton_hit": (
            (with_mob("ranged_mobs", 0, 3.0), A.DO.value),
            {"attack_skeleton": 1, "attack_ranged": 1},
        ),
        "potion": (
            (full.set_inventory(base, potions=np.array([0, 2, 0, 0, 0, 0])), A.DRINK_POTION_GREEN.value),
            {"drink_potion": 1},
        ),
        "sleep": ((base.replace(player_energy=np.int32(3)), A.SLEEP.value), {"sleep": 1}),
    }
    results = full.steps([case for case, _ in cases.values()])
    for (name, (_, expected)), (next_state, counts) in zip(cases.items(), results):
        assert {k: v for k, v in counts.items() if v} == expected, name
    # The melee kill is also tallied by Craftax, and not mistaken for a projectile kill.
    zombie_next, _ = results[list(cases).index("zombie")]
    assert int(zombie_next.monsters_killed.sum()) == int(base.monsters_killed.sum()) + 1


def put_mob_on_level(state, field, level, position, health):
    mobs = getattr(state, field)
    positions, healths, masks = np.array(mobs.position), np.array(mobs.health), np.array(mobs.mask)
    positions[level, 0], healths[level, 0], masks[level, 0] = position, health, True
    return state.replace(**{field: mobs.replace(position=positions, health=healths, mask=masks)})


def test_full_random_rollout_agrees_with_achievements(full):
    # Empty start inventory: full Craftax derives collect/make achievements from the
    # inventory, so anything held at the start would unlock them without an event.
    counts, achievements = random_rollout(full, num_steps=150, seed=1, start_inventory={})
    totals = check_counts_match_achievements(full.spec, counts, achievements)
    occurred = {event for event, total in zip(full.spec.events, totals.sum(axis=0)) if total}
    assert {"collect_wood", "collect_sapling", "sleep"} & occurred, occurred
