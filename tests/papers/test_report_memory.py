"""The report's memory section (issue 33.5): with memory probes beside the trajectories.

Two synthetic trajectories whose stored training configs differ only in ``gru_hidden`` (8
and 64), each with a simulated memory probe beside it (``<stem>.memory.nc``, the variables
``valuedyn probe --memory`` writes) whose water_direction horizon follows a known
logistic curve, the larger core's earlier and higher. One tiny report (real NUTS, 2 chains
x 40 draws: the fit is not meant to pass the gate here; the recovery and the effects are
tested in tests/fitting/test_memory_fit.py) must hold the section: the figure of the
horizon over training per hidden size, the horizons at the first and last checkpoint, the
conditions fit of memory:water_direction and its sentences; the memory files are not read
as trajectories.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.papers.conftest import make_trajectory_dataset
from valuedyn._config import config_to_json
from valuedyn._io import write_dataset_atomic
from valuedyn.data import TrainConfig

#: the report fits 2 single fits and 1 conditions fit, each compiled: on 2 busy cores (a
#: training campaign beside) the module took more than the suite's 600 s
pytestmark = pytest.mark.timeout(1800)

SIZES = {8: (0.6, 0.2), 64: (0.3, 0.6)}  # gru size -> (onset t0, final horizon fraction)
TINY = ["--chains", "2", "--draws", "40", "--warmup", "40", "--max-seeds", "2", "--no-refit-remedy",
        "--no-choose-deviation"]


@pytest.fixture(scope="module")
def memory_report(tmp_path_factory):
    from valuedyn.cli import main
    from valuedyn.fitting.inference._select_memory import memory_file_for, simulate_memory
    from valuedyn.models import get_model

    folder = tmp_path_factory.mktemp("memory_report")
    trajectories, memory = [], {}
    for index, (size, (onset, ceiling)) in enumerate(SIZES.items()):
        config = config_to_json(dataclasses.replace(TrainConfig(), recurrent=True, gru_hidden=size))
        trajectory = folder / f"gru{size}.nc"
        ds = make_trajectory_dataset(num_updates=24, seed=index)
        ds.attrs["config"] = config
        write_dataset_atomic(ds, trajectory)
        params = {"t0": np.full(2, onset), "k": np.full(2, 18.0), "floor": np.full(2, 0.02), "ceiling": np.full(2, ceiling)}
        probe = simulate_memory(get_model("logistic_onset"), params, num_lags=16, train_config=config,
                                updates=np.arange(1, 24, 2), steps_per_update=4096, seed=index)
        memory[size] = probe
        write_dataset_atomic(probe, memory_file_for(trajectory))
        trajectories.append(trajectory)
    out = folder / "report"
    assert main(["report", *map(str, trajectories), "--out", str(out), "--behaviours", "event:place_plant",
                 "--models", "logistic_onset", *TINY]) == 0
    return out, memory


def test_the_report_has_a_memory_section_with_its_figure_and_fit(memory_report):
    out, memory = memory_report
    markdown = (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    section = markdown.split("## Memory horizon over training", 1)[1]
    assert "### memory:water_direction" in section
    assert "![memory_horizon_water_direction](figures/memory_horizon_water_direction.png)" in section
    assert (out / "figures" / "memory_horizon_water_direction.png").stat().st_size > 1000
    assert (out / "figures" / "memory_horizon_water_direction.pdf").is_file()
    # only the planted feature has a horizon above 0, so only it is fitted
    assert report["memory"]["features"] == ["water_direction"]
    assert report["memory"]["differing_settings"] == ["gru_hidden"]
    assert [c["name"] for c in report["memory"]["conditions"]] == ["gru_hidden=8", "gru_hidden=64"]
    fit = report["memory"]["fits"]["memory:water_direction"]
    assert fit["model"] == "logistic_onset" and (out / fit["file"]).is_file()
    assert fit["sentences"] and all(s in section for s in fit["sentences"])
    # the table's horizons are the data's (mean over the seeds at the first and last checkpoint)
    for row in report["memory"]["horizons"]:
        size = int(row["condition"].split("=")[1])
        horizon = memory[size]["memory_horizon"].sel(feature="water_direction").values
        assert row["first"] == pytest.approx(horizon[:, 0].mean()) and row["last"] == pytest.approx(horizon[:, -1].mean())
        assert f"{row['last']:.1f} of 16" in section


def test_memory_files_are_not_read_as_trajectories(memory_report):
    out, _ = memory_report
    report = json.loads((out / "report.json").read_text())
    assert sorted(t["path"] for t in report["trajectories"]) == ["gru64.nc", "gru8.nc"]
    assert sorted(report["memory"]["files"]) == ["gru64.memory.nc", "gru8.memory.nc"]


def test_no_memory_section_without_probes(tmp_path):
    from valuedyn.papers._report_memory import memory_figures, memory_json, memory_markdown_section, report_memory

    trajectory = tmp_path / "alone.nc"
    write_dataset_atomic(make_trajectory_dataset(num_updates=6), trajectory)
    result = report_memory({trajectory: None}, None, tmp_path / "fits")
    assert result is None
    assert memory_markdown_section(result) == [] and memory_figures(result) == {} and memory_json(result, tmp_path) is None


def test_a_horizon_at_one_checkpoint_alone_is_drawn_not_fitted():
    """The campaign's GRU runs: a horizon of 28 lags at one checkpoint of 11 and 0 at the
    others is what chance crossings of the margin look like, not a development to fit."""
    from valuedyn.fitting.inference._select_memory import simulate_memory
    from valuedyn.models import get_model
    from valuedyn.papers._report_memory import MIN_CHECKPOINTS_WITH_MEMORY, _shown_features

    params = {"t0": np.full(2, 0.3), "k": np.full(2, 18.0), "floor": np.full(2, 0.02), "ceiling": np.full(2, 0.6)}
    developing = simulate_memory(get_model("logistic_onset"), params, num_lags=16, updates=np.arange(1, 24, 2), seed=0)
    spike = developing.copy(deep=True)
    horizon = spike["memory_horizon"]
    horizon[:] = 0
    horizon.loc[{"seed": 0, "feature": "tree_seen"}] = np.where(np.arange(horizon.sizes["checkpoint"]) == 5, 14, 0)
    shown, fitted = _shown_features([spike])
    assert shown == ["tree_seen"] and fitted == []
    # the same spike at a second checkpoint of that seed is a development
    horizon.loc[{"seed": 0, "checkpoint": 6, "feature": "tree_seen"}] = 9
    assert MIN_CHECKPOINTS_WITH_MEMORY == 2 and _shown_features([spike]) == (["tree_seen"], ["tree_seen"])
    # water_direction develops in the simulated probe (0 early, rising later): fitted
    assert _shown_features([developing])[1] == ["water_direction"]
