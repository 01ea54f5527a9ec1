"""The environmental-memory runs shipped in data/memory/ (issue 33 point 3): GRU policies of
three hidden sizes x 2 seeds, each with the memory probe of its checkpoints beside it.

Read as the report reads them: the folder stands for its trajectories (``valuedyn report
data/memory``), the probe files are never trajectories, and the conditions are the hidden
sizes the probes' stored training configs name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import valuedyn.data
from valuedyn._errors import ValuedynError
from valuedyn.data import open_trajectory
from valuedyn.papers._report_inputs import resolve_trajectories

FOLDER = Path(valuedyn.data.__file__).parent / "memory"
SIZES = (16, 64, 256)


def test_the_folder_stands_for_its_three_trajectories_and_never_for_a_probe_file():
    runs = resolve_trajectories([str(FOLDER)])
    assert [p.name for p in runs] == sorted(f"craftax_classic_2seeds_120updates_256envs_gru{h}.nc" for h in SIZES)
    for run in runs:
        assert (run.parent / f"{run.stem}.memory.nc").is_file()


def test_the_probes_cover_each_run_and_their_conditions_are_the_hidden_sizes():
    from valuedyn.fitting import group_conditions, memory_train_config, open_memory, training_config

    runs = resolve_trajectories([str(FOLDER)])
    memories = [open_memory(run.parent / f"{run.stem}.memory.nc") for run in runs]
    configs = [memory_train_config(m) for m in memories]
    for run, memory, config in zip(runs, memories, configs):
        trajectory = open_trajectory(run)
        assert config == training_config(trajectory.attrs)  # the probe names the run it probed
        assert config["recurrent"] and trajectory.sizes["seed"] == memory.sizes["seed"] == 2
        updates = np.asarray(memory["update"].values)
        assert memory.sizes["checkpoint"] >= 10 and updates[0] <= 12
        assert updates[-1] == int(trajectory["update"].values[-1]) == 120
        scored = np.asarray(memory["memory_lags_scored"].transpose("seed", "checkpoint", "feature").values)
        assert np.all(scored.sum(axis=-1) > 0)  # every checkpoint of every seed scores lags of some feature
    conditions, differing = group_conditions([str(r) for r in runs], configs)
    assert differing == ("gru_hidden",)
    assert sorted(c.name for c in conditions) == sorted(f"gru_hidden={h}" for h in SIZES)


def test_a_folder_without_trajectories_is_refused(tmp_path):
    (tmp_path / "run.memory.nc").write_bytes(b"")
    with pytest.raises(ValuedynError, match="holds no trajectory file"):
        resolve_trajectories([str(tmp_path)])


def test_the_report_section_orders_the_hidden_sizes_and_fits_no_isolated_horizon(tmp_path):
    """No feature of these runs has a horizon above 0 at two checkpoints of one seed (only
    single-checkpoint crossings of the margin), so the section draws them and fits nothing."""
    from valuedyn.papers import ReportConfig
    from valuedyn.papers._report_memory import report_memory

    runs = resolve_trajectories([str(FOLDER)])  # file-name order: gru16, gru256, gru64
    result = report_memory({run: None for run in runs}, ReportConfig(), tmp_path)
    assert [c["name"] for c in result.conditions] == [f"gru_hidden={h}" for h in SIZES]
    assert result.features and not result.fits and not result.errors
    assert "single checkpoints only" in result.text
