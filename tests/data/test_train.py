"""valuedyn train end to end on the tiny CPU run every data test shares (see conftest.py).

The in-process runs (the shared run, the interrupted and the resumed one) share one
compiled program through the trainer's program cache. The sharded run (two forced CPU
devices) needs its own process and starts before the shared run is asked for, so its
compile overlaps the in-process one. The trainer's reward is tested with the event
counter, on its compiled Craftax step, in test_events.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
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
from valuedyn.data._checkpoint import checkpoint_dir, refuse_run_outputs

COUNT_VARIABLES = ("episodes_finished", "achievement_unlocks", "event_total", "action_count", "length_sum", "placement_histogram")


def _num_updates(config: TrainConfig) -> int:
    return config.total_steps // (config.num_envs * config.num_steps)


@pytest.fixture(scope="module")
def sharded_process(tmp_path_factory, tiny_args):
    """The tiny run on two forced CPU devices, in a subprocess (XLA reads the flag at start-up)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = tmp_path_factory.mktemp("sharded") / "sharded.nc"
    process = subprocess.Popen(
        [sys.executable, "-m", "valuedyn", "train", *tiny_args, "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield process, out
    if process.poll() is None:
        process.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_processes(tmp_path_factory, tiny_args):
    """The tiny run as a two-process ``jax.distributed`` job on this machine: one CPU device
    per process, CPU collectives over localhost; process 0 writes the trajectory."""
    out = tmp_path_factory.mktemp("distributed") / "distributed.nc"
    cluster = ["--distributed", "--coordinator-address", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "valuedyn", "train", *tiny_args, "--out", str(out), *cluster, "--process-id", str(rank)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(2)
    ]
    yield processes, out
    for process in processes:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def tiny_run(tiny_run, sharded_process, distributed_processes):
    """The shared tiny run, asked for only once the sharded and distributed processes have started."""
    return tiny_run


def test_file_passes_schema_and_records_config(tiny_run, tiny_config):
    ds = open_trajectory(tiny_run)  # validates against the contract
    updates, steps_per_update = _num_updates(tiny_config), tiny_config.num_envs * tiny_config.num_steps
    assert ds.sizes["seed"] == tiny_config.seeds and ds.sizes["update"] == updates
    assert list(ds["env_step"].values) == [steps_per_update * (u + 1) for u in range(updates)]
    assert all(name in ds.attrs for name in REQUIRED_ATTRS)
    # the command-line flags of the shared run gave exactly the config it was meant to be
    assert config_from_json(TrainConfig, ds.attrs["config"]) == dataclasses.replace(tiny_config, out=str(tiny_run))
    assert ds.attrs["steps_per_second"] > 0 and ds.attrs["complete"] == 1
    reward = json.loads(ds.attrs["reward"])
    assert reward["health_term"] is True and reward["every_occurrence"] == {}


def test_counts_are_consistent(tiny_run, tiny_config):
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
    assert np.all(ds["action_count"].values.sum(-1) == tiny_config.num_envs * tiny_config.num_steps)
    assert np.all(ds["placement_histogram"].values.sum(-1) == episodes[..., None])
    lengths = ds["length_sum"].values
    assert np.all(lengths >= episodes) and np.all((lengths > 0) == (episodes > 0))
    for name in COUNT_VARIABLES:
        assert ds[name].dtype == np.int32


def test_checkpoints_are_log_spaced_and_loadable(tiny_run, tiny_config):
    paths = list_checkpoints(tiny_run)
    # chunks end at updates 2, 4, 6, 8: checkpoints where they reach 1-2, 4, and the last, 8
    assert [p.name for p in paths] == [f"update_{u:08d}.ckpt" for u in (2, 4, 8)]
    checkpoint = load_checkpoint(paths[-1])
    updates = _num_updates(tiny_config)
    assert checkpoint.update == updates and checkpoint.env_step == updates * tiny_config.num_envs * tiny_config.num_steps
    assert checkpoint.config == dataclasses.replace(tiny_config, out=str(tiny_run))
    actor, critic = make_networks(checkpoint.config)
    actor_params = jax.tree.map(lambda x: x[0], checkpoint.params["actor"])
    logits = actor.apply({"params": actor_params}, checkpoint.runner["obs"][0])
    assert logits.shape == (tiny_config.num_envs, 17) and np.all(np.isfinite(logits))


def test_resume_equals_uninterrupted_run(tiny_run, tiny_config, tiny_args, tmp_path):
    out = tmp_path / "interrupted.nc"
    assert run_train(dataclasses.replace(tiny_config, out=str(out)), stop_after_chunks=1) == 0
    chunk = tiny_config.chunk_updates
    assert open_trajectory(out).sizes["update"] == chunk
    assert [p.name for p in list_checkpoints(out)] == [f"update_{chunk:08d}.ckpt"]
    assert main(["train", *tiny_args, "--out", str(out), "--resume"]) == 0
    resumed, uninterrupted = open_trajectory(out), open_trajectory(tiny_run)
    assert resumed.sizes["update"] == _num_updates(tiny_config)
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


def test_distributed_run_matches_single_process(tiny_run, distributed_processes):
    processes, out = distributed_processes
    for rank, process in enumerate(processes):
        output, _ = process.communicate(timeout=540)
        assert process.returncode == 0, f"process {rank}: {output[-2000:]}"
    distributed, single = open_trajectory(out), open_trajectory(tiny_run)
    assert distributed.attrs["device"].endswith("x2") and single.attrs["device"].endswith("x1")
    for name in single.data_vars:
        if name in COUNT_VARIABLES:
            np.testing.assert_array_equal(distributed[name].values, single[name].values, err_msg=name)
        else:
            np.testing.assert_allclose(distributed[name].values, single[name].values, rtol=1e-4, atol=1e-6, err_msg=name)
    assert not list(out.parent.glob(".*.tmp")), "a process other than 0 wrote files"


def test_killed_run_loses_nothing_and_resumes_to_the_uninterrupted_run(tiny_run, tiny_args, tmp_path):
    """SIGKILL at a random moment after the first chunk was written; the leftover trajectory is
    valid and ``--resume`` gives exactly the uninterrupted run."""
    out = tmp_path / "killed.nc"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    env.pop("XLA_FLAGS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "valuedyn", "train", *tiny_args, "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 480
        while not out.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert out.exists(), f"the run wrote no trajectory: {process.communicate(timeout=60)[0][-2000:] if process.poll() is not None else 'timed out'}"
        delay = np.random.default_rng().uniform(0.0, 0.5)  # a random moment after the first chunk
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    left = open_trajectory(out)  # the file left behind passes the schema
    checkpoints = list_checkpoints(out)
    context = f"killed {delay:.2f} s after the first chunk (exit {process.returncode}): {left.sizes['update']} updates, checkpoints {[p.name for p in checkpoints]}"
    assert checkpoints, f"a trajectory file without a checkpoint to resume from; {context}"
    assert main(["train", *tiny_args, "--out", str(out), "--resume"]) == 0, context
    resumed, uninterrupted = open_trajectory(out), open_trajectory(tiny_run)
    assert resumed.sizes["update"] == uninterrupted.sizes["update"], context
    for name in uninterrupted.data_vars:
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values, err_msg=f"{name}; {context}")


@pytest.mark.parametrize("damage", ["folder removed", "folder emptied"])
def test_resume_without_checkpoints_is_refused_and_changes_nothing(run_copy, capsys, tiny_args, damage):
    folder = checkpoint_dir(run_copy)
    if damage == "folder removed":
        shutil.rmtree(folder)
    else:
        for path in folder.iterdir():
            path.unlink()
    before = sorted(p.relative_to(run_copy.parent) for p in run_copy.parent.rglob("*"))
    _expect_error(capsys, [*tiny_args, "--out", str(run_copy), "--resume"], "missing or holds no checkpoint", [run_copy.parent])
    assert sorted(p.relative_to(run_copy.parent) for p in run_copy.parent.rglob("*")) == before


def test_resume_from_a_checkpoint_ahead_of_the_trajectory(run_copy, tiny_run, tiny_args):
    """Killed after a checkpoint landed but before the trajectory file was rewritten (or
    before the first one was written): the checkpoint's metrics rebuild the run."""
    for path in list_checkpoints(run_copy)[1:]:
        path.unlink()  # latest checkpoint: update 2
    run_copy.unlink()
    assert main(["train", *tiny_args, "--out", str(run_copy), "--resume"]) == 0
    resumed, uninterrupted = open_trajectory(run_copy), open_trajectory(tiny_run)
    for name in uninterrupted.data_vars:
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values, err_msg=name)


# ---------------------------------------------------------------------------
# bad inputs: one line, exit 2, nothing overwritten
# ---------------------------------------------------------------------------


def _snapshot(paths):
    files = []
    for path in paths:
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in files}


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


