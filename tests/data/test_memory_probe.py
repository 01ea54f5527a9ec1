"""The memory probe (`valuedyn probe --memory`), calibrated on cases with a known answer.

- Synthetic sequences (independent across steps, so nothing about the past can be
  guessed from the present): a state holding the observation from exactly k steps back
  gives horizon k for every feature; a state that is a function of the current
  observation gives 0.
- The real environment: a feed-forward policy's last hidden layer gives 0; a state
  holding what was in view k steps back gives a horizon of at least k (the world itself
  carries a fact a few steps further: what was in view stays in view a while).
- End to end: a tiny recurrent run is trained and probed from the command line.
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from valuedyn.cli import main
from valuedyn.data import (
    MEMORY_FEATURES,
    MEMORY_MARGIN,
    MemorySettings,
    checkpoint_dir,
    collect_memory_rollouts,
    decode_memory,
    list_checkpoints,
    load_checkpoint,
    make_networks,
    memory_horizon,
    memory_probe,
    memory_targets,
)
from valuedyn.data._memory import MIN_EPISODES, MemoryRollout  # not part of the public API

# --------------------------------------------------------------------------- synthetic sequences

#: The 8 neighbouring directions a synthetic water tile lies in (map axes 0, 1).
DIRECTIONS = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]])


def synthetic_rollout(seed: int, num_envs: int = 32, num_steps: int = 200, rate: float = 0.3) -> MemoryRollout:
    """Facts drawn independently at every step: water, table and tree each in view with
    probability ``rate`` (water 2 tiles away in one of 8 directions), a drink with
    probability ``rate``; episodes of 40..79 steps; the player stands still. The
    observation shows what a Craftax observation would: what is in view (the water's
    direction one-hot), whether the drink meter was just refilled, and 4 noise columns."""
    rng = np.random.default_rng(seed)
    first = np.zeros((num_envs, num_steps), bool)
    for env in range(num_envs):
        step = 0
        while step < num_steps:
            first[env, step] = True
            step += int(rng.integers(40, 80))
    in_view = rng.random((num_envs, num_steps, 3)) < rate
    player = np.full((num_envs, num_steps, 2), 20, np.int32)
    direction = rng.integers(0, 8, (num_envs, num_steps))
    water = np.where(in_view[..., :1], player + 2 * DIRECTIONS[direction], -1).astype(np.int32)
    drank = rng.random((num_envs, num_steps)) < rate
    refilled = first.copy()
    refilled[:, 1:] |= drank[:, :-1]
    observation = np.concatenate(
        [in_view, np.eye(8)[direction] * in_view[..., :1], refilled[..., None], rng.normal(size=(num_envs, num_steps, 4))], axis=-1
    ).astype(np.float32)
    return MemoryRollout(observation, observation, observation, first, player, in_view, water, drank)


def episode_step(first: np.ndarray) -> np.ndarray:
    step = np.zeros(first.shape, np.int64)
    for t in range(1, first.shape[1]):
        step[:, t] = np.where(first[:, t], 0, step[:, t - 1] + 1)
    return step


def lagged(values: np.ndarray, first: np.ndarray, lag: int) -> np.ndarray:
    """``values[env, step - lag]`` within the episode, zeros before its start, with a
    column saying whether that step exists."""
    shifted = np.zeros(values.shape, np.float32)
    shifted[:, lag:] = values[:, : values.shape[1] - lag]
    present = (episode_step(first) >= lag)[..., None]
    return np.concatenate([shifted * present, present.astype(np.float32)], axis=-1)


def decode(state, baseline, targets, seed=0):
    return decode_memory(state, baseline, targets, num_folds=5, num_bootstrap=400, max_components=128,
                         rng=np.random.default_rng(seed))


@pytest.fixture(scope="module")
def synthetic():
    rollout = synthetic_rollout(0)
    return rollout, memory_targets(rollout, num_lags=6)


@pytest.mark.parametrize("held_lag", [2, 4])
def test_a_window_of_the_last_k_observations_gives_horizon_k(synthetic, held_lag):
    rollout, targets = synthetic
    state = np.concatenate([lagged(rollout.observation, rollout.first, lag) for lag in range(held_lag + 1)], axis=-1)
    scores = decode(state, rollout.observation, targets)
    np.testing.assert_array_equal(scores.horizon, [held_lag] * len(MEMORY_FEATURES))
    # every lag up to k is beaten, none beyond (the per-lag rule, not only its maximum)
    beats = scores.advantage_low > MEMORY_MARGIN
    assert beats[:, :held_lag].all() and not beats[:, held_lag:].any()
    assert np.all(scores.advantage[:, held_lag:] < MEMORY_MARGIN / 2)


def test_a_state_holding_exactly_the_observation_k_steps_back_gives_horizon_k(synthetic):
    rollout, targets = synthetic
    state = np.concatenate([rollout.observation, lagged(rollout.observation, rollout.first, 3)], axis=-1)
    scores = decode(state, rollout.observation, targets)
    np.testing.assert_array_equal(scores.horizon, [3] * len(MEMORY_FEATURES))
    # what was in view is known at lag 3 exactly and nowhere else (draws are independent)
    for feature in ("water_seen", "table_seen", "tree_seen"):
        row = scores.advantage_low[MEMORY_FEATURES.index(feature)]
        assert row[2] > 0.9 and np.all(row[[0, 1, 3, 4, 5]] < MEMORY_MARGIN)


@pytest.mark.parametrize("kind", ["copy", "nonlinear"])
def test_a_state_of_the_current_observation_only_gives_horizon_0(synthetic, kind):
    rollout, targets = synthetic
    obs = rollout.observation
    state = obs if kind == "copy" else np.tanh(obs @ np.random.default_rng(1).normal(size=(obs.shape[-1], 32)))
    scores = decode(state, obs, targets)
    np.testing.assert_array_equal(scores.horizon, [0] * len(MEMORY_FEATURES))
    assert np.all(np.isfinite(scores.advantage_low))  # scored everywhere: 0 is a finding, not missing data
    assert np.nanmax(scores.advantage) < 0.01


def test_targets_on_a_hand_made_sequence():
    # One env, 8 steps, episodes starting at steps 0 and 6. Water in view at step 1 only
    # (tile (5, 9)); the player walks from (5, 5) to (2, 5) by step 4; a tree in view at
    # step 0 only; a drink at step 2.
    first = np.array([[1, 0, 0, 0, 0, 0, 1, 0]], bool)
    in_view = np.zeros((1, 8, 3), bool)
    in_view[0, 1, 0] = True
    in_view[0, 0, 2] = True
    water = np.full((1, 8, 2), -1, np.int32)
    water[0, 1] = (5, 9)
    player = np.array([[[5, 5], [5, 5], [4, 5], [3, 5], [2, 5], [2, 5], [7, 7], [7, 7]]], np.int32)
    drank = np.zeros((1, 8), bool)
    drank[0, 2] = True
    empty = np.zeros((1, 8, 1), np.float32)
    targets = memory_targets(MemoryRollout(empty, empty, empty, first, player, in_view, water, drank), num_lags=4)

    assert targets.num_episodes == 2
    np.testing.assert_array_equal(targets.episode, [0, 0, 0, 0, 0, 0, 1, 1])
    water_seen, tree_seen, direction, drink = (MEMORY_FEATURES.index(f) for f in ("water_seen", "tree_seen", "water_direction", "steps_since_drink"))
    # water_seen: at lag 1, the states out of view with a step before them in the episode
    np.testing.assert_array_equal(targets.valid[water_seen, 0], [0, 0, 1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(targets.values[water_seen][0][:, 0], [0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(targets.values[water_seen][2][:, 0], [0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(targets.valid[water_seen, 3], [0, 0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(targets.values[tree_seen][1][:, 0][targets.valid[tree_seen, 1]], [1, 0, 0, 0])
    # water_direction at step 4: water (5, 9) - player (2, 5) = (3, 4): cos 3/5 (axis 0), sin 4/5
    np.testing.assert_allclose(targets.values[direction][0][4], [0.8, 0.6])
    # seen at step 1, out of view for 3 steps by step 4: scored at lags 1..3, not 4; never after the reset
    np.testing.assert_array_equal(targets.valid[direction][:, 4], [1, 1, 1, 0])
    assert not targets.valid[direction][:, 6:].any()
    # steps since the meter was refilled: 0 at the start, 0 right after the drink (step 3), 0 at the reset
    np.testing.assert_array_equal(targets.values[drink][0][:, 0], [0, 1, 2, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(targets.valid[drink, 1], [0, 0, 1, 0, 0, 1, 0, 0])


def test_horizon_rule():
    low = np.array([[0.2, 0.01, 0.3, np.nan], [0.04, 0.0, np.nan, np.nan], [0.5, 0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(memory_horizon(low), [3, 0, 4])  # the largest lag beaten, gaps allowed
    np.testing.assert_array_equal(memory_horizon(low, margin=0.25), [3, 0, 4])
    np.testing.assert_array_equal(memory_horizon(low, margin=0.4), [0, 0, 4])


def test_too_few_episodes_are_not_scored():
    rollout = synthetic_rollout(2, num_envs=3, num_steps=100)  # at most 3 episodes per env: fewer than MIN_EPISODES
    targets = memory_targets(rollout, num_lags=2)
    assert targets.num_episodes < MIN_EPISODES
    state = np.concatenate([lagged(rollout.observation, rollout.first, lag) for lag in range(3)], axis=-1)
    scores = decode(state, rollout.observation, targets)
    assert np.all(np.isnan(scores.advantage_low)) and np.all(scores.horizon == 0)
    assert np.all(scores.episodes < MIN_EPISODES) and np.all(scores.samples > 0)


# --------------------------------------------------------------------------- the real environment


@pytest.fixture(scope="module")
def feedforward_rollout():
    """A feed-forward policy (random initialisation) rolled out on Craftax-Classic."""
    from valuedyn.data._networks import Actor

    actor = Actor(17, 64, 2)
    params = actor.init(jax.random.PRNGKey(1), jnp.zeros((1, 1345)))["params"]
    seeds = jax.tree.map(lambda x: x[None], params)
    rollout = collect_memory_rollouts(jax.random.PRNGKey(0), actor, seeds, 16, 96)
    one = MemoryRollout(*(x[0] for x in rollout))
    return one, memory_targets(one, num_lags=8)


def test_rollout_facts_match_the_observation(feedforward_rollout):
    from craftax.craftax_classic.constants import OBS_DIM, BlockType

    rollout, _ = feedforward_rollout
    num_envs, num_steps = rollout.first.shape
    view = rollout.observation[..., : OBS_DIM[0] * OBS_DIM[1] * 21].reshape(num_envs, num_steps, *OBS_DIM, 21)
    for index, block in enumerate(("WATER", "CRAFTING_TABLE", "TREE")):
        np.testing.assert_array_equal(view[..., BlockType[block].value].any(axis=(2, 3)), rollout.in_view[..., index])
    # the water tile recorded is water in the observation's window
    seen = rollout.in_view[..., 0]
    cell = rollout.water_position[seen] - rollout.player_position[seen] + np.array(OBS_DIM) // 2
    assert np.all(view[seen][np.arange(seen.sum()), cell[:, 0], cell[:, 1], BlockType.WATER.value] == 1)
    assert np.all(rollout.water_position[~seen] == -1)
    assert rollout.first[:, 0].all() and rollout.first.sum() > rollout.first.shape[0]  # episodes ended and restarted
    np.testing.assert_array_equal(rollout.state, rollout.memoryless_state)  # a feed-forward layer has no history


def test_a_feedforward_policy_has_horizon_0(feedforward_rollout):
    rollout, targets = feedforward_rollout
    baseline = (rollout.observation, rollout.memoryless_state)
    scores = decode(rollout.state, baseline, targets)
    np.testing.assert_array_equal(scores.horizon, [0] * len(MEMORY_FEATURES))
    for feature in ("water_seen", "steps_since_drink"):  # scored: 0 is a finding, not missing data
        assert np.isfinite(scores.advantage_low[MEMORY_FEATURES.index(feature)]).all()


def test_a_state_holding_what_was_in_view_remembers_on_the_real_environment(feedforward_rollout):
    rollout, targets = feedforward_rollout
    held_lag = 3
    memory = [lagged(rollout.in_view.astype(np.float32), rollout.first, lag) for lag in range(1, held_lag + 1)]
    state = np.concatenate([rollout.memoryless_state, *memory], axis=-1)
    baseline = (rollout.observation, rollout.memoryless_state)
    scores = decode(state, baseline, targets)
    water = MEMORY_FEATURES.index("water_seen")
    assert scores.horizon[water] >= held_lag
    assert np.all(scores.skill_state[water, :held_lag] > 0.99)  # it holds the target itself


# --------------------------------------------------------------------------- end to end

TRAIN_ARGS = (
    "--recurrent", "--gru-hidden", "8", "--num-envs", "8", "--num-steps", "16", "--layer-size", "32", "--num-layers", "1",
    "--total-steps", "1024", "--checkpoint-every", "4", "--chunk-updates", "2", "--update-epochs", "1", "--seeds", "2",
    "--no-progress",
)
MEMORY_ARGS = ("--memory", "--memory-envs", "12", "--memory-steps", "64", "--memory-lags", "4", "--memory-bootstrap", "200", "--no-progress")


@pytest.fixture(scope="module")
def recurrent_run(tmp_path_factory):
    """A tiny recurrent run (GRU of 8 units, 2 seeds, 8 updates), probed once with --memory."""
    run = tmp_path_factory.mktemp("recurrent") / "run.nc"
    assert main(["train", *TRAIN_ARGS, "--out", str(run)]) == 0
    assert main(["probe", str(run), *MEMORY_ARGS]) == 0
    return run


def test_memory_probe_of_a_recurrent_run(recurrent_run):
    with xr.open_dataset(recurrent_run.with_name("run.memory.nc"), engine="h5netcdf") as ds:
        ds = ds.load()
    checkpoints = [load_checkpoint(p) for p in list_checkpoints(recurrent_run)]
    assert len(checkpoints) >= 2
    assert dict(ds.sizes) == {"seed": 2, "checkpoint": len(checkpoints), "feature": len(MEMORY_FEATURES), "lag": 4}
    np.testing.assert_array_equal(ds["update"].values, [c.update for c in checkpoints])
    np.testing.assert_array_equal(ds["env_step"].values, [c.env_step for c in checkpoints])
    assert list(ds["feature"].values) == list(MEMORY_FEATURES) and list(ds["lag"].values) == [1, 2, 3, 4]
    horizon = ds["memory_horizon"]
    assert horizon.dims == ("seed", "checkpoint", "feature") and horizon.dtype.kind == "i"
    assert np.all((horizon.values >= 0) & (horizon.values <= ds.attrs["num_lags"]))
    # the horizon is the largest lag beaten; beaten = interval's lower end above the margin
    beats = ds["memory_beats"].values.astype(bool)
    np.testing.assert_array_equal(beats, np.nan_to_num(ds["memory_advantage_low"].values, nan=-np.inf) > ds.attrs["margin"])
    np.testing.assert_array_equal(horizon.values, np.max(np.where(beats, ds["lag"].values, 0), axis=-1))
    np.testing.assert_array_equal(ds["memory_lags_scored"].values, np.isfinite(ds["memory_advantage_low"].values).sum(-1))
    scored = np.isfinite(ds["memory_advantage"].values)
    np.testing.assert_allclose(ds["memory_advantage"].values[scored],
                               (ds["memory_skill_state"] - ds["memory_skill_baseline"]).values[scored], atol=1e-6)
    assert np.all(ds["memory_samples"].values >= 0) and np.all(ds["rollout_episodes"].values >= 12)
    assert ds.attrs["state_kind"] == "gru_hidden" and ds.attrs["state_dim"] == 8 and ds.attrs["measures"] == "memory"
    assert ds.attrs["margin"] == MEMORY_MARGIN and set(json.loads(ds.attrs["feature_definitions"])) == set(MEMORY_FEATURES)
    for key in ("config", "train_config", "settings", "horizon_rule", "decoder", "baseline", "git_commit", "jax_version",
                "device", "trajectory_sha256", "wall_time_s", "seconds_per_checkpoint"):
        assert key in ds.attrs
    assert json.loads(ds.attrs["config"])["memory"] is True
    # Fitting reads it like a trajectory: swap the checkpoint axis for the update axis.
    assert horizon.swap_dims(checkpoint="update").dims == ("seed", "update", "feature")


def test_memory_probe_is_reproducible_and_the_gru_starts_episodes_from_zero(recurrent_run):
    settings = MemorySettings(num_envs=12, num_steps=64, num_lags=4, num_bootstrap=200)
    again = memory_probe(recurrent_run, settings)  # the compiled rollout is reused
    with xr.open_dataset(recurrent_run.with_name("run.memory.nc"), engine="h5netcdf") as first:
        for name in ("memory_horizon", "memory_advantage", "memory_advantage_low", "memory_skill_state", "memory_samples"):
            np.testing.assert_array_equal(again[name].values, first[name].values)
    checkpoint = load_checkpoint(list_checkpoints(recurrent_run)[-1])
    actor, _ = make_networks(checkpoint.config)
    rollout = collect_memory_rollouts(jax.random.PRNGKey(0), actor, checkpoint.params["actor"], 12, 64)
    # at an episode's first step the hidden state was reset: state and memoryless state agree
    np.testing.assert_allclose(rollout.state[rollout.first], rollout.memoryless_state[rollout.first], atol=1e-6)
    assert not np.allclose(rollout.state[~rollout.first], rollout.memoryless_state[~rollout.first])


# --------------------------------------------------------------------------- refusals


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("valuedyn probe: error:") and "Traceback" not in err
    return err


def test_a_recurrent_run_needs_memory_for_the_probe_set_measures(recurrent_run, tmp_path, capsys):
    assert main(["probe", str(recurrent_run), "--out", str(tmp_path / "x.nc"), "--no-llc", "--no-progress",
                 "--num-probe-states", "32", "--rollout-steps", "8", "--rollout-envs", "8"]) == 2
    assert "--memory" in _one_line_error(capsys)
    assert not (tmp_path / "x.nc").exists()


def test_options_of_the_other_mode_are_refused(recurrent_run, tmp_path, capsys):
    out = ["--out", str(tmp_path / "x.nc")]
    assert main(["probe", str(recurrent_run), *out, "--memory", "--threshold", "0.2"]) == 2
    assert "--threshold only apply to the probe-set measures" in _one_line_error(capsys)
    assert main(["probe", str(recurrent_run), *out, "--memory-lags", "8"]) == 2
    assert "--memory-lags only apply to --memory" in _one_line_error(capsys)
    assert main(["probe", str(recurrent_run), *out, "--memory", "--memory-folds", "2"]) == 2
    assert "--memory-folds must be >= 3" in _one_line_error(capsys)
    assert main(["probe", str(recurrent_run), *out, "--memory", "--memory-steps", "4", "--memory-lags", "8"]) == 2
    assert "--memory-steps must exceed" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_existing_memory_file_needs_force_and_checkpoints_are_needed(recurrent_run, tmp_path, capsys):
    out = recurrent_run.with_name("run.memory.nc")
    before = out.read_bytes()
    assert main(["probe", str(recurrent_run), *MEMORY_ARGS]) == 2
    assert "--force" in _one_line_error(capsys)
    assert out.read_bytes() == before
    lonely = tmp_path / "lonely.nc"
    shutil.copy(recurrent_run, lonely)
    assert main(["probe", str(lonely), *MEMORY_ARGS]) == 2
    assert "no checkpoints" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lonely.nc"]
    assert checkpoint_dir(recurrent_run).is_dir()
