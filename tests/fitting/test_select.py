"""Behaviour selection: what is counted, what is masked, and clear errors (no JAX fits)."""

import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.data import open_trajectory
from valuedyn.fitting.inference._observation import observation_for
from valuedyn.fitting.inference._select import hill1, parse_behaviour, parse_updates, select_behaviour


@pytest.fixture(scope="module")
def dataset(overshoot_file):
    return open_trajectory(overshoot_file)


def test_unlock_selection_counts_out_of_finished_episodes(dataset):
    sel = select_behaviour(dataset, "unlock:place_table")
    episodes = dataset["episodes_finished"].values
    assert sel.family == "binomial"
    np.testing.assert_array_equal(sel.exposure, episodes)
    np.testing.assert_array_equal(sel.mask, episodes > 0)
    assert not sel.mask[:, :3].any()  # the simulated file finishes no episode in the first 3 updates
    assert np.all(sel.y[~sel.mask] == 0) and sel.level_scale == 1.0
    assert sel.tau[0] == 0.0 and sel.tau[-1] == 1.0
    assert sel.time_scale == float(dataset["env_step"].values[-1] - dataset["env_step"].values[0])


def test_event_level_scale_is_largest_mean_count_per_episode(dataset):
    sel = select_behaviour(dataset, "event:place_plant", seeds=(0, 2), updates=(10, 59))
    assert list(sel.seeds) == [0, 2] and sel.y.shape == (2, 50)
    mean_count = sel.y[sel.mask] / sel.exposure[sel.mask]
    assert sel.level_scale == pytest.approx(mean_count.max())
    assert observation_for(sel.family, None).name == "negbin"
    assert observation_for(sel.family, "poisson").name == "poisson"
    with pytest.raises(ValuedynError, match="does not fit count data"):
        observation_for(sel.family, "binomial")


def test_action_share_and_diversity(dataset):
    sel = select_behaviour(dataset, "action:place_plant")
    np.testing.assert_array_equal(sel.exposure, dataset["action_count"].values.sum(-1))
    div = select_behaviour(dataset, "diversity:actions")
    assert div.family == "continuous" and np.all(div.exposure[div.mask] == 1.0)
    assert np.all((div.y[div.mask] >= 1.0) & (div.y[div.mask] <= dataset.sizes["action"]))
    events = select_behaviour(dataset, "diversity:events")
    assert not events.mask[:, :3].any()  # no finished episode, no event distribution


def test_hill1_matches_definition():
    counts = np.array([[10, 10, 0, 0], [5, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
    diversity, has = hill1(counts)
    p = np.array([1, 2, 3, 4]) / 10
    np.testing.assert_allclose(diversity, [2.0, 1.0, 0.0, np.exp(-(p * np.log(p)).sum())])
    np.testing.assert_array_equal(has, [True, True, False, True])


@pytest.mark.parametrize(
    "behaviour, message",
    [
        ("unlock:no_such_thing", "valid names: collect_wood, place_table"),
        ("event:nope", "valid names: place_plant"),
        ("diversity:plants", "diversity:actions, diversity:events"),
        ("colour:red", "behaviour kind must be one of"),
        ("place_table", "KIND:NAME"),
    ],
)
def test_bad_behaviour_names_list_valid_ones(dataset, behaviour, message):
    with pytest.raises(ValuedynError, match=message):
        select_behaviour(dataset, behaviour)


def test_empty_and_all_masked_selections_are_refused(dataset):
    with pytest.raises(ValuedynError, match="at least 1 seed and 2 updates"):
        select_behaviour(dataset, "unlock:place_table", updates=(500, 600))
    with pytest.raises(ValuedynError, match="every selected update is masked"):
        select_behaviour(dataset, "unlock:place_table", updates=(0, 2))
    with pytest.raises(ValuedynError, match="does not hold"):
        select_behaviour(dataset, "unlock:place_table", seeds=(7,))
    with pytest.raises(ValuedynError, match="FIRST:LAST"):
        parse_updates("3-4")
    assert parse_behaviour("event:place_plant") == ("event", "place_plant")


# ---------------------------------------------------------------------------
# cells the file marks unobserved (an imported log's missing value) are masked, not 0
# ---------------------------------------------------------------------------


def _with_unobserved(dataset, variable, seed, update, index=None):
    """``dataset`` with one cell of ``variable`` marked unobserved (0 there, as the contract stores it)."""
    ds = dataset.copy(deep=True)
    seen = np.ones(ds[variable].shape, bool)
    cell = (seed, update) if index is None else (seed, update, index)
    seen[cell] = False
    ds[variable].values[cell] = 0
    ds[variable + "_observed"] = (ds[variable].dims, seen)
    return ds


def test_an_unobserved_unlock_cell_is_masked_for_that_behaviour_only(dataset):
    table = [str(a) for a in dataset["achievement"].values].index("place_table")
    ds = _with_unobserved(dataset, "achievement_unlocks", 1, 20, table)
    before = select_behaviour(dataset, "unlock:place_table")
    after = select_behaviour(ds, "unlock:place_table")
    assert before.mask[1, 20] and not after.mask[1, 20] and after.y[1, 20] == 0
    assert after.n_observed == before.n_observed - 1
    # the other achievement of the same update stays observed
    other = [str(a) for a in dataset["achievement"].values if str(a) != "place_table"][0]
    assert select_behaviour(ds, f"unlock:{other}").mask[1, 20]


def test_an_unobserved_action_masks_its_update_for_every_action_and_the_diversity(dataset):
    ds = _with_unobserved(dataset, "action_count", 0, 30, 0)
    for behaviour in ("action:place_plant", "diversity:actions"):
        assert select_behaviour(dataset, behaviour).mask[0, 30]
        sel = select_behaviour(ds, behaviour)
        assert not sel.mask[0, 30] and sel.mask[0, 29] and sel.mask[1, 30]
    events = _with_unobserved(dataset, "event_total", 2, 40, 0)
    assert not select_behaviour(events, "diversity:events").mask[2, 40]
    assert select_behaviour(events, "diversity:events").mask[2, 39]


def test_a_behaviour_whose_part_is_absent_is_refused_with_what_the_file_offers(dataset):
    unlock_only = dataset.drop_vars(["event_total", "action_count"])
    unlock_only.attrs["source_format"] = "jsonl"
    for behaviour, part in (("event:place_plant", "events"), ("action:noop", "actions"),
                            ("diversity:actions", "actions"), ("diversity:events", "events")):
        with pytest.raises(ValuedynError, match=rf"needs the '{part}' part .*lacked it\); the file offers "
                                                r"unlock:ACHIEVEMENT$"):
            select_behaviour(unlock_only, behaviour)
    assert select_behaviour(unlock_only, "unlock:place_table").n_observed > 0