def test_existing_output_is_refused(tmp_path, capsys, tiny_args):
    out = tmp_path / "existing.nc"
    out.write_bytes(b"precious")
    _expect_error(capsys, [*tiny_args, "--out", str(out)], "already exists", [out])


def test_existing_checkpoints_are_refused(run_copy, capsys, tiny_args):
    run_copy.unlink()  # the checkpoints of a run whose trajectory file is gone
    folder = checkpoint_dir(run_copy)
    _expect_error(capsys, [*tiny_args, "--out", str(run_copy)], f"{folder} already holds 3 checkpoints", [folder])
    _expect_error(capsys, [*tiny_args, "--out", str(run_copy)], "pass --resume to continue it or --force", [folder])


def test_outputs_that_would_destroy_an_input_are_refused_even_with_force(tmp_path):
    trajectory, other = tmp_path / "run.nc", tmp_path / "other.nc"
    trajectory.write_bytes(b"data")
    refuse_run_outputs([other], force=False, inputs=[trajectory])  # a fresh output next to an input is fine
    refuse_run_outputs([trajectory], force=True)  # --force replaces an existing output
    with pytest.raises(ValuedynError, match="already exists; pass --force"):
        refuse_run_outputs([trajectory], force=False)
    with pytest.raises(ValuedynError, match="is also an input"):
        refuse_run_outputs([tmp_path / "." / "run.nc"], force=True, inputs=[trajectory])
    with pytest.raises(ValuedynError, match="written twice"):
        refuse_run_outputs([other, tmp_path / "sub" / ".." / "other.nc"], force=True)


def test_resume_with_other_config_names_the_fields(run_copy, capsys, tiny_args):
    protected = [run_copy, checkpoint_dir(run_copy)]
    _expect_error(capsys, [*tiny_args, "--out", str(run_copy), "--resume", "--lr", "0.001", "--gamma", "0.9"], "lr: stored", protected)
    _expect_error(capsys, [*tiny_args, "--out", str(run_copy), "--resume", "--gamma", "0.9"], "gamma: stored 0.99, given 0.9", protected)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_checkpoint_is_refused(run_copy, capsys, tiny_args, damage):
    latest = list_checkpoints(run_copy)[-1]
    data = bytearray(latest.read_bytes())
    if damage == "flip":
        data[-100] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    latest.write_bytes(bytes(data))
    protected = [run_copy, checkpoint_dir(run_copy)]
    _expect_error(capsys, [*tiny_args, "--out", str(run_copy), "--resume"], "is corrupt", protected)
    with pytest.raises(ValuedynError, match="corrupt"):
        load_checkpoint(latest)


def test_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValuedynError, match="does not exist"):
        load_checkpoint(tmp_path / "update_00000001.ckpt")


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert field.metadata["help"], field.name
        assert "--" + field.name.replace("_", "-") in text
