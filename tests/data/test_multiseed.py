"""Multi-seed training on CPU at the default network size (it used to wait forever).

The seeds' networks are initialised in one program vmapped over seeds. The orthogonal
initialiser's QR, batched over seeds, made a batched LAPACK call that deadlocks XLA's CPU
thread pool (see valuedyn.data._networks). These tests pin the cause (no batched LAPACK
call in the compiled init, the initialiser's values unchanged) and train 2 and 3 seeds at
the default layer size in a child process, so that a hang fails here with a message.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from valuedyn.data import TrainConfig, open_trajectory
from valuedyn.data._networks import orthogonal
from valuedyn.data._train import make_train, seed_keys

#: A LAPACK custom call in lowered StableHLO and the shapes of its operands.
LAPACK_CALL = re.compile(r"custom_call @(lapack_\w+)\((?:[^)]*)\)[^\n]*?: \(([^)]*)\)")


@pytest.mark.parametrize("shape", [(1345, 512), (512, 512), (512, 17), (16, 64), (4, 3, 5)])
def test_orthogonal_initialiser_equals_jax_and_vmaps_per_seed(shape):
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    vmapped = np.asarray(jax.jit(jax.vmap(lambda key: orthogonal(1.4)(key, shape)))(keys))
    reference = np.stack([np.asarray(jax.nn.initializers.orthogonal(1.4)(key, shape)) for key in keys])
    np.testing.assert_array_equal(vmapped, reference)
    matrix = reference[0].reshape(-1, shape[-1])
    gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
    np.testing.assert_allclose(gram, 1.4**2 * np.eye(len(gram)), atol=1e-4)


def _lapack_calls(lowered_text: str) -> list[tuple[str, str]]:
    return LAPACK_CALL.findall(lowered_text)


def _batched(calls) -> list[tuple[str, str]]:
    """The calls with an operand of rank > 2 (a batch of matrices)."""
    return [(target, operands) for target, operands in calls if any(t.count("x") > 2 for t in operands.split(","))]


@pytest.mark.parametrize("recurrent", [False, True])
def test_training_program_makes_no_batched_lapack_call(recurrent):
    config = TrainConfig(seeds=3, num_envs=8, num_steps=16, total_steps=256, recurrent=recurrent, progress=False)
    program = make_train(config)
    keys = seed_keys(config)
    init_calls = _lapack_calls(jax.jit(program.init).lower(keys).as_text())
    # a QR (geqrf + orgqr) per distinct matrix shape (the lowered text holds each once):
    # the check is not vacuous
    assert len(init_calls) >= 2 * 3, init_calls
    assert not _batched(init_calls), f"batched LAPACK calls in the init program: {_batched(init_calls)}"
    runner = jax.eval_shape(program.init, keys)
    chunk_calls = _lapack_calls(jax.jit(program.chunk, static_argnums=1).lower(runner, 1).as_text())
    assert not _batched(chunk_calls), f"batched LAPACK calls in the chunk program: {_batched(chunk_calls)}"


@pytest.fixture(scope="module")
def default_size_runs(tmp_path_factory):
    """``valuedyn train`` at the default layer size with 2 and 3 seeds, two processes at once
    (each compile is mostly one core's work); a run that does not finish fails the tests."""
    folder = tmp_path_factory.mktemp("multiseed")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    started = {}
    for seeds in (2, 3):
        out = folder / f"seeds{seeds}.nc"
        argv = [
            sys.executable, "-m", "valuedyn", "train", "--seeds", str(seeds), "--num-envs", "8", "--num-steps", "16",
            "--total-steps", "256", "--update-epochs", "1", "--no-progress", "--out", str(out),
        ]
        started[seeds] = (subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out)
    runs = {}
    try:
        for seeds, (process, out) in started.items():
            try:
                output, _ = process.communicate(timeout=540)
            except subprocess.TimeoutExpired:
                pytest.fail(f"valuedyn train --seeds {seeds} at the default layer size did not finish in 540 s (the multi-seed CPU hang?)")
            assert process.returncode == 0, output[-2000:]
            runs[seeds] = open_trajectory(out)
    finally:
        for process, _ in started.values():
            if process.poll() is None:
                process.kill()
    return runs


@pytest.mark.parametrize("seeds", [2, 3])
def test_multi_seed_training_at_default_layer_size(default_size_runs, seeds):
    ds = default_size_runs[seeds]
    config = TrainConfig()
    assert ds.sizes["seed"] == seeds and ds.sizes["update"] == 2
    stored = ds.attrs["config"]
    assert f'"layer_size": {config.layer_size}' in stored and f'"num_layers": {config.num_layers}' in stored
    actions = ds["action_count"].values  # [seed, update, action]
    assert np.all(actions.sum(-1) == 8 * 16)
    # independent agents: no two seeds chose the same actions
    flat = actions.reshape(seeds, -1)
    assert len({row.tobytes() for row in flat}) == seeds


def test_seed_does_not_depend_on_the_number_of_seeds(default_size_runs):
    two, three = default_size_runs[2], default_size_runs[3]
    for name in ("action_count", "episodes_finished", "event_total"):
        np.testing.assert_array_equal(three[name].values[:2], two[name].values, err_msg=name)
