"""Memory behaviours (issue 33.4): the memory horizon over training, fitted like any behaviour.

Memory probe files are simulated (:func:`simulate_memory`: the variables, dims and attrs
``valuedyn probe --memory`` writes) from known logistic_onset curves of the horizon, for
three GRU sizes whose stored training configs differ only in ``gru_hidden``:

=========  ======  ========  =====================================
gru size   onset   ceiling   planted effect
=========  ======  ========  =====================================
8          0.55    0.35      (reference)
32         0.15    0.80      earlier onset, higher final horizon
128        0.15    0.80      none against 32
=========  ======  ========  =====================================

A single fit of ``memory:water_direction`` recovers its curve; one conditions fit across
the three sizes finds the planted effects (32 vs 8) and none where none was planted
(128 vs 32). NUTS is small: 2 chains.
"""

import dataclasses
import json

import numpy as np
import pytest

from valuedyn._config import config_to_json
from valuedyn._errors import ValuedynError
from valuedyn._io import write_dataset_atomic
from valuedyn.data import TrainConfig
from valuedyn.fitting import FitSettings, load_fit
from valuedyn.fitting.analyses._conditions import conditions_attrs
from valuedyn.fitting.inference._select import select_behaviour
from valuedyn.fitting.inference._select_memory import (
    memory_file_for, open_behaviour_data, open_memory, simulate_memory,
)

BEHAVIOUR = "memory:water_direction"
NUM_LAGS = 32
SEEDS = 2
#: the horizon scatters between checkpoints more than a Binomial allows (it is the largest
#: lag that beats the baseline, not a sum of independent lags): simulated as a beta-binomial
CONCENTRATION = 30.0
#: the switching rate: a 10-90 % rise over 0.31 of the run, so several checkpoints lie on
#: the rise and the rate is identified (at 18 the rise took 2-3 of 16 checkpoints and the
#: judge found k "not identified": posterior sd 0.71 of the prior's). With 2 seeds per
#: condition the typical onset of a condition is uncertain (the between-seed scale is
#: barely informed): an onset difference of 0.25 had a 90 % interval about 0.5 wide, so
#: the planted one is 0.4
RATE = 14.0
#: the horizon before the onset, as a fraction of NUM_LAGS (about 5 lags). Not near 0: the
#: judge's coverage check counts an observation on an interval's end as inside, and for
#: counts near 0 out of 32 a correct model's central 90 % interval then holds 0.97-0.985 of
#: the draws (beta-binomial, concentration 30, level 0.03-0.1), so a run of checkpoints at
#: horizon 0 reads as "misspecified: covers 0.99" (it did here with floor 0.03)
FLOOR = 0.15
#: checkpoints per probe file
CHECKPOINTS = 24
#: GRU size -> (onset t0, final level ceiling) of the horizon as a fraction of NUM_LAGS
TRUTH = {8: (0.55, 0.35), 32: (0.15, 0.80), 128: (0.15, 0.80)}
SETTINGS = FitSettings(chains=2, draws=500, warmup=400, rng_seed=3, max_tree_depth=8, target_accept=0.9,
                       saturated_draws=0, min_draws=0)
#: the conditions fit: 6 seeds x 4 parameters, partially pooled, and the beta-binomial's
#: dispersion; at 2 x 500 draws its bulk ESS was 264, at 2 x 1000 its tail ESS 266 (the gate wants 400)
CONDITIONS_SETTINGS = dataclasses.replace(SETTINGS, draws=1600, warmup=800)


def truth(size: int) -> dict:
    onset, ceiling = TRUTH[size]
    jitter = np.array([-0.01, 0.01])[:SEEDS]  # seeds differ a little, as trained seeds do
    return {"t0": onset + jitter, "k": np.full(SEEDS, RATE), "floor": np.full(SEEDS, FLOOR),
            "ceiling": ceiling - jitter}


def write_memory_files(folder, sizes=tuple(TRUTH), seed: int = 0) -> dict[int, str]:
    """One memory file per GRU size, ``run_h<size>.memory.nc``, beside no trajectory."""
    from valuedyn.models import get_model

    paths = {}
    for index, size in enumerate(sizes):
        config = dataclasses.replace(TrainConfig(), recurrent=True, gru_hidden=size)
        ds = simulate_memory(get_model("logistic_onset"), truth(size), num_lags=NUM_LAGS,
                             train_config=config_to_json(config), unscored_checkpoints=1, seed=seed + index,
                             updates=np.linspace(1, 240, CHECKPOINTS).round(),
                             observation="betabinomial", concentration=CONCENTRATION)
        paths[size] = str(folder / f"run_h{size}.memory.nc")
        write_dataset_atomic(ds, paths[size])
    return paths


@pytest.fixture(scope="module")
def memory_files(tmp_path_factory):
    return write_memory_files(tmp_path_factory.mktemp("memory"))


@pytest.fixture(scope="module")
def single_fit(memory_files, tmp_path_factory):
    from valuedyn.fitting.inference._fit import fit_trajectory

    out = tmp_path_factory.mktemp("fit") / "fit.nc"
    config = SETTINGS.fit_config(trajectory=memory_files[32], behaviour=BEHAVIOUR, model="logistic_onset", out=str(out))
    fit_trajectory(dataclasses.replace(config, progress=False))
    return load_fit(out)


