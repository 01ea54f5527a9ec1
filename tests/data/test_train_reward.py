"""The reward knob: the trainer computes the reward itself from each transition.

With the defaults it must equal Craftax's own reward exactly; "every occurrence" must
pay a second plant placement that Craftax's first-unlock rule does not pay.
One jitted step (8 envs, four reward specs at once) serves the whole module.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.data import TrainConfig, make_env
from valuedyn.data._train import parse_reward_spec, transition_reward
from valuedyn.data._train_cli import compiler_options

ENV = "Craftax-Classic-Symbolic-v1"
NUM_ENVS = 8
SPECS = {
    "default": TrainConfig(),
    "every_plant": TrainConfig(reward_every=("place_plant",)),
    "no_health": TrainConfig(health_reward=False),
    "weighted": TrainConfig(reward_weights=("collect_wood=2.5",)),
}


@pytest.fixture(scope="module")
def machinery():
    from valuedyn.data._events import event_spec

    env, params = make_env(ENV)
    spec = event_spec(ENV)
    reward_specs = {name: parse_reward_spec(config, spec) for name, config in SPECS.items()}

    def step(keys, states, actions):
        _, next_states, craftax_reward, _, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(keys, states, actions, params)
        counts = jax.vmap(spec.count)(states, actions, next_states)
        ours = {
            name: jax.vmap(functools.partial(transition_reward, rs))(states, next_states, counts)
            for name, rs in reward_specs.items()
        }
        return next_states, craftax_reward, ours, counts

    keys = jax.random.split(jax.random.PRNGKey(0), NUM_ENVS)
    reset = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None))).lower(keys, params).compile(compiler_options())
    _, states = reset(keys, params)
    actions = jnp.zeros(NUM_ENVS, jnp.int32)
    step = jax.jit(step).lower(keys, states, actions).compile(compiler_options())
    return step, states, spec


def test_default_reward_is_craftax_reward_exactly(machinery):
    step, states, spec = machinery
    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(1)
    achievement_paid = health_changed = 0
    wood = spec.achievements.index("collect_wood")
    for _ in range(150):
        key, k_step = jax.random.split(key)
        actions = jnp.asarray(rng.integers(0, 17, NUM_ENVS), jnp.int32)
        next_states, craftax_reward, ours, _ = step(jax.random.split(k_step, NUM_ENVS), states, actions)
        np.testing.assert_array_equal(np.asarray(ours["default"]), np.asarray(craftax_reward))
        delta = np.asarray(next_states.achievements, np.float32) - np.asarray(states.achievements, np.float32)
        np.testing.assert_array_equal(np.asarray(ours["no_health"]), delta.sum(-1))
        np.testing.assert_allclose(np.asarray(ours["weighted"]) - np.asarray(ours["default"]), 1.5 * delta[:, wood], atol=1e-6)
        achievement_paid += int((delta.sum(-1) > 0).sum())
        health_changed += int((np.asarray(next_states.player_health) != np.asarray(states.player_health)).sum())
        states = next_states
    assert achievement_paid > 0 and health_changed > 0, "the rollout exercised neither reward term"


def _ready_to_plant(states, plant_index):
    """Every env: 5 saplings, awake, facing a grass cell, place_plant not yet unlocked."""
    from craftax.craftax_classic.constants import DIRECTIONS, BlockType

    target = states.player_position + DIRECTIONS[states.player_direction]
    rows = jnp.arange(NUM_ENVS)
    return states.replace(
        map=states.map.at[rows, target[:, 0], target[:, 1]].set(BlockType.GRASS.value),
        inventory=states.inventory.replace(sapling=jnp.full_like(states.inventory.sapling, 5)),
        is_sleeping=jnp.zeros_like(states.is_sleeping),
        achievements=states.achievements.at[:, plant_index].set(False),
    )


def test_every_occurrence_pays_the_second_plant(machinery):
    from craftax.craftax_classic.constants import Action

    step, states, spec = machinery
    plant_event = spec.events.index("place_plant")
    plant_achievement = spec.achievements.index("place_plant")
    keys = jax.random.split(jax.random.PRNGKey(2), NUM_ENVS)
    place = jnp.full(NUM_ENVS, Action.PLACE_PLANT.value, jnp.int32)

    first_states = _ready_to_plant(states, plant_achievement)
    after_first, _, first, counts_first = step(keys, first_states, place)
    placed_first = np.asarray(counts_first[:, plant_event]) == 1
    # second placement: the cell in front is grass again, the achievement is already unlocked
    second_states = _ready_to_plant(after_first, plant_achievement).replace(achievements=after_first.achievements)
    _, _, second, counts_second = step(keys, second_states, place)
    placed_second = np.asarray(counts_second[:, plant_event]) == 1
    both = placed_first & placed_second
    assert both.sum() >= NUM_ENVS // 2, "too few envs could place two plants; the test set-up is broken"
    assert np.all(np.asarray(after_first.achievements)[placed_first, plant_achievement])
    # first placement: both rules pay the unlock once
    np.testing.assert_allclose(np.asarray(first["every_plant"])[both], np.asarray(first["default"])[both])
    # second placement: only "every occurrence" pays, exactly the achievement's weight (1)
    np.testing.assert_allclose(
        np.asarray(second["every_plant"])[both] - np.asarray(second["default"])[both], 1.0, atol=1e-6
    )


def test_reward_flags_are_checked():
    from valuedyn.data._events import event_spec

    spec = event_spec(ENV)
    with pytest.raises(ValuedynError, match="unknown achievement 'fly'"):
        parse_reward_spec(TrainConfig(reward_weights=("fly=1",)), spec)
    with pytest.raises(ValuedynError, match="must be a number"):
        parse_reward_spec(TrainConfig(reward_weights=("place_plant=lots",)), spec)
    every = parse_reward_spec(TrainConfig(reward_every=("place_plant",), reward_weights=("place_plant=3",)), spec)
    assert every.first_weights[spec.achievements.index("place_plant")] == 0.0
    assert every.every_weights == (3.0,) and every.every_events == (spec.events.index("place_plant"),)
