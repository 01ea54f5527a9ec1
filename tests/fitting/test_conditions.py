"""Conditions: found from the files' training configs, one fit across them, effects with posteriors.

Simulated data (schema-valid trajectory files whose ``config`` attribute is a real
TrainConfig): condition A is the overshoot of the recovery tests; condition B differs only
in the excess (half of A's, per seed), as a reward change would; condition A2 is A simulated
again with other noise under another setting label. Both fits share one data shape and
sampler settings, so the sampler compiles once. They are made as ``valuedyn report`` makes
them (:func:`fit_conditions_cached` at a plan's settings), so the report's conditions step is
tested on the effect fit without sampling again.
"""

import dataclasses
import json

import numpy as np
import pytest
from fitting_helpers import N_UPDATES, OVERSHOOT_TRUTH

from valuedyn._config import config_to_json
from valuedyn._errors import ValuedynError
from valuedyn.data import TrainConfig
from valuedyn.fitting import FitSettings, load_fit
from valuedyn.fitting.analyses._conditions import condition_effects, conditions_attrs, find_conditions
from valuedyn.fitting.pipeline._cache import fit_conditions_cached
from valuedyn.fitting.inference._simulate import simulate_trajectory, write_trajectory

TRUTH_A = OVERSHOOT_TRUTH
EXCESS_RATIO = 0.5
TRUTH_B = dict(OVERSHOOT_TRUTH, excess=OVERSHOOT_TRUTH["excess"] * EXCESS_RATIO)
SETTINGS = dict(chains=4, warmup=1000, draws=1000)
PLAN_SETTINGS = FitSettings(chains=4, draws=1000, warmup=1000, rng_seed=5, max_tree_depth=10, target_accept=0.95,
                             saturated_draws=0, min_draws=0)  # SETTINGS as a plan's
BEHAVIOUR = "unlock:place_plant"  # a behaviour of the plant motif, so the report compares it
DEFAULT = TrainConfig()
EVERY_PLANT = dataclasses.replace(DEFAULT, reward_every=("place_plant",))
NO_HEALTH = dataclasses.replace(DEFAULT, health_reward=False)


def _simulated(path, truth, config, noise_seed):
    from valuedyn.models import get_model

    dataset = simulate_trajectory(get_model("overshoot"), truth, behaviour=BEHAVIOUR, n_updates=N_UPDATES,
                                  episodes_per_update=150.0, seed=noise_seed)
    dataset.attrs["config"] = config_to_json(config)
    write_trajectory(dataset, path)
    return str(path)


@pytest.fixture(scope="module")
def simulated_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conditions")
    return {
        "a": _simulated(folder / "a.nc", TRUTH_A, DEFAULT, 11),
        "b": _simulated(folder / "b.nc", TRUTH_B, EVERY_PLANT, 12),
        "a2": _simulated(folder / "a2.nc", TRUTH_A, NO_HEALTH, 13),
    }


@pytest.fixture(scope="module")
def fits_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fits")


def _fit(files, fits_dir):
    path, reused = fit_conditions_cached(files, BEHAVIOUR, "overshoot", fits_dir, settings=PLAN_SETTINGS, progress=False)
    assert not reused
    assert fit_conditions_cached(files, BEHAVIOUR, "overshoot", fits_dir, settings=PLAN_SETTINGS) == (path, True)
    return load_fit(path)


@pytest.fixture(scope="module")
def effect_fit(simulated_files, fits_dir):
    return _fit([simulated_files["a"], simulated_files["b"]], fits_dir)


@pytest.fixture(scope="module")
def null_fit(simulated_files, fits_dir):
    return _fit([simulated_files["a"], simulated_files["a2"]], fits_dir)


# ---------------------------------------------------------------- conditions from files
def _json(config, **changes):
    return json.loads(config_to_json(dataclasses.replace(config, **changes)))


