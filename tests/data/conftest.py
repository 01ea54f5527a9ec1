"""One tiny real training run, made once per test session and read by the trainer and probe tests.

Training compiles the Craftax PPO program, most of a minute on CPU; the trainer tests
and the probe tests read the same run instead of each training their own. Under
pytest-xdist every worker is its own process, so the run is made in a folder the
workers of one session share (the session's temporary root), under a file lock: the
first worker that needs it trains, the others wait for it and reuse it.

The run is read-only: a test that writes beside it takes a private copy
(``run_copy``); the session checks at teardown that no test changed it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from valuedyn.data import TrainConfig, checkpoint_dir

#: 8 updates of 8 envs x 16 steps, 2 seeds, chunks of 2 updates: checkpoints at updates
#: 2, 4 and 8 (log-spaced, plus the last), three for the probe's essential dynamics.
TINY_CONFIG = TrainConfig(
    num_envs=8, num_steps=16, layer_size=16, num_layers=1, seeds=2, total_steps=8 * 8 * 16, chunk_updates=2,
    update_epochs=1, progress=False,
)
#: The same run as command-line flags (the tests check that they give TINY_CONFIG).
TINY_ARGS = (
    "--num-envs", "8", "--num-steps", "16", "--layer-size", "16", "--num-layers", "1", "--seeds", "2",
    "--total-steps", "1024", "--chunk-updates", "2", "--update-epochs", "1", "--no-progress",
)


@pytest.fixture(scope="session")
def tiny_config() -> TrainConfig:
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_args() -> list[str]:
    return list(TINY_ARGS)


def _shared_root(tmp_path_factory) -> Path:
    """A folder of this session that every xdist worker of it sees (pytest-N/, not pytest-N/popen-gwK/)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The finished tiny run's trajectory file; its checkpoints are in <file>.ckpt/. Read-only."""
    from valuedyn.cli import main

    root = _shared_root(tmp_path_factory)
    folder = root / ("tiny_run_" + hashlib.sha256(" ".join(TINY_ARGS).encode()).hexdigest()[:12])
    run = folder / "run.nc"
    with open(root / (folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if training fails
        if not (folder / "complete").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way left this
            folder.mkdir()
            assert main(["train", *TINY_ARGS, "--out", str(run)]) == 0
            (folder / "complete").write_text("")
    files = [run, *sorted(checkpoint_dir(run).iterdir())]
    before = _digest(files)
    yield run
    assert _digest(files) == before and sorted(checkpoint_dir(run).iterdir()) == files[1:], (
        "a test changed the shared tiny run; copy it with the run_copy fixture before writing beside it"
    )


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the tiny run (trajectory file and checkpoints) that a test may change."""
    target = tmp_path / "run.nc"
    shutil.copyfile(tiny_run, target)
    shutil.copytree(checkpoint_dir(tiny_run), checkpoint_dir(target))
    return target
