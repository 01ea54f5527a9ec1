"""Diversity of behaviour: Hill numbers and their masking, transition times, and recovery of
a fast rise (event diversity) and a slow fall (action diversity) from simulated runs."""

from __future__ import annotations

import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.fitting.analyses._diversity import (
    diversity_headline,
    fit_timescale,
    first_found_updates,
    hill1_shares,
    simulate_diversity_trajectory,
    transition_times,
)
from valuedyn.fitting.inference._select import hill1, select_behaviour

N_SEEDS, N_UPDATES = 3, 60
# event diversity switches on fast, action diversity switches off slowly (logistic_onset, level units)
EVENTS_TRUTH = {"t0": np.array([0.22, 0.2, 0.25]), "k": np.array([32.0, 28.0, 30.0]),
                "floor": np.array([0.35, 0.33, 0.36]), "ceiling": np.array([0.85, 0.9, 0.88])}
ACTIONS_TRUTH = {"t0": np.array([0.45, 0.5, 0.42]), "k": np.array([6.0, 5.5, 6.5]),
                 "floor": np.array([1.0, 1.0, 0.98]), "ceiling": np.array([0.45, 0.5, 0.42])}
EVENT_SCALE, ACTION_SCALE = 9.0, 17.0


def _truth_curves(truth: dict, tau: np.ndarray) -> np.ndarray:
    from valuedyn.models import get_model

    model = get_model("logistic_onset")
    rows = []
    for s in range(N_SEEDS):
        out, ok = model.solve({k: float(v[s]) for k, v in truth.items()}, tau)
        assert bool(ok)
        rows.append(np.asarray(out["level"], np.float64))
    return np.stack(rows)


def test_hill1_shares_have_the_requested_diversity():
    targets = np.array([1.0, 1.5, 4.0, 8.3, 16.9, 17.0])
    shares = hill1_shares(targets, 17)
    diversity, has = hill1(shares * 1e6)
    assert has.all()
    np.testing.assert_allclose(diversity, targets, rtol=1e-6)
    np.testing.assert_allclose(shares.sum(-1), 1.0)


def test_hill_numbers_and_masking_of_empty_updates():
    uniform, has = hill1(np.array([[5, 5, 5, 5], [7, 0, 0, 0], [0, 0, 0, 0]]))
    np.testing.assert_allclose(uniform, [4.0, 1.0, 0.0])
    assert has.tolist() == [True, True, False]

    act = np.full((2, 12), 10.0)
    ev = np.full((2, 12), 5.0)
    ds = simulate_diversity_trajectory(act, ev, masked_updates=3, seed=4)
    events = select_behaviour(ds, "diversity:events")
    actions = select_behaviour(ds, "diversity:actions")
    assert not events.mask[:, :3].any() and events.mask[:, 3:].all()  # no finished episode: no event data
    assert (events.y[:, :3] == 0).all()
    assert actions.mask.all()  # actions are counted in every update
    expected, _ = hill1(ds["event_total"].values[:, 3:])
    np.testing.assert_allclose(events.y[:, 3:], expected)
    # multinomial draws of geometric shares: the diversities land near their targets
    assert abs(np.median(events.y[:, 3:]) - 5.0) < 0.5
    assert abs(np.median(actions.y) - 10.0) < 0.5


def test_transition_times_of_known_curves():
    time = np.linspace(0.0, 1.0, 2001)
    rise = 2.0 + 3.0 * (1.0 - np.exp(-time / 0.05))  # exponential approach: 10-90 % = ln 9 x e-folding time
    fall = 9.0 / (1.0 + np.exp(4.0 * (time - 0.5)))  # logistic switch-off, not finished at the end
    flat = np.full_like(time, 4.0)
    durations, moving = transition_times(time, np.stack([rise, flat]), "rise")
    assert durations[0] == pytest.approx(0.05 * np.log(9.0), rel=1e-3)
    assert np.isnan(durations[1]) and not moving[0]
    durations, moving = transition_times(time, fall[None], "fall")
    low, high = fall.min(), fall.max()
    opening = time[np.argmax(fall <= high - 0.1 * (high - low))]
    closing = time[np.argmax(fall <= high - 0.9 * (high - low))]
    assert durations[0] == pytest.approx(closing - opening, abs=2e-3)
    assert moving[0]  # still falling in the last tenth of the window
    with pytest.raises(ValuedynError, match="direction must be 'rise' or 'fall'"):
        transition_times(time, fall, "up")


