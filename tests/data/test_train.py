"""valuedyn train end to end on a tiny CPU configuration.

One program is compiled for the whole module (a tiny config, 2 seeds); the runs share
it through the trainer's program cache. The sharded run (two forced CPU devices) needs
its own process and starts first, so its compile overlaps the in-process one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valuedyn.cli import main
from valuedyn.data import (
    REQUIRED_ATTRS,
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    make_env,
    make_networks,
    open_trajectory,
    run_train,
)
from valuedyn._config import config_from_json
from valuedyn._errors import ValuedynError
from valuedyn.data._train import parse_reward_spec, transition_reward
from valuedyn.data._train_cli import compiler_options

NUM_ENVS, NUM_STEPS, SEEDS = 8, 16, 2
UPDATES, CHUNK = 8, 4
TINY = [
    "--num-envs", str(NUM_ENVS), "--num-steps", str(NUM_STEPS), "--layer-size", "32", "--seeds", str(SEEDS),
    "--total-steps", str(UPDATES * NUM_ENVS * NUM_STEPS), "--chunk-updates", str(CHUNK), "--no-progress",
]
COUNT_VARIABLES = ("episodes_finished", "achievement_unlocks", "event_total", "action_count", "length_sum", "placement_histogram")


def _tiny_config(out: Path, **changes) -> TrainConfig:
    values = dict(num_envs=NUM_ENVS, num_steps=NUM_STEPS, layer_size=32, seeds=SEEDS,
                  total_steps=UPDATES * NUM_ENVS * NUM_STEPS, chunk_updates=CHUNK, progress=False, out=str(out))
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def sharded_process(workdir):
    """The same tiny run on two forced CPU devices, in a subprocess (XLA reads the flag at start-up)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = workdir / "sharded.nc"
    process = subprocess.Popen(
        [sys.executable, "-m", "valuedyn", "train", *TINY, "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield process, out
    if process.poll() is None:
        process.kill()


@pytest.fixture(scope="module")
def tiny_run(workdir, sharded_process):
    out = workdir / "run.nc"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_file_passes_schema_and_records_config(tiny_run):
    ds = open_trajectory(tiny_run)  # validates against the contract
    assert ds.sizes["seed"] == SEEDS and ds.sizes["update"] == UPDATES
    assert list(ds["env_step"].values) == [NUM_ENVS * NUM_STEPS * (u + 1) for u in range(UPDATES)]
    assert all(name in ds.attrs for name in REQUIRED_ATTRS)
    assert config_from_json(TrainConfig, ds.attrs["config"]) == _tiny_config(tiny_run)
    assert ds.attrs["steps_per_second"] > 0 and ds.attrs["complete"] == 1
    reward = json.loads(ds.attrs["reward"])
    assert reward["health_term"] is True and reward["every_occurrence"] == {}


def test_counts_are_consistent(tiny_run):
    from valuedyn.data._events import event_spec

    ds = open_trajectory(tiny_run)
    episodes = ds["episodes_finished"].values
    assert episodes.sum() > 0, "the tiny run must finish episodes for this test to mean anything"
    unlocks = ds["achievement_unlocks"]
    assert np.all(unlocks.values <= episodes[..., None])
    spec = event_spec("Craftax-Classic-Symbolic-v1")
    checked = 0
    for event, achievement in spec.event_achievement.items():
        total = ds["event_total"].sel(event=event).values
        unlocked = unlocks.sel(achievement=achievement).values
        assert np.all(total >= unlocked), event
        checked += int(unlocked.sum() > 0)
    assert checked > 0, "no achievement with an event was unlocked; the comparison was vacuous"
    assert np.all(ds["action_count"].values.sum(-1) == NUM_ENVS * NUM_STEPS)
    assert np.all(ds["placement_histogram"].values.sum(-1) == episodes[..., None])
    lengths = ds["length_sum"].values
    assert np.all(lengths >= episodes) and np.all((lengths > 0) == (episodes > 0))
    for name in COUNT_VARIABLES:
        assert ds[name].dtype == np.int32


def test_checkpoints_are_log_spaced_and_loadable(tiny_run):
    paths = list_checkpoints(tiny_run)
    assert [p.name for p in paths] == [f"update_{u:08d}.ckpt" for u in (4, 8)]
    checkpoint = load_checkpoint(paths[-1])
    assert checkpoint.update == UPDATES and checkpoint.env_step == UPDATES * NUM_ENVS * NUM_STEPS
    assert checkpoint.config == _tiny_config(tiny_run)
    actor, critic = make_networks(checkpoint.config)
    seed0 = {k: v for k, v in checkpoint.params.items()}
    actor_params = jax.tree.map(lambda x: x[0], seed0["actor"])
    logits = actor.apply({"params": actor_params}, checkpoint.runner["obs"][0])
    assert logits.shape == (NUM_ENVS, 17) and np.all(np.isfinite(logits))


def test_resume_equals_uninterrupted_run(tiny_run, workdir):
    out = workdir / "interrupted.nc"
    assert run_train(_tiny_config(out), stop_after_chunks=1) == 0
    assert open_trajectory(out).sizes["update"] == CHUNK
    assert [p.name for p in list_checkpoints(out)] == [f"update_{CHUNK:08d}.ckpt"]
    assert main(["train", *TINY, "--out", str(out), "--resume"]) == 0
    resumed, uninterrupted = open_trajectory(out), open_trajectory(tiny_run)
    for name in uninterrupted.data_vars:
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values, err_msg=name)


def test_sharded_run_matches_unsharded(tiny_run, sharded_process):
    process, out = sharded_process
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-2000:]
    sharded, single = open_trajectory(out), open_trajectory(tiny_run)
    assert sharded.attrs["device"].endswith("x2") and single.attrs["device"].endswith("x1")
    for name in single.data_vars:
        if name in COUNT_VARIABLES:
            np.testing.assert_array_equal(sharded[name].values, single[name].values, err_msg=name)
        else:
            np.testing.assert_allclose(sharded[name].values, single[name].values, rtol=1e-4, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------
# the reward knob: computed by the trainer from each transition. With the defaults it
# must equal Craftax's own reward exactly; "every occurrence" must pay a second plant
# placement that Craftax's first-unlock rule does not pay. One jitted step (8 envs,
# four reward specs at once) serves these tests.
# ---------------------------------------------------------------------------

ENV = "Craftax-Classic-Symbolic-v1"
SPECS = {
    "default": TrainConfig(),
    "every_plant": TrainConfig(reward_every=("place_plant",)),
    "no_health": TrainConfig(health_reward=False),
    "weighted": TrainConfig(reward_weights=("collect_wood=2.5",)),
}


@pytest.fixture(scope="module")
def machinery(tiny_run):
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
    # environment states mid-training (seed 0's envs), saving a compile of the world generator
    states = jax.tree.map(lambda x: jnp.asarray(x[0]), load_checkpoint(list_checkpoints(tiny_run)[-1]).env_state)
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


# ---------------------------------------------------------------------------
# bad inputs: one line, exit 2, nothing overwritten
# ---------------------------------------------------------------------------


def _snapshot(paths):
    files = []
    for path in paths:
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in files}