@pytest.fixture(scope="module")
def conditions_fit(memory_files, tmp_path_factory):
    from valuedyn.fitting.analyses._conditions import fit_conditions
    from valuedyn.fitting.settings import ConditionsConfig

    # target acceptance 0.99, the remedy the verdict names for a divergence (at 0.95 one of
    # 3200 draws diverged); fit_conditions_cached takes no target acceptance, so the fit is
    # made directly
    s = CONDITIONS_SETTINGS
    out = tmp_path_factory.mktemp("fits") / "conditions.nc"
    fit_conditions(ConditionsConfig(
        trajectories=tuple(memory_files[size] for size in TRUTH), model="logistic_onset", behaviour=BEHAVIOUR,
        out=str(out), chains=s.chains, draws=s.draws, warmup=s.warmup, seed=s.rng_seed,
        max_tree_depth=s.max_tree_depth, target_accept=0.99, progress=False))
    return load_fit(out)


# ---------------------------------------------------------------- selection
def test_the_horizon_is_a_count_out_of_the_lags_probed(memory_files):
    ds = open_memory(memory_files[8])
    selection = select_behaviour(ds, BEHAVIOUR)
    horizon = ds["memory_horizon"].sel(feature="water_direction").values
    assert selection.family == "binomial" and selection.kind == "memory"
    assert selection.y.shape == (SEEDS, CHECKPOINTS) and np.all(selection.exposure == NUM_LAGS)
    # the unscored first checkpoint is masked; every other cell is the stored horizon
    assert not selection.mask[:, 0].any() and selection.mask[:, 1:].all()
    assert np.array_equal(selection.y[:, 1:], horizon[:, 1:])
    assert np.array_equal(selection.updates, ds["update"].values)
    assert selection.tau[0] == 0.0 and selection.tau[-1] == 1.0 and selection.level_scale == 1.0
    window = select_behaviour(ds, BEHAVIOUR, seeds=(1,), updates=(50, None))
    assert window.y.shape[0] == 1 and window.updates[0] >= 50
    # the conditions fit reads the training config the probe stored
    assert json.loads(ds.attrs["config"])["gru_hidden"] == 8


def test_memory_behaviours_refuse_the_wrong_file(memory_files, tmp_path):
    with pytest.raises(ValuedynError, match="fitted from a memory probe file.*run_h8.memory.nc"):
        open_behaviour_data(memory_files[8].replace(".memory.nc", ".nc"), BEHAVIOUR)
    with pytest.raises(ValuedynError, match="offers only memory behaviours"):
        open_behaviour_data(memory_files[8], "unlock:place_plant")
    with pytest.raises(ValuedynError, match="valid names: memory:water_seen"):
        select_behaviour(open_memory(memory_files[8]), "memory:water_depth")
    assert memory_file_for("/x/run.nc").name == "run.memory.nc"
    not_memory = tmp_path / "other.memory.nc"
    write_dataset_atomic(open_memory(memory_files[8]).drop_vars("memory_horizon"), not_memory)
    with pytest.raises(ValuedynError, match="not a memory probe file"):
        open_memory(not_memory)


# ---------------------------------------------------------------- recovery
def test_a_single_fit_recovers_the_horizon_curve(single_fit):
    posterior = single_fit.posterior
    assert single_fit.attrs["behaviour"] == BEHAVIOUR and single_fit.attrs["trajectory"].endswith(".memory.nc")
    planted = truth(32)
    for name in ("t0", "ceiling", "k"):
        draws = posterior[name].values.reshape(-1, SEEDS)
        low, high = np.quantile(draws, [0.05, 0.95], axis=0)
        assert np.all((low <= planted[name]) & (planted[name] <= high)), (name, low, high, planted[name])
    # the posterior is informative about the onset, not its prior back: its 90 % interval is
    # under half as wide as the prior's (Uniform(-0.05, 0.98): 0.93); 0.29-0.33 were seen
    t0 = posterior["t0"].values.reshape(-1, SEEDS)
    assert np.all(np.quantile(t0, 0.95, axis=0) - np.quantile(t0, 0.05, axis=0) < 0.45)
    diagnostics = json.loads(single_fit.attrs["diagnostics"])
    assert diagnostics["rhat_max"] < 1.05, diagnostics


# ---------------------------------------------------------------- hidden size as a condition
def _effects(idata) -> dict:
    return {(e["parameter"], e["pair"]): e for e in conditions_attrs(idata)["effects"]}


def test_the_conditions_are_the_gru_sizes(conditions_fit):
    attrs = conditions_attrs(conditions_fit)
    assert attrs["differing_settings"] == ["gru_hidden"]
    assert [c["name"] for c in attrs["conditions"]] == ["gru_hidden=8", "gru_hidden=32", "gru_hidden=128"]
    assert all(len(c["seeds"]) == SEEDS for c in attrs["conditions"])


def test_hidden_size_effects_are_found_where_planted_only(conditions_fit):
    attrs = conditions_attrs(conditions_fit)
    assert attrs["trustworthy"], attrs["why_not"]
    effects = _effects(conditions_fit)
    planted = "gru_hidden=32 vs gru_hidden=8"
    onset, final = effects[("t0", planted)], effects[("ceiling", planted)]
    shown = {k: (e["difference"], e["clear"]) for k, e in effects.items()}
    assert onset["clear"] and onset["sign"] < 0, shown  # the larger core remembers earlier
    assert final["clear"] and final["sign"] > 0, shown  # and further
    for name, (t_small, c_small) in (("t0", TRUTH[8]), ("ceiling", TRUTH[8])):
        d = effects[(name, planted)]["difference"]
        true = (TRUTH[32][0] - t_small) if name == "t0" else (TRUTH[32][1] - c_small)
        assert d["low"] <= true <= d["high"], (name, d, true)
    for name in ("t0", "ceiling", "k", "floor"):
        assert not effects[(name, "gru_hidden=128 vs gru_hidden=32")]["clear"], (name, shown)
