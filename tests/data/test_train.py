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

import numpy as np
import pytest

from valuedyn.cli import main
from valuedyn.data import (
    REQUIRED_ATTRS,
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    make_networks,
    open_trajectory,
    run_train,
)
from valuedyn._config import config_from_json
from valuedyn._errors import ValuedynError

NUM_ENVS, NUM_STEPS, SEEDS = 8, 16, 2
UPDATES, CHUNK = 16, 8
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
    assert [p.name for p in paths] == [f"update_{u:08d}.ckpt" for u in (8, 16)]
    checkpoint = load_checkpoint(paths[-1])
    assert checkpoint.update == UPDATES and checkpoint.env_step == UPDATES * NUM_ENVS * NUM_STEPS
    assert checkpoint.config == _tiny_config(tiny_run)
    actor, critic = make_networks(checkpoint.config)
    seed0 = {k: v for k, v in checkpoint.params.items()}
    import jax

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