def test_first_found_updates_skip_what_the_run_starts_with():
    act = np.full((2, 30), 10.0)
    ds = simulate_diversity_trajectory(act, np.full((2, 30), 5.0), masked_updates=2, seed=1)
    found = first_found_updates(ds, threshold=0.1)
    rate = ds["achievement_unlocks"].sum("seed") / ds["episodes_finished"].sum("seed")
    for name, update in found.items():
        series = rate.sel(achievement=name).values
        index = int(np.flatnonzero(ds["update"].values == update)[0])
        assert series[index] >= 0.1 and not (series[2:index] >= 0.1).any()
    # collect_wood etc. are unlocked at a constant 30 % from the first observed update: not new
    assert "collect_wood" not in found and "place_table" in found


@pytest.fixture(scope="module")
def diversity_fits(tmp_path_factory):
    """logistic_onset fitted to simulated event diversity (fast rise) and action diversity (slow fall)."""
    from valuedyn.data import open_trajectory
    from valuedyn.fitting import FitConfig, fit_trajectory, load_fit
    from valuedyn.fitting.inference._simulate import write_trajectory

    folder = tmp_path_factory.mktemp("diversity")
    tau = np.linspace(0.0, 1.0, N_UPDATES)
    events = _truth_curves(EVENTS_TRUTH, tau) * EVENT_SCALE
    actions = _truth_curves(ACTIONS_TRUTH, tau) * ACTION_SCALE
    path = folder / "diversity.nc"
    write_trajectory(simulate_diversity_trajectory(actions, events, masked_updates=2, seed=7), path)
    fits = {}
    for behaviour in ("diversity:events", "diversity:actions"):
        out = folder / f"{behaviour.replace(':', '_')}.nc"
        fit_trajectory(FitConfig(trajectory=str(path), model="logistic_onset", behaviour=behaviour, out=str(out),
                                 chains=2, warmup=400, draws=400, pooling="none", progress=False))
        fits[behaviour] = load_fit(out)
    # truths on the data's own time axis (env steps) and in the same population summary
    env_step = select_behaviour(open_trajectory(path), "diversity:events").env_step
    time = env_step[0] + (env_step[-1] - env_step[0]) * np.linspace(0.0, 1.0, 200)
    fine = np.linspace(0.0, 1.0, 200)
    truth_fast = np.median(transition_times(time, _truth_curves(EVENTS_TRUTH, fine), "rise")[0])
    truth_slow = np.median(transition_times(time, _truth_curves(ACTIONS_TRUTH, fine), "fall")[0])
    return fits, truth_fast, truth_slow


def test_fast_and_slow_timescales_are_recovered(diversity_fits):
    fits, truth_fast, truth_slow = diversity_fits
    fast = fit_timescale(fits["diversity:events"], "rise")
    slow = fit_timescale(fits["diversity:actions"], "fall")
    assert truth_slow > 3.0 * truth_fast  # the simulated timescales are separated
    low, high = fast.interval
    assert low <= truth_fast <= high, (fast.interval, truth_fast)
    low, high = slow.interval
    assert low <= truth_slow <= high, (slow.interval, truth_slow)
    assert fast.median < 0.5 * slow.median


def test_headline_states_separation_and_untrusted_fits(diversity_fits):
    fits, _, _ = diversity_fits
    headline = diversity_headline(fits["diversity:events"], fits["diversity:actions"])
    assert headline.p_separated is not None and headline.p_separated > 0.95
    assert "the timescales are separated" in headline.text
    assert "rise time" in headline.text and "fall time" in headline.text
    # without a trustworthy action fit no separation is claimed, and the reason is stated
    partial = diversity_headline(fits["diversity:events"], None,
                                 untrusted={"diversity:actions": "every fit is untrustworthy (R-hat 1.2)"})
    assert partial.p_separated is None
    assert "every fit is untrustworthy (R-hat 1.2)" in partial.text
    assert headline.as_dict()["fast"]["behaviour"] == "diversity:events"


def test_diversity_figure_draws_the_fitted_population_curves(diversity_fits, tmp_path):
    from valuedyn.papers._diversity_figures import plot_diversity
    from valuedyn.data import open_trajectory

    fits, _, _ = diversity_fits
    trajectory = open_trajectory(fits["diversity:events"].attrs["trajectory"])
    fig = plot_diversity(trajectory, {b: {"logistic_onset": f} for b, f in fits.items()})
    fitted = [line for line in fig.axes[1].lines if line.get_label() == "logistic_onset (seed mean)"]
    assert len(fitted) == 1
    curve = fitted[0].get_ydata()
    observed = select_behaviour(trajectory, "diversity:events")
    seed_mean = np.nanmean(np.where(observed.mask, observed.y, np.nan), axis=0)
    # the fitted seed-mean curve passes through the data: within 10 % at the end of the run
    assert abs(curve[-1] - seed_mean[-1]) < 0.1 * seed_mean[-1]
