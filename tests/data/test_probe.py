"""Probe set, context size, essential dynamics and `valuedyn probe` on a tiny real run."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from valuedyn import ValuedynError
from valuedyn.cli import main
from valuedyn.data import checkpoint_dir
from valuedyn.data._probe import (
    BEHAVIOURS,
    FEATURES,
    collect_rollout_states,
    context_size,
    essential_dynamics,
    probe_set_dataset,
    stratified_indices,
)

# --------------------------------------------------------------------------- known-answer math


def test_context_size_equals_share_of_flagged_states():
    rng = np.random.default_rng(0)
    num_states, num_actions, chosen_action = 400, 5, 3
    flagged = rng.random(num_states) < 0.3  # the policy picks `chosen_action` exactly here
    possible = rng.random(num_states) < 0.5  # where a behaviour using that action is possible
    logits = np.zeros((num_states, num_actions), np.float32)
    logits[flagged, chosen_action] = 10.0  # p ~ 0.98 in flagged states, 1/5 = 0.2 elsewhere
    context = np.stack([np.ones(num_states, bool), possible, np.ones(num_states, bool)], axis=1)
    behaviour_action = jnp.array([chosen_action, chosen_action, 0])
    seeds = jnp.stack([jnp.asarray(logits), jnp.zeros((num_states, num_actions))])  # seed 1: uniform policy

    size = context_size(seeds, jnp.asarray(context), behaviour_action, threshold=0.5)

    assert size.count.shape == (2, 3)
    assert int(size.count[0, 0]) == flagged.sum()
    assert float(size.fraction[0, 0]) == pytest.approx(flagged.mean())
    assert int(size.count[0, 1]) == (flagged & possible).sum()
    assert int(size.count[0, 2]) == 0 and np.all(np.asarray(size.count[1]) == 0)
    p_high = float(jax.nn.softmax(jnp.array([0, 0, 0, 10.0, 0]))[3])
    expected_mean = np.mean(np.where(possible, np.where(flagged, p_high, 0.2), 0.0))
    assert float(size.mean_prob[0, 1]) == pytest.approx(expected_mean, rel=1e-5)
    assert float(size.mean_prob[1, 0]) == pytest.approx(0.2, rel=1e-5)


def test_essential_dynamics_recovers_a_known_plane():
    rng = np.random.default_rng(1)
    num_seeds, num_checkpoints, num_states, num_actions = 2, 6, 10, 4
    dim = num_states * num_actions
    basis = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T  # two orthonormal directions
    t = rng.normal(scale=3.0, size=(num_seeds, num_checkpoints))
    s = rng.normal(scale=1.0, size=(num_seeds, num_checkpoints))
    t, s = t - t.mean(), s - s.mean()
    t -= (t * s).sum() / (s * s).sum() * s  # make the two coordinates uncorrelated: exact PCA answer
    offset = rng.normal(size=dim)
    points = offset + t[..., None] * basis[0] + s[..., None] * basis[1]
    outputs = jnp.asarray(points.reshape(num_seeds, num_checkpoints, num_states, num_actions), jnp.float32)

    dynamics = essential_dynamics(outputs, num_components=3)

    assert dynamics.coords.shape == (num_seeds, num_checkpoints, 3)
    variance_t, variance_s = (t**2).sum(), (s**2).sum()
    expected = np.array([variance_t, variance_s, 0.0]) / (variance_t + variance_s)
    np.testing.assert_allclose(np.asarray(dynamics.explained_variance), expected, atol=1e-4)
    np.testing.assert_allclose(np.abs(np.asarray(dynamics.coords[..., 0])), np.abs(t), atol=1e-3)
    np.testing.assert_allclose(np.abs(np.asarray(dynamics.coords[..., 1])), np.abs(s), atol=1e-3)
    # capped at the number of points
    assert essential_dynamics(outputs[:1, :2], num_components=5).coords.shape == (1, 2, 2)


def test_stratified_indices_keep_rare_strata_and_are_reproducible():
    rng = np.random.default_rng(2)
    strata = np.stack([rng.random(5000) < 0.5, np.zeros(5000, bool), np.zeros(5000, bool)], axis=1)
    strata[[17, 999, 4321], 1] = True  # a rare stratum of three states
    first, claimed = stratified_indices(jax.random.PRNGKey(0), strata, num_states=100)
    again, _ = stratified_indices(jax.random.PRNGKey(0), strata, num_states=100)
    other, _ = stratified_indices(jax.random.PRNGKey(1), strata, num_states=100)
    assert len(first) == 100 and len(set(first.tolist())) == 100
    assert {17, 999, 4321} <= set(first.tolist())
    assert np.sum(claimed == 1) == 3
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(ValuedynError, match="candidate states"):
        stratified_indices(jax.random.PRNGKey(0), strata, num_states=6000)


# --------------------------------------------------------------------------- a tiny real run

PROBE_ARGS = ["--num-probe-states", "96", "--rollout-envs", "8", "--rollout-steps", "24", "--rollout-checkpoints", "2",
              "--num-components", "4", "--llc-steps", "40", "--llc-burnin", "10", "--llc-chains", "2",
              "--llc-batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def probed_run(tiny_run, tmp_path_factory):
    """A copy of the shared tiny run (2 seeds, checkpoints at updates 2, 4, 8), probed once."""
    folder = tmp_path_factory.mktemp("probe_run")
    run = folder / "run.nc"
    shutil.copyfile(tiny_run, run)
    shutil.copytree(checkpoint_dir(tiny_run), checkpoint_dir(run))
    assert main(["probe", str(run), *PROBE_ARGS]) == 0
    return run


def test_probe_writes_a_trajectory_of_measures(probed_run):
    from valuedyn.data import list_checkpoints, load_checkpoint

    out, probe_set = probed_run.with_name("run.probe.nc"), probed_run.with_name("run.probeset.nc")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        ds = ds.load()
    checkpoints = [load_checkpoint(p) for p in list_checkpoints(probed_run)]
    assert len(checkpoints) >= 3
    assert ds.sizes["seed"] == 2 and ds.sizes["checkpoint"] == len(checkpoints)
    np.testing.assert_array_equal(ds["update"].values, [c.update for c in checkpoints])
    np.testing.assert_array_equal(ds["env_step"].values, [c.env_step for c in checkpoints])
    assert ds["context_count"].dims == ("seed", "checkpoint", "behaviour")
    assert ds["context_count"].dtype.kind == "i"
    assert np.all(ds["context_count"].values <= ds["context_states"].values)
    assert np.all((ds["context_fraction"].values >= 0) & (ds["context_fraction"].values <= 1))
    np.testing.assert_allclose(ds["context_fraction"], ds["context_count"] / ds.attrs["num_probe_states"], rtol=1e-6)
    assert set(ds["behaviour"].values) >= {"action_place_plant", "place_plant"}
    assert ds["pc_coords"].dims == ("seed", "checkpoint", "pc")
    assert 0 < float(ds["explained_variance"].sum()) <= 1 + 1e-5
    for net in ("policy", "value"):
        assert ds[f"llc_{net}"].dims == ("seed", "checkpoint")
        assert np.all(np.isfinite(ds[f"llc_{net}"].values)) and np.all(np.isfinite(ds[f"llc_{net}_se"].values))
        assert ds.attrs[f"llc_{net}_num_steps"] == 40 and ds.attrs[f"llc_{net}_gamma"] > 0
    for key in ("config", "train_config", "git_commit", "jax_version", "device", "trajectory_sha256", "probe_set_sha256"):
        assert key in ds.attrs
    # Fitting reads it like a trajectory: swap the checkpoint axis for the update axis.
    assert ds["context_count"].swap_dims(checkpoint="update").dims == ("seed", "update", "behaviour")
    assert probe_set.exists()


def test_probe_set_is_stratified_and_reusable(probed_run, run_copy):
    probe_set_path = probed_run.with_name("run.probeset.nc")
    with xr.open_dataset(probe_set_path, engine="h5netcdf") as probe_set:
        probe_set = probe_set.load()
    assert probe_set.sizes["probe_state"] == 96
    assert list(probe_set["source_policy"].values)[0] == "random"
    # every situation the rollouts met at all is in the probe set (96 states, 30 strata)
    for flags, counts in (("feature_flag", "candidate_feature_count"), ("context_flag", "candidate_context_count")):
        met = probe_set[counts].values > 0
        assert np.all(probe_set[flags].values.sum(axis=0)[met] > 0)
    # Reusing the probe set on (a copy of) the same run reproduces the context sizes exactly.
    reuse = ["--probe-set", str(probe_set_path), "--num-components", "4", "--no-llc", "--no-progress"]
    assert main(["probe", str(run_copy), *reuse]) == 0
    assert not run_copy.with_name("run.probeset.nc").exists()
    with xr.open_dataset(run_copy.with_name("run.probe.nc"), engine="h5netcdf") as second, \
            xr.open_dataset(probed_run.with_name("run.probe.nc"), engine="h5netcdf") as first:
        np.testing.assert_array_equal(second["context_count"].values, first["context_count"].values)
        np.testing.assert_allclose(second["pc_coords"].values, first["pc_coords"].values, rtol=1e-4, atol=1e-5)
        assert "llc_policy" not in second


def test_probe_set_sampling_is_reproducible_from_a_seed(probed_run):
    from valuedyn.data import list_checkpoints, load_checkpoint, make_networks

    checkpoint = load_checkpoint(list_checkpoints(probed_run)[-1])
    actor, _ = make_networks(checkpoint.config)  # shares the compiled rollout of the probe run
    params = jax.tree.map(lambda x: x[0], checkpoint.params["actor"])
    states = [collect_rollout_states(jax.random.PRNGKey(key), 8, 24, checkpoint.config.env, actor, p)
              for key, p in ((3, None), (3, None), (4, None), (3, params))]
    for a, b in zip(states[0], states[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(states[0].observation, states[2].observation)  # another seed, other states
    assert states[3].observation.shape == states[0].observation.shape  # a checkpoint's policy drives the same program
    source = np.zeros(len(states[0].timestep), np.int32)
    sets = [probe_set_dataset(states[0], source, ("random",), jax.random.PRNGKey(4), 64, {}) for _ in range(2)]
    xr.testing.assert_identical(sets[0], sets[1])
    assert sets[0].sizes["feature"] == len(FEATURES) and sets[0].sizes["context"] == len(BEHAVIOURS)


# --------------------------------------------------------------------------- bad input


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("valuedyn probe: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_missing_run_is_refused(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "nope.nc")]) == 2
    assert "does not exist" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_run_without_checkpoints_is_refused(tiny_run, tmp_path, capsys):
    lonely = tmp_path / "lonely.nc"
    shutil.copy(tiny_run, lonely)
    assert main(["probe", str(lonely), *PROBE_ARGS]) == 2
    assert "no checkpoints" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lonely.nc"]


def test_existing_output_needs_force(probed_run, capsys):
    out = probed_run.with_name("run.probe.nc")
    before = out.read_bytes()
    assert main(["probe", str(probed_run), *PROBE_ARGS]) == 2
    assert "--force" in _one_line_error(capsys)
    assert out.read_bytes() == before


def test_bad_settings_are_refused_before_work(tiny_run, tmp_path, capsys):
    args = ["probe", str(tiny_run), "--out", str(tmp_path / "x.nc")]
    assert main([*args, "--threshold", "1.5"]) == 2
    assert "--threshold" in _one_line_error(capsys)
    assert main([*args, "--llc-burnin", "500", "--llc-steps", "100"]) == 2
    assert "burn-in" in _one_line_error(capsys)
    assert main([*args, "--num-probe-states", "100000", "--force"]) == 2
    assert "--num-probe-states" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_outputs_over_inputs_are_refused_even_with_force(tiny_run, tmp_path, capsys):
    # --force replaces outputs, never the run or the probe set being read
    assert main(["probe", str(tiny_run), "--out", str(tiny_run), "--force"]) == 2
    assert "is also an input" in _one_line_error(capsys)
    probe_set = tmp_path / "states.probeset.nc"
    probe_set.write_bytes(b"not read: refused before")
    assert main(["probe", str(tiny_run), "--probe-set", str(probe_set), "--out", str(probe_set), "--force"]) == 2
    assert "is also an input" in _one_line_error(capsys)
    assert probe_set.read_bytes() == b"not read: refused before"
    # the default probe set is written beside the run: --out cannot name it too
    assert main(["probe", str(tiny_run), "--out", str(tiny_run.with_name("run.probeset.nc")), "--force"]) == 2
    assert "written twice" in _one_line_error(capsys)
    assert not tiny_run.with_name("run.probeset.nc").exists()
