"""The diversity figure from saved data: per-seed diversity, first-found marks, probe contexts."""

from __future__ import annotations

import numpy as np
import xarray as xr

from valuedyn.fitting.analyses._diversity import first_found_updates, simulate_diversity_trajectory
from valuedyn.papers._diversity_figures import contexts_distinguished, plot_diversity
from valuedyn.papers._style import render_figure


def _probe(n_seeds: int = 2, n_checkpoints: int = 3):
    """A probe file's context variables: 2 action rows, 3 event contexts possible in 10 states each."""
    count = np.zeros((n_seeds, n_checkpoints, 5), np.int32)
    count[:, :, 0:2] = 10  # plain actions never count as contexts
    count[0, 1, 2] = 1  # exactly the 10 % share: distinguished
    count[0, 2, 2:5] = [5, 9, 0]
    count[1, 2, 4] = 10
    return xr.Dataset(
        {"context_count": (("seed", "checkpoint", "behaviour"), count),
         "context_states": (("behaviour",), np.array([40, 40, 10, 10, 10], np.int32))},
        coords={"behaviour": ["action_noop", "action_do", "place_plant", "place_table", "eat_cow"],
                "behaviour_kind": ("behaviour", ["action", "action", "event", "event", "event"]),
                "env_step": ("checkpoint", np.array([0, 1000, 2000]))},
    )


def test_contexts_distinguished_counts_event_contexts_above_the_share():
    steps, counts = contexts_distinguished(_probe())
    np.testing.assert_array_equal(steps, [0, 1000, 2000])
    np.testing.assert_array_equal(counts, [[0, 1, 2], [0, 0, 1]])


def test_diversity_figure_marks_found_rewards_and_probe_contexts():
    t = np.linspace(0.0, 1.0, 30)
    actions = np.stack([6 + 10 * np.exp(-t / 0.4)] * 2)
    events = np.stack([3 + 4 / (1 + np.exp(-(t - 0.3) * 20))] * 2)
    ds = simulate_diversity_trajectory(actions, events, masked_updates=2, seed=3)
    found = first_found_updates(ds)
    assert found  # the simulated place_table switches on mid-run
    fig = plot_diversity(ds, probe=_probe())
    axes = fig.axes
    assert len(axes) == 3
    # two seeds per diversity panel, plus one dotted line per update in which achievements are found
    marks = len(set(found.values()))
    assert len(axes[0].lines) == 2 + marks
    assert len(axes[2].lines) == 2 + marks
    masked = axes[1].lines[0].get_ydata()
    assert np.isnan(masked[:2]).all() and np.isfinite(masked[2:]).all()  # no finished episode: no event point
    assert render_figure(fig)["png"][:4] == b"\x89PNG"
    two_panels = plot_diversity(ds)
    assert len(two_panels.axes) == 2
