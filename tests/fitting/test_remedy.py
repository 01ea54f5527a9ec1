"""A fit's verdict acts on its own remedy, once.

The advice ladder (every "sampler failed" cause names a real change and carries it as a
Remedy; at the cap there is none), the plan runner's single automatic refit with the
remedy (both attempts in the file, the refit cached under its own key, never refitted
twice), and the restart from the best mode (initial points read from the best mode's
draws, mapped exactly into the sampler's coordinates, recorded in the refit's config).
Real NUTS on a tiny simulated trajectory (2 chains, 100 draws, one seed).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from valuedyn.fitting import FitSettings, load_fit, plan_fits, run_plan
from valuedyn.fitting.judge._trust import (
    Remedy,
    deeper_tree,
    next_target_accept,
    sampler_advice,
)
from valuedyn.fitting.settings import (
    REMEDY_DRAWS_CAP,
    REMEDY_WARMUP_CAP,
    TARGET_ACCEPT_LADDER,
    TREE_DEPTH_CAP,
)

GOOD = {"rhat_max": 1.002, "ess_bulk_min": 900.0, "ess_tail_min": 800.0, "divergences": 0, "treedepth_hits": 0}


# ---------------------------------------------------------------- the ladder
@pytest.mark.parametrize("target", [0.8, 0.95, 0.97, 0.99, 0.995])
def test_divergences_climb_to_a_higher_rung(target):
    fixes, remedy = sampler_advice({**GOOD, "divergences": 3}, 8, target, 1000, 500)
    (name, before, after), = remedy.changes
    assert name == "target_accept" and before == target and after > target and after in TARGET_ACCEPT_LADDER
    assert f"from {target} to {after}" in fixes[0]


def test_the_old_no_op_advice_is_gone():
    # the advice used to read "raise --target-accept from 0.99 to 0.99"
    fixes, remedy = sampler_advice({**GOOD, "divergences": 3}, 8, 0.99, 1000, 500)
    assert "from 0.99 to 0.995" in fixes[0] and "to 0.99 " not in fixes[0]
    assert remedy.settings == {"target_accept": 0.995}


def test_at_the_top_of_every_ladder_there_is_no_remedy():
    top = TARGET_ACCEPT_LADDER[-1]
    fixes, remedy = sampler_advice({**GOOD, "divergences": 2}, 8, top, 1000, 500)
    assert remedy is None and "no sampler setting is left" in fixes[0]
    fixes, remedy = sampler_advice({**GOOD, "ess_bulk_min": 50.0, "treedepth_hits": 40}, TREE_DEPTH_CAP, 0.9, 1000, 500)
    assert remedy is None and "no sampler setting is left" in fixes[0]
    fixes, remedy = sampler_advice({**GOOD, "ess_bulk_min": 50.0}, 8, 0.9, REMEDY_DRAWS_CAP, REMEDY_WARMUP_CAP)
    assert remedy is None and "no sampler setting is left" in fixes[0]
    cut = {"from": 1000, "to": 100, "share_at_cap": 1.0, "max_tree_depth": TREE_DEPTH_CAP, "window": [150, 250],
           "warmup_run": 250, "warmup_asked": 500}
    fixes, remedy = sampler_advice({**GOOD, "draws_cut": cut}, TREE_DEPTH_CAP, 0.9, 1000, 500)
    assert remedy is None and "no sampler setting is left" in fixes[0]
    assert next_target_accept(top) is None and deeper_tree(TREE_DEPTH_CAP) is None


def test_low_ess_scales_draws_and_warmup_by_what_the_ess_needs_capped():
    _, remedy = sampler_advice({**GOOD, "ess_bulk_min": 100.0, "ess_tail_min": 150.0}, 8, 0.99, 1000, 500)
    assert remedy.settings == {"draws": 4000, "warmup": 2000}  # 4x the draws and the warmup
    fixes, remedy = sampler_advice({**GOOD, "ess_bulk_min": 20.0}, 8, 0.99, 1500, 800)
    assert remedy.settings == {"draws": 4000, "warmup": 2000}  # 20x needed: 4x at most, then the caps
    assert "needs about 20.0x the draws, a refit takes 4x" in fixes[0]
    _, remedy = sampler_advice({**GOOD, "ess_bulk_min": 300.0, "rhat_max": 1.02}, 8, 0.99, 1000, 500)
    assert remedy.settings == {"draws": 1500, "warmup": 800}  # at least 1.5x, rounded up to 100
    fixes, remedy = sampler_advice({**GOOD, "ess_bulk_min": 300.0, "treedepth_hits": 12}, 8, 0.99, 1000, 500)
    assert remedy.settings == {"max_tree_depth": 10} and "from 8 to 10" in fixes[0]


def test_a_saturated_fit_gets_a_deeper_tree_and_its_full_draws():
    cut = {"from": 1000, "to": 100, "share_at_cap": 0.97, "max_tree_depth": 8, "window": [150, 250],
           "warmup_run": 250, "warmup_asked": 500}
    fixes, remedy = sampler_advice({**GOOD, "draws_cut": cut}, 8, 0.99, 1000, 500)
    assert remedy.settings == {"max_tree_depth": 10, "saturated_draws": 0}
    assert "--max-tree-depth 8 -> 10 with --saturated-draws 0" in fixes[0]


def test_a_remedy_is_a_declared_real_change():
    with pytest.raises(ValueError, match="must change"):
        Remedy((("target_accept", 0.99, 0.99),))
    with pytest.raises(ValueError, match="changes only"):
        Remedy((("learning_rate", 1, 2),))
    with pytest.raises(ValueError, match="neither"):
        Remedy()
    remedy = Remedy((("target_accept", 0.99, 0.995),), restart_from_best_mode=True)
    assert Remedy.from_dict(json.loads(json.dumps(remedy.to_dict()))) == remedy
    assert remedy.describe() == ("--target-accept 0.99 -> 0.995, every chain restarted from draws of the best mode, "
                                 "warmup run again")


# ---------------------------------------------------------------- the plan refits once
#: made to fail: 2 chains x 100 draws cannot reach bulk ESS 400, and target acceptance 0.6
#: takes long steps
FAILING = FitSettings(chains=2, draws=100, warmup=100, max_tree_depth=6, target_accept=0.6, min_draws=0,
                      saturated_draws=0)


@pytest.fixture(scope="module")
def remedied(logistic_file, tmp_path_factory):
    fits = tmp_path_factory.mktemp("remedy") / "fits"
    jobs, _ = plan_fits(logistic_file, ["unlock:place_table"], ["logistic_onset"], seeds=[0], settings=FAILING)
    jobs = [dataclasses.replace(job, observation="binomial") for job in jobs]
    return jobs, fits, run_plan(jobs, fits, workers=1, show_progress=False, refit_remedy=True)


def test_a_failed_fit_is_refitted_once_with_its_remedy(remedied):
    from valuedyn.fitting.inference._store import fit_attrs

    jobs, fits, result = remedied
    (outcome,) = result.outcomes
    first = outcome.first_attempt
    assert first is not None and first["refit"] == "done" and "sampler failed" in first["verdict"].split(", ")
    remedy = Remedy.from_dict(first["remedy"])
    attrs = fit_attrs(load_fit(outcome.path))
    # the refit ran at the first attempt's settings changed by the remedy, and nothing else
    expected = dataclasses.asdict(remedy.apply(jobs[0].fit_config()))
    for name in ("draws", "warmup", "target_accept", "max_tree_depth", "chains", "seed"):
        assert attrs["config"][name] == expected[name]
    assert remedy.settings and all(attrs["config"][k] == v for k, v in remedy.settings.items())
    # both attempts are in the file: the first one's settings, diagnostics and verdict
    stored = attrs["first_attempt"]
    assert stored["config"]["draws"] == 100 and stored["config"]["target_accept"] == 0.6
    assert stored["diagnostics"]["trustworthy"] in (0, False)
    assert stored["verdict"]["label"] == first["verdict"] and stored["remedy"] == first["remedy"]
    assert (fits / stored["file"]).is_file() and outcome.path.name.split("__")[-2] == "refit"
    # exactly one refit: two fits in the index (the first attempt and the refit), one refit file
    index = json.loads((fits / "index.json").read_text())
    assert sorted(index) == sorted([outcome.key, first["refit_key"]])
    assert len(list(fits.glob("*__refit__*.nc"))) == 1
    # the folder holds one file per fit: the first attempt is kept (cached) in first_attempts/
    assert [p.name for p in fits.glob("*.nc")] == [outcome.path.name]
    assert index[outcome.key]["file"] == stored["file"] == f"first_attempts/{jobs[0].file_name()}"


def test_a_rerun_reuses_the_refit_and_never_refits_twice(remedied):
    jobs, fits, result = remedied
    before = sorted(p.name for p in fits.rglob("*.nc"))
    again = run_plan(jobs, fits, workers=1, show_progress=False, refit_remedy=True)
    (outcome,) = again.outcomes
    assert outcome.status == "cached" and outcome.first_attempt["refit"] == "cached"
    assert outcome.path == result.outcomes[0].path
    assert sorted(p.name for p in fits.rglob("*.nc")) == before
    # turned off, the plan keeps the first attempt
    off = run_plan(jobs, fits, workers=1, show_progress=False, refit_remedy=False)
    assert off.outcomes[0].first_attempt is None and off.outcomes[0].status == "cached"
    assert off.outcomes[0].path == fits / result.outcomes[0].first_attempt["file"]


# ---------------------------------------------------------------- the restart from the best mode
def test_initial_points_map_exactly_into_the_sampler_coordinates(remedied):
    """Draws of a fit, given as initial points, are the points the sampler starts from:
    mapped to its unconstrained coordinates and back they are the same values."""
    import jax

    from valuedyn.fitting.inference._fit import compile_for, get_model, settings_from
    from valuedyn.fitting.inference._model import fit_data, observable_for, parameter_spaces
    from valuedyn.fitting.inference._nuts import _uncentred
    from valuedyn.fitting.inference._observation import observation_for
    from valuedyn.fitting.inference._select import select_behaviour
    from valuedyn.fitting.inference._store import fit_attrs
    from valuedyn.fitting.judge._modes import find_modes
    from valuedyn.fitting.judge._trust import best_mode_starts
    from valuedyn.data import open_trajectory

    jobs, fits, result = remedied
    idata = load_fit(result.outcomes[0].path)
    attrs = fit_attrs(idata)
    starts = best_mode_starts(idata, find_modes(idata), 2)
    config = jobs[0].fit_config()
    model = get_model(config.model)
    selection = select_behaviour(open_trajectory(config.trajectory), config.behaviour, (0,))
    observation = observation_for(selection.family, "binomial")
    data = fit_data(selection, len(parameter_spaces(model)))
    compiled = compile_for(model, observation, attrs["pooling"], observable_for(model, selection.kind), data,
                           settings_from(config))
    flats = compiled.start_points(starts)
    assert flats.shape == (2, compiled.layout.dim)
    constrained, _, _ = compiled.outputs(_uncentred(data), compiled.layout.unravel(flats), jax.random.PRNGKey(0))
    for name, value in starts.items():
        np.testing.assert_allclose(np.asarray(constrained[name]).reshape(value.shape), value, rtol=2e-4, atol=1e-5)


def test_a_refit_from_the_best_mode_starts_every_chain_there(remedied, tmp_path):
    """A fit whose chain 1 is the best mode: the refit's config holds, for every chain,
    draws of chain 1 only, and the refit runs from them (its config reproduces it)."""
    from valuedyn.fitting.inference._fit import fit_trajectory
    from valuedyn.fitting.inference._store import fit_attrs
    from valuedyn.fitting.judge._modes import Mode, ModeReport
    from valuedyn.fitting.pipeline._batch import _refit_config
    from valuedyn.fitting.pipeline._cache import fit_cache_key

    jobs, fits, result = remedied
    outcome = dataclasses.replace(result.outcomes[0])
    idata = load_fit(outcome.path)
    best, other = Mode([1], {}, -1.0, 1.0, 0.0, {}), Mode([0], {}, -50.0, 1.0, -40.0, {})
    verdict = type("V", (), {"modes": ModeReport([best, other], ["k[0]"], False)})()
    config, key = _refit_config(outcome, verdict, Remedy(restart_from_best_mode=True))
    points = json.loads(config.initial_points)
    last = {name: np.asarray(idata.posterior[name].values)[1, -1] for name in points}
    for name, per_chain in points.items():
        assert len(per_chain) == config.chains
        np.testing.assert_allclose(per_chain[0], last[name])  # the best mode's last draw
        chain_one = np.asarray(idata.posterior[name].values)[1]
        assert any(np.allclose(per_chain[1], draw) for draw in chain_one)  # another draw of the best mode
    assert key != outcome.key and key == fit_cache_key(outcome.job.trajectory_sha256, config)
    out = fit_trajectory(dataclasses.replace(config, out=str(tmp_path / "restart.nc"), draws=30, warmup=30,
                                             progress=False))
    stored = fit_attrs(load_fit(out))["config"]
    assert json.loads(stored["initial_points"]) == points