def test_conditions_are_named_by_the_differing_settings_and_pool_files():
    configs = [
        _json(DEFAULT, out="a.nc", seed=0),
        _json(DEFAULT, out="b.nc", seed=1, seeds=2, chunk_updates=4),  # same condition: only run-only keys differ
        _json(DEFAULT, out="c.nc", recurrent=True, gru_hidden=64),
        _json(DEFAULT, out="d.nc", recurrent=True),
    ]
    conditions, differing = find_conditions(["a.nc", "b.nc", "c.nc", "d.nc"], configs)
    assert differing == ("gru_hidden", "recurrent")
    assert [c.name for c in conditions] == [
        "gru_hidden=256, recurrent=false", "gru_hidden=64, recurrent=true", "gru_hidden=256, recurrent=true",
    ]
    assert conditions[0].files == ("a.nc", "b.nc") and conditions[1].files == ("c.nc",)
    assert conditions[1].settings == {"gru_hidden": 64, "recurrent": True}
    reward, _ = find_conditions(["x.nc", "y.nc"], [_json(DEFAULT), _json(EVERY_PLANT)])
    assert [c.name for c in reward] == ["reward_every=[]", "reward_every=[place_plant]"]


def test_files_without_a_difference_or_a_second_file_are_refused():
    with pytest.raises(ValuedynError, match="trained with the same settings"):
        find_conditions(["a.nc", "b.nc"], [_json(DEFAULT, seed=0, out="a.nc"), _json(DEFAULT, seed=1, out="b.nc")])
    with pytest.raises(ValuedynError, match="at least 2 trajectory files"):
        find_conditions(["a.nc"], [_json(DEFAULT)])
    with pytest.raises(ValuedynError, match="more than once"):
        find_conditions(["a.nc", "./a.nc"], [_json(DEFAULT), _json(EVERY_PLANT)])


