"""The one tiny report the papers tests share (real NUTS through valuedyn.fitting).

Built once per test session, and once across pytest-xdist workers: the first worker to
ask builds it under a file lock in the session's shared temporary folder, the others
wait and read it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

BEHAVIOURS = ("event:place_plant",)
MODELS = ("logistic_onset", "overshoot")
TINY = ["--chains", "2", "--draws", "40", "--warmup", "40", "--max-seeds", "2"]


def report_args(trajectory: Path, out: Path) -> list[str]:
    """The command line of the shared report (and of a rerun into the same folder)."""
    return ["report", str(trajectory), "--out", str(out), "--behaviours", *BEHAVIOURS, "--models", *MODELS, *TINY]


def shared_report(tmp_path_factory, write_trajectory) -> tuple[Path, Path]:
    """(report folder, its trajectory file), built once for all workers of the session."""
    from valuedyn.cli import main

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    folder = base / "shared_tiny_report"
    folder.mkdir(exist_ok=True)
    trajectory, out = folder / "synthetic.nc", folder / "report"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (out / "report.md").is_file():
                write_trajectory(trajectory)
                assert main(report_args(trajectory, out)) == 0
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out, trajectory
