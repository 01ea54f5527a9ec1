"""valuedyn._io: a process killed while writing an output never leaves a half-written file at its path.

Every file valuedyn writes (trajectories, checkpoints, fit files via fitting's save_fit,
reports) goes through ``atomic_path``; the child processes here are SIGKILLed in the
middle of such a write.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from valuedyn._io import write_dataset_atomic

KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from valuedyn._io import atomic_path

    with atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"half of a new file")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("existing", [b"the old complete file", None])
def test_kill_during_an_atomic_write_leaves_the_old_file_or_none(tmp_path, existing):
    target = tmp_path / "out.nc"
    if existing is not None:
        target.write_bytes(existing)
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    if existing is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == existing
    # what the kill left is a hidden temporary file beside it, never the output's name
    assert [p.name for p in tmp_path.iterdir() if p != target and not p.name.startswith(".out.nc.")] == []


def test_write_dataset_atomic_round_trips_and_replaces(tmp_path):
    target = tmp_path / "data.nc"
    first = xr.Dataset({"counts": (("seed", "update"), np.arange(6, dtype=np.int32).reshape(2, 3))})
    write_dataset_atomic(first, target)
    write_dataset_atomic(first * 2, target)
    with xr.open_dataset(target, engine="h5netcdf") as back:
        np.testing.assert_array_equal(back["counts"].values, 2 * first["counts"].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.nc"]


def test_full_folder_is_one_line_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    from valuedyn._errors import ValuedynError
    from valuedyn._io import atomic_path

    target = tmp_path / "out.nc"
    target.write_bytes(b"old")
    with pytest.raises(ValuedynError, match=r"cannot write .*out\.nc \(No space left on device\)"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.nc"]


def test_read_only_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    import os

    from valuedyn._errors import ValuedynError
    from valuedyn._io import refuse_overwrite

    real_access = os.access
    # root may write anywhere; a read-only folder is simulated where access() is asked
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real_access(path, mode))
    with pytest.raises(ValuedynError, match="read-only or not writable"):
        refuse_overwrite(tmp_path / "sub" / "out.nc", force=False)


def test_path_sha256_of_a_folder_changes_with_any_file_and_its_name(tmp_path):
    from valuedyn._io import file_sha256, path_sha256

    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "events.1").write_bytes(b"a")
    (run / "sub" / "events.2").write_bytes(b"b")
    first = path_sha256(run)
    assert path_sha256(run / "events.1") == file_sha256(run / "events.1")  # a file: its own hash
    (run / "sub" / "events.2").write_bytes(b"c")
    second = path_sha256(run)
    (run / "sub" / "events.2").rename(run / "sub" / "events.3")
    assert len({first, second, path_sha256(run)}) == 3
