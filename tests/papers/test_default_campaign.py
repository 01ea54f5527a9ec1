"""The default report reads the CPU campaign shipped in data/campaign/ (issue 29, point 2):
its two conditions of training, one update grid, complete, with provenance; never a probe
file beside them, and not the 1M-step GPU run (update 16 ends before any decay, other grid)."""

from __future__ import annotations

import json

import numpy as np

from valuedyn.data import open_trajectory
from valuedyn.fitting import group_conditions, training_config
from valuedyn.papers._report_conditions import common_updates
from valuedyn.papers._report_inputs import default_trajectories, is_trajectory_name


def test_the_default_report_reads_the_campaign_s_two_conditions_on_one_grid():
    paths = default_trajectories()
    assert paths and all(p.parent.name == "campaign" and is_trajectory_name(p) for p in paths)
    assert not any("1M" in p.name for p in paths)
    datasets = [open_trajectory(p) for p in paths]
    configs = [training_config(ds.attrs) for ds in datasets]
    groups, differing = group_conditions([str(p) for p in paths], configs)
    assert len(groups) == 2 and differing == ("reward_every",), differing
    assert sorted(json.dumps(g.settings["reward_every"]) for g in groups) == ['["place_plant"]', "[]"]
    assert common_updates(datasets) == (None, "")  # one grid: compared on every update
    for ds in datasets:
        assert ds.sizes["seed"] >= 4 and ds.sizes["update"] >= 400
        assert int(ds.attrs["complete"]) == 1 and int(ds.attrs["updates_completed"]) == ds.sizes["update"]
        assert ds.attrs["git_commit"] not in ("", "unknown")
        config = training_config(ds.attrs)
        assert not config["anneal_lr"] and config["num_envs"] == 256 and config["num_steps"] == 64
        assert np.all(np.diff(ds["env_step"].values, axis=-1) > 0)


def test_the_motif_paragraph_says_what_agents_do_with_plants_and_how_plants_are_paid():
    import re

    from valuedyn.papers._report_trust import plant_uses

    default, every = (plant_uses(open_trajectory(p)) for p in default_trajectories())
    assert "only the first plant of an episode is rewarded" in default
    assert "every plant placed is rewarded" in every
    placed = [float(re.search(r"([\d.]+) place_plant", text).group(1)) for text in (default, every)]
    assert placed[1] > 3 * placed[0]  # paying every plant: several times the plants per episode
    assert re.search(r"[\d.]+ eat_plant", default) and re.search(r"[\d.]+ collect_sapling", every)