def _copy_run(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    shutil.copytree(source.with_name(source.name + ".ckpt"), target.with_name(target.name + ".ckpt"))
    return target


def _expect_error(capsys, argv, pattern, protected=()):
    before = _snapshot(protected)
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert pattern in err, err
    assert _snapshot(protected) == before


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--env", "Craftax-Pixels-v1"], "unknown environment 'Craftax-Pixels-v1'"),
        (["--num-envs", "6", "--num-minibatches", "4"], "must be divisible by --num-minibatches"),
        (["--num-envs", "8", "--num-steps", "16", "--total-steps", "100"], "smaller than one update"),
        (["--reward-every", "walk_around"], "unknown event 'walk_around'"),
        (["--reward-weights", "place_plant"], "NAME=WEIGHT"),
        (["--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_bad_sizes_and_names(tmp_path, capsys, argv, pattern):
    out = tmp_path / "never.nc"
    _expect_error(capsys, [*argv, "--out", str(out)], pattern)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_existing_output_is_refused(tmp_path, capsys):
    out = tmp_path / "existing.nc"
    out.write_bytes(b"precious")
    _expect_error(capsys, [*TINY, "--out", str(out)], "already exists", [out])


def test_resume_with_other_config_names_the_fields(tiny_run, tmp_path, capsys):
    out = _copy_run(tiny_run, tmp_path / "copy.nc")
    protected = [out, out.with_name(out.name + ".ckpt")]
    _expect_error(capsys, [*TINY, "--out", str(out), "--resume", "--lr", "0.001", "--gamma", "0.9"], "lr: stored", protected)
    _expect_error(capsys, [*TINY, "--out", str(out), "--resume", "--gamma", "0.9"], "gamma: stored 0.99, given 0.9", protected)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_checkpoint_is_refused(tiny_run, tmp_path, capsys, damage):
    out = _copy_run(tiny_run, tmp_path / "copy.nc")
    latest = list_checkpoints(out)[-1]
    data = bytearray(latest.read_bytes())
    if damage == "flip":
        data[-100] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    latest.write_bytes(bytes(data))
    protected = [out, out.with_name(out.name + ".ckpt")]
    _expect_error(capsys, [*TINY, "--out", str(out), "--resume"], "is corrupt", protected)
    with pytest.raises(ValuedynError, match="corrupt"):
        load_checkpoint(latest)


def test_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValuedynError, match="does not exist"):
        load_checkpoint(tmp_path / "update_00000001.ckpt")


def test_help_documents_every_flag(capsys):
    import dataclasses

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert field.metadata["help"], field.name
        assert "--" + field.name.replace("_", "-") in text