def test_command_refuses_another_update_grid_in_one_line(simulated_files, tmp_path, capsys):
    from valuedyn.cli import main

    from valuedyn.models import get_model

    short = simulate_trajectory(get_model("overshoot"), TRUTH_B, behaviour=BEHAVIOUR, n_updates=N_UPDATES // 2,
                                episodes_per_update=150.0, seed=3)
    short.attrs["config"] = config_to_json(EVERY_PLANT)
    write_trajectory(short, tmp_path / "short.nc")
    out = tmp_path / "never.nc"
    status = main(["conditions", simulated_files["a"], str(tmp_path / "short.nc"), "--model", "overshoot",
                   "--behaviour", BEHAVIOUR, "--out", str(out)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and not out.exists()
    assert error.count("\n") == 0 and "another update grid" in error and "--updates" in error


# ---------------------------------------------------------------- effects
def _typical(values):
    """The truth of a population's typical value: excess has a log-scale hierarchy, so the
    typical value of the simulated seeds is their geometric mean."""
    return float(np.exp(np.mean(np.log(values))))


def _effects(idata):
    return {e["parameter"]: e for e in conditions_attrs(idata)["effects"]}


def test_an_effect_in_one_parameter_is_recovered_and_the_others_cover_zero(effect_fit):
    effects = _effects(effect_fit)
    excess = effects["excess"]
    truth_difference = _typical(TRUTH_B["excess"]) - _typical(TRUTH_A["excess"])
    assert excess["difference"]["low"] <= truth_difference <= excess["difference"]["high"], excess
    assert excess["ratio"]["low"] <= EXCESS_RATIO <= excess["ratio"]["high"], excess
    assert excess["sign"] == -1 and excess["sign_probability"] > 0.95, excess
    for name, effect in effects.items():
        if name != "excess":
            assert effect["difference"]["low"] <= 0.0 <= effect["difference"]["high"], effect
    # sampling quality bounded, not required to pass the gate: the between-seed scale of `ratio`
    # mixes slowly (bulk ESS 270 of 2000 draws, R-hat 1.010-1.025 in runs of 4 x 500 draws)
    diagnostics = conditions_attrs(effect_fit)["diagnostics"]
    n_draws = SETTINGS["chains"] * SETTINGS["draws"]
    assert diagnostics["rhat_max"] <= 1.03 and diagnostics["divergences"] <= 0.005 * n_draws, diagnostics
    # a clear effect is exactly: trustworthy fit and a 90% interval that excludes zero
    trustworthy = conditions_attrs(effect_fit)["trustworthy"]
    assert excess["clear"] == trustworthy
    assert [name for name, e in effects.items() if e["clear"]] == (["excess"] if trustworthy else [])
    # the same posterior judged as if it had passed the gate: the excess alone is a finding
    as_if_trusted = condition_effects(effect_fit, trustworthy=True)
    assert [e["parameter"] for e in as_if_trusted if e["clear"]] == ["excess"]


def test_identical_conditions_declare_no_effect(null_fit):
    for effect in _effects(null_fit).values():
        assert effect["difference"]["low"] <= 0.0 <= effect["difference"]["high"], effect
        assert effect["sign_probability"] <= 0.95 and not effect["clear"], effect


def test_an_untrustworthy_fit_reports_no_finding(effect_fit):
    effects = condition_effects(effect_fit, trustworthy=False)
    assert not any(e["clear"] for e in effects)
    assert max(e["sign_probability"] for e in effects if e["parameter"] == "excess") > 0.95  # the posterior is kept


def test_the_fit_file_stores_conditions_effects_and_checks(effect_fit, simulated_files):
    attrs = conditions_attrs(effect_fit)
    assert [c["name"] for c in attrs["conditions"]] == ["reward_every=[]", "reward_every=[place_plant]"]
    assert attrs["conditions"][0]["files"] == [simulated_files["a"]] and attrs["conditions"][1]["seeds"] == [3, 4, 5]
    assert attrs["differing_settings"] == ["reward_every"]
    assert set(attrs["checks"]) >= {"coverage", "loo_pit", "p_values", "flags"}
    posterior = effect_fit.posterior
    assert posterior["excess_typical"].dims == ("chain", "draw", "condition")
    assert list(posterior["excess_difference"]["pair"].values) == ["reward_every=[place_plant] vs reward_every=[]"]
    assert posterior["excess"].dims == ("chain", "draw", "seed") and posterior.sizes["seed"] == 6
    assert list(effect_fit.constant_data["condition_index"].values) == [0, 0, 0, 1, 1, 1]
    assert effect_fit.attrs["pooling"] == "conditions" and len(json.loads(effect_fit.attrs["trajectory_sha256"])) == 2
    # trustworthy by the single fits' verdict (gate and named causes), stored with the fit
    assert attrs["trustworthy"] == attrs["verdict"]["trustworthy"]
    assert attrs["trustworthy"] <= bool(attrs["diagnostics"]["trustworthy"])


def test_the_fit_file_stores_the_prior_and_prior_predictive_on_the_posteriors_layout(effect_fit):
    """As single fits (issue 34): ``prior`` holds the posterior's variables with one chain of
    200 draws (conditions and pairs included), ``prior_predictive`` the observed cells ``obs``
    of ``observed_data``; ArviZ reads both unaided."""
    import arviz as az
    import matplotlib.pyplot as plt

    prior, posterior = effect_fit.prior, effect_fit.posterior
    assert prior.sizes["chain"] == 1 and prior.sizes["draw"] == 200
    shared = set(posterior.data_vars) - {"deviation", "deviation_time"}
    assert shared <= set(prior.data_vars)
    for name in shared:
        assert prior[name].dims == posterior[name].dims, name
    assert list(prior["excess_typical"]["condition"].values) == list(posterior["excess_typical"]["condition"].values)
    assert list(prior["excess_difference"]["pair"].values) == list(posterior["excess_difference"]["pair"].values)
    assert np.isfinite(prior["excess_typical"].values).all()
    # draws of the prior, not of the posterior: its spread of the typical excess is wider
    assert float(prior["excess_typical"].std()) > float(posterior["excess_typical"].std())

    replicates, observed = effect_fit.prior_predictive["y"], effect_fit.observed_data["y"]
    assert replicates.dims == ("chain", "draw", "obs") and replicates.shape[1:] == (200, observed.sizes["obs"])
    for coordinate in ("obs_seed", "obs_update"):
        assert (replicates[coordinate].values == observed[coordinate].values).all()
    assert np.isfinite(replicates.values).all() and (replicates.values >= 0).all()

    summary = az.summary(effect_fit, group="prior", var_names=["excess_typical", "excess_difference"], kind="stats")
    assert len(summary) == 3 and np.isfinite(summary["mean"].values).all()
    axes = az.plot_ppc(effect_fit, group="prior", num_pp_samples=20, random_seed=0)
    assert axes is not None
    plt.close("all")


# ---------------------------------------------------------------- end to end on real training runs
TRAIN_ARGS = ("--num-envs", "8", "--num-steps", "16", "--layer-size", "16", "--num-layers", "1", "--seeds", "1",
              "--total-steps", "1024", "--chunk-updates", "8", "--update-epochs", "1", "--no-progress")


def test_two_tiny_training_runs_that_differ_in_the_reward_are_compared(tmp_path, capsys):
    """Trains two 1-seed CPU runs (8 updates), the second paying every plant placement, and
    compares them: the conditions are labelled by the reward knob and every effect has a
    posterior. So small a run need not show an effect or pass the gate; if it misses the gate,
    no effect is declared."""
    from valuedyn.cli import main

    default, every = tmp_path / "default.nc", tmp_path / "every_plant.nc"
    assert main(["train", *TRAIN_ARGS, "--out", str(default)]) == 0
    assert main(["train", *TRAIN_ARGS, "--reward-every", "place_plant", "--seed", "1", "--out", str(every)]) == 0
    out = tmp_path / "conditions.nc"
    status = main(["conditions", str(default), str(every), "--model", "logistic_onset", "--behaviour", "action:do",
                   "--chains", "2", "--warmup", "60", "--draws", "60", "--max-tree-depth", "5", "--no-progress",
                   "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0 and "reward_every=[place_plant]" in printed
    attrs = conditions_attrs(load_fit(out))
    assert [c["name"] for c in attrs["conditions"]] == ["reward_every=[]", "reward_every=[place_plant]"]
    assert [len(c["seeds"]) for c in attrs["conditions"]] == [1, 1]
    assert {e["parameter"] for e in attrs["effects"]} == {"t0", "k", "floor", "ceiling"}
    if not attrs["trustworthy"]:
        assert not any(e["clear"] for e in attrs["effects"])


# ---------------------------------------------------------------- report functions (papers/_conditions_figures.py)
# here rather than in tests/papers: they read the fit made above instead of sampling another
def test_report_section_has_both_figures_and_one_sentence_per_clear_effect(effect_fit, null_fit, tmp_path):
    from valuedyn.papers._conditions_figures import conditions_section, effect_sentences

    text = conditions_section(effect_fit, tmp_path / "figures")
    for name in ("effects", "fits"):
        for fmt in ("png", "pdf"):
            assert (tmp_path / "figures" / f"conditions_overshoot_unlock_place_plant_{name}.{fmt}").stat().st_size > 0
    assert "| reward_every=[place_plant] | b.nc | 3 |" in text
    attrs = conditions_attrs(effect_fit)
    sentences = effect_sentences(effect_fit)
    clear = [e for e in attrs["effects"] if e["clear"]]
    if attrs["trustworthy"]:
        assert len(sentences) == len(clear) and all(f"typical {e['parameter']} " in s for e, s in zip(clear, sentences))
        assert "lower than under reward_every=[]" in sentences[0]
    else:
        assert len(sentences) == 1 and "not reported as findings" in sentences[0]
    assert all(s in text for s in sentences)
    null_sentences = effect_sentences(null_fit)
    assert len(null_sentences) == 1 and ("No parameter" in null_sentences[0] or "not reported" in null_sentences[0])
    # the sentence of a finding, from the same posterior marked trustworthy
    trusted = effect_fit.copy()
    verdict = json.loads(trusted.attrs["verdict"])
    verdict.update(trustworthy=True, causes=[])
    trusted.attrs["verdict"] = json.dumps(verdict)
    trusted.attrs["effects"] = json.dumps(condition_effects(effect_fit, trustworthy=True))
    (finding,) = [s for s in effect_sentences(trusted) if "typical excess " in s]
    assert "lower than under reward_every=[]" in finding and "normalised level units" in finding


def test_the_report_compares_conditions_from_the_fit_it_would_make(effect_fit, simulated_files, fits_dir):
    """`valuedyn report`'s conditions step on the two simulated runs, at the report settings
    the effect fit was made with: it finds that fit in the fits folder (no sampling), and its
    section, figures and report.json entry state effects only from a trustworthy fit, name
    files relative to the report folder and no absolute path."""
    from pathlib import Path

    from valuedyn.data import open_trajectory
    from valuedyn.papers._cli import ReportConfig
    from valuedyn.papers._report_conditions import (
        conditions_figures, conditions_json, conditions_markdown_section, report_conditions,
    )
    from valuedyn.papers._report_results import Section

    paths = [Path(simulated_files["a"]), Path(simulated_files["b"])]
    loaded = {p: open_trajectory(p) for p in paths}
    sections = [Section(p, BEHAVIOUR, ["overshoot", "logistic_onset"], ()) for p in paths]
    config = ReportConfig(trajectories=tuple(map(str, paths)), out=str(fits_dir.parent), chains=4, draws=1000,
                          warmup=1000, rng_seed=5, max_tree_depth=10)
    result = report_conditions(sections, loaded, config, fits_dir)
    assert result.compared and result.differing == ("reward_every",) and not result.errors and not result.text
    assert [c["trajectories"] for c in result.conditions] == [["a.nc"], ["b.nc"]]
    assert result.cached == {BEHAVIOUR: True}  # the report's settings make the same fit: reused
    attrs = conditions_attrs(load_fit(result.fits[BEHAVIOUR]))
    conditions = conditions_json(result, fits_dir.parent)
    fit = conditions["fits"][BEHAVIOUR]
    assert fit["file"] == f"{fits_dir.name}/{result.fits[BEHAVIOUR].name}"  # relative to the report folder
    assert fit["trustworthy"] == attrs["trustworthy"] == attrs["verdict"]["trustworthy"]
    assert fit["seeds_per_condition"] == {"reward_every=[]": 3, "reward_every=[place_plant]": 3}
    if fit["trustworthy"]:
        assert "excess: reward_every=[place_plant] vs reward_every=[]" in fit["clear_effects"]
    else:
        assert not fit["clear_effects"] and "not reported as findings" in fit["sentences"][0]
    markdown = "\n".join(conditions_markdown_section(result))
    assert markdown.startswith("## Across conditions") and "| reward_every=[place_plant] | b.nc |" in markdown
    assert all(sentence in markdown for sentence in fit["sentences"])
    figures = conditions_figures(result)
    for name in ("effects", "fits"):
        stem = f"conditions_overshoot_unlock_place_plant_{name}"
        assert figures[stem]["png"].startswith(b"\x89PNG") and f"](figures/{stem}.png)" in markdown
    assert str(fits_dir.parent) not in json.dumps(conditions) + markdown  # no absolute paths
    # the motif model planned in only one run: nothing compared, said in one line
    partial = report_conditions([sections[0], Section(paths[1], BEHAVIOUR, ["logistic_onset"], ())], loaded, config,
                                fits_dir)
    assert not partial.fits and "nothing to compare" in partial.text
