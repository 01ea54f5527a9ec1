"""A fit's kernels are reused across processes (issue 31): a second fresh ``valuedyn fit``
with the same compilation cache folder compiles nothing new, and every fit file records
where its time went (``timings``).

Two real subprocesses (tiny logistic_onset fit, 2 chains x (40 + 40)), one empty cache
folder of their own; compiled once per module.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from valuedyn.fitting.inference._store import fit_attrs, load_fit
from valuedyn.fitting.inference._timing import PHASES

FIT_ARGS = ["--model", "logistic_onset", "--behaviour", "unlock:place_table", "--observation", "binomial",
            "--chains", "2", "--warmup", "40", "--draws", "40", "--min-draws", "0", "--no-progress", "--verbose"]


def _fit_in_fresh_process(trajectory, out, cache):
    env = dict(os.environ, VALUEDYN_JAX_CACHE=str(cache))
    command = [sys.executable, "-c", "import sys; from valuedyn.cli import entry; sys.exit(entry())", "fit",
               str(trajectory), "--out", str(out), *FIT_ARGS]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def two_processes(logistic_file, tmp_path_factory):
    """(first, second): (stdout, timings record, cache entries after it) of two fresh
    processes fitting the same data with one cache folder, empty before the first."""
    folder = tmp_path_factory.mktemp("compile_cache")
    cache = folder / "jax"
    runs = []
    for name in ("first", "second"):
        out = folder / f"{name}.nc"
        stdout = _fit_in_fresh_process(logistic_file, out, cache)
        runs.append((stdout, fit_attrs(load_fit(out))["timings"], sorted(os.listdir(cache))))
    return runs


def test_second_process_compiles_nothing_new(two_processes):
    (_, first, entries_first), (_, second, entries_second) = two_processes
    # the first process compiled the fit's kernels (MAP gradient, Hessian, NUTS init and
    # chunk, outputs, the host's small conversions) into the empty folder
    assert first["cache_misses"] > 0 and len(entries_first) >= first["cache_misses"] - 1
    # the second found every one of them there and wrote nothing
    assert second["cache_requests"] >= 5
    assert second["cache_misses"] == 0, second
    assert entries_second == entries_first
    # every read and write of the shared folder went through JAX's file lock (a size limit is
    # set): unlocked, JAX writes entries in place, where a process sharing the folder can read them half-written
    assert ".lockfile" in entries_first


def test_fit_file_records_where_its_time_went(two_processes):
    for stdout, timings, _ in two_processes:
        assert set(timings["seconds"]) == set(PHASES)
        assert all(value >= 0 for value in timings["seconds"].values())
        assert timings["total"] == pytest.approx(sum(timings["seconds"].values()), abs=0.01)
        for phase in ("imports_reading", "map_laplace", "warmup", "sampling", "outputs", "writing"):
            assert timings["seconds"][phase] > 0, phase
        assert timings["compiles"] > 0
        # --verbose prints the record
        assert "time: " in stdout and "warmup" in stdout and "missed the persistent cache" in stdout
