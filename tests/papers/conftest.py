"""Fixtures for the papers tests: a small, schema-valid synthetic trajectory file.

The trajectory is generated from known curves (an unlock probability that rises, and a
per-episode placement count that overshoots and decays toward one), with counts drawn
per episode, so its placement histogram, event totals and unlocks are consistent the
way the trainer's are. It is built here, in the test, so the tests never depend on
which real runs happen to be shipped in data/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ACHIEVEMENTS = ("collect_wood", "place_table", "place_plant", "eat_plant", "collect_diamond")
EVENTS = ("place_plant", "place_table", "collect_wood", "collect_sapling")
ACTIONS = ("noop", "left", "right", "up", "down", "do", "place_plant")
PLACEMENTS = ("place_plant", "place_table")  # labelled like the trainer's placement events
COUNT_BINS = 8  # bins 0..6 exact, bin 7 = "7 or more"


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_trajectory_dataset(num_seeds: int = 2, num_updates: int = 40, episodes_per_update: int = 12, seed: int = 0):
    """An xarray Dataset that passes ``validate_trajectory``; deterministic in ``seed``."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    tau = np.linspace(0.0, 1.0, num_updates)
    # learning curves per achievement: (onset tau, steepness); None = never learned
    onset = {"collect_wood": 0.08, "place_table": 0.35, "place_plant": 0.3, "eat_plant": None, "collect_diamond": None}
    shape = (num_seeds, num_updates)
    episodes = rng.poisson(episodes_per_update, size=shape).astype(np.int64)
    episodes[:, 0] = 0  # an update with no finished episode: the denominator is 0, nothing is NaN
    unlocks = np.zeros(shape + (len(ACHIEVEMENTS),), dtype=np.int64)
    events = np.zeros(shape + (len(EVENTS),), dtype=np.int64)
    histogram = np.zeros(shape + (len(PLACEMENTS), COUNT_BINS), dtype=np.int64)
    for s in range(num_seeds):
        shift = 0.04 * s
        for u in range(num_updates):
            n = episodes[s, u]
            for a, name in enumerate(ACHIEVEMENTS):
                p = 0.02 if onset[name] is None else 0.02 + 0.93 * _sigmoid((tau[u] - onset[name] - shift) / 0.05)
                unlocks[s, u, a] = rng.binomial(n, p)
            # plants placed per episode: overshoot after discovery, decay toward one
            t_plant = onset["place_plant"] + shift
            since = max(0.0, tau[u] - t_plant)
            learned = _sigmoid((tau[u] - t_plant) / 0.05)
            mean_plants = learned * (1.0 + 4.0 * since / 0.1 * np.exp(1.0 - since / 0.1))
            plants = rng.poisson(mean_plants, size=n)
            tables = rng.poisson(0.9 * _sigmoid((tau[u] - onset["place_table"] - shift) / 0.05), size=n)
            for p, counts in enumerate((plants, tables)):
                histogram[s, u, p] = np.bincount(np.minimum(counts, COUNT_BINS - 1), minlength=COUNT_BINS)
            # an episode that placed a plant unlocked place_plant
            unlocks[s, u, ACHIEVEMENTS.index("place_plant")] = int(np.sum(plants > 0))
            unlocks[s, u, ACHIEVEMENTS.index("place_table")] = int(np.sum(tables > 0))
            events[s, u] = (plants.sum(), tables.sum(), rng.poisson(5.0 * n), rng.poisson(1.5 * n))
    actions = rng.poisson(40.0, size=shape + (len(ACTIONS),)).astype(np.int64)
    actions *= (episodes > 0)[..., None]
    lengths = np.where(episodes > 0, episodes * 200, 0).astype(np.int64)
    data_vars = {
        "episodes_finished": (("seed", "update"), episodes),
        "achievement_unlocks": (("seed", "update", "achievement"), unlocks),
        "event_total": (("seed", "update", "event"), events),
        "action_count": (("seed", "update", "action"), actions),
        "return_sum": (("seed", "update"), unlocks.sum(axis=-1).astype(np.float32)),
        "length_sum": (("seed", "update"), lengths),
        "placement_histogram": (("seed", "update", "placement", "count_bin"), histogram),
    }
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        data_vars[name] = (("seed", "update"), rng.uniform(0.0, 1.0, size=shape).astype(np.float32))
    ds = xr.Dataset(
        data_vars,
        coords={
            "seed": np.arange(num_seeds),
            "update": np.arange(num_updates),
            "env_step": ("update", (np.arange(num_updates, dtype=np.int64) + 1) * 4096),
            "achievement": list(ACHIEVEMENTS),
            "event": list(EVENTS),
            "action": list(ACTIONS),
            "placement": list(PLACEMENTS),
            "count_bin": np.arange(COUNT_BINS),
        },
        attrs={
            "config": json.dumps({"synthetic": True, "seed": seed}),
            "valuedyn_version": "test",
            "git_commit": "test",
            "craftax_version": "test",
            "jax_version": "test",
            "device": "cpu",
            "wall_time_s": 0.0,
            "steps_per_second": 0.0,
        },
    )
    return ds


def write_trajectory(path: Path, **kwargs) -> Path:
    from valuedyn._io import write_dataset_atomic
    from valuedyn.data import validate_trajectory

    ds = make_trajectory_dataset(**kwargs)
    validate_trajectory(ds, source="synthetic")
    write_dataset_atomic(ds, path)
    return path


@pytest.fixture(scope="session")
def synthetic_trajectory(tmp_path_factory) -> Path:
    """Path of a small synthetic trajectory file (2 seeds x 40 updates)."""
    return write_trajectory(tmp_path_factory.mktemp("trajectory") / "synthetic.nc")


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory) -> tuple[Path, Path]:
    """(report folder, trajectory) of the one tiny report the papers tests share
    (report_helpers.py: built once per session, across xdist workers)."""
    from report_helpers import shared_report

    return shared_report(tmp_path_factory, write_trajectory)
