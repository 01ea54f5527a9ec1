"""Conditions of one campaign trained to different lengths are compared on the updates they share."""

from __future__ import annotations

from tests.papers.conftest import make_trajectory_dataset
from valuedyn.papers._report_conditions import common_updates


def test_equal_grids_need_no_window():
    a, b = make_trajectory_dataset(num_updates=30), make_trajectory_dataset(num_updates=30, seed=1)
    assert common_updates([a, b]) == (None, "")


def test_a_shorter_run_sets_the_common_window():
    a, b = make_trajectory_dataset(num_updates=30), make_trajectory_dataset(num_updates=18, seed=1)
    window, text = common_updates([a, b])
    first, last = (int(x) for x in window.split(":"))
    assert (first, last) == (int(a["update"][0]), int(a["update"][17]))
    assert "30, 18 updates" in text and "18 updates they all have" in text


def test_grids_that_differ_at_the_start_get_no_window():
    a, b = make_trajectory_dataset(num_updates=30), make_trajectory_dataset(num_updates=18, seed=1)
    b = b.assign_coords(env_step=("update", b["env_step"].values * 2))
    window, text = common_updates([a, b])
    assert window is None and "do not share" in text
