"""One vocabulary: every option declared once (valuedyn.fitting.settings), each command's
flags and defaults derived from it, SBC at the fits' settings, one reader of fit attributes.

Nothing here samples: configs, parsers and attribute dictionaries only.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import valuedyn.fitting
from valuedyn._errors import ValuedynError
from valuedyn.cli import build_parser
from valuedyn.fitting import settings
from valuedyn.fitting.settings import CONDITIONS, FIT, OPTIONS, REPORT, SAMPLER_OPTIONS, SBC, USES, FitSettings

#: command -> the use whose defaults its sampler options take
COMMAND_USES = {"fit": FIT, "conditions": CONDITIONS, "sbc": SBC, "fit-batch": REPORT, "report": REPORT}
#: a config field -> the option it is (the plan's configs call the sampler's seed rng_seed)
FIELD_OPTION = {"rng_seed": "seed"}


def _defaults(command: str) -> dict:
    parser, config_cls, _ = build_parser(command)
    return {f.name: f.default for f in dataclasses.fields(config_cls)}, config_cls


def test_the_module_docstring_shows_every_use_side_by_side_with_its_reasons():
    assert settings.defaults_table() in settings.__doc__
    assert settings.defaults_reasons() in settings.__doc__
    for use in USES:
        assert all(name in SAMPLER_OPTIONS for name in use.why), use.use


@pytest.mark.parametrize("use", [REPORT, CONDITIONS, SBC], ids=lambda u: u.use)
def test_every_default_that_differs_from_a_single_fit_says_why(use):
    differs = [name for name in SAMPLER_OPTIONS if getattr(use, name) != getattr(FIT, name)]
    assert differs and not [name for name in differs if name not in use.why], use.use


@pytest.mark.parametrize("command", sorted(COMMAND_USES))
def test_every_command_takes_its_sampler_defaults_from_its_use(command):
    defaults, _ = _defaults(command)
    use = COMMAND_USES[command]
    sampler = {name: value for name, value in defaults.items() if FIELD_OPTION.get(name, name) in SAMPLER_OPTIONS}
    assert len(sampler) >= 6, command
    for name, value in sampler.items():
        assert value == getattr(use, FIELD_OPTION.get(name, name)), (command, name)


def test_the_plan_settings_are_the_report_defaults():
    plan = FitSettings()
    for field in dataclasses.fields(FitSettings):
        assert getattr(plan, field.name) == getattr(REPORT, FIELD_OPTION.get(field.name, field.name)), field.name


@pytest.mark.parametrize("command", ["fit", "check", "compare", "sbc", "fit-batch", "conditions", "report"])
def test_a_shared_option_reads_the_same_on_every_command(command):
    parser, config_cls, _ = build_parser(command)
    helps = {action.dest: action.help or "" for action in parser._actions}
    for field in dataclasses.fields(config_cls):
        name = FIELD_OPTION.get(field.name, field.name)
        if name in OPTIONS and field.name in helps and field.metadata.get("help", "").startswith(OPTIONS[name].help):
            assert helps[field.name].startswith(OPTIONS[name].help)
            assert tuple(field.metadata.get("choices") or ()) == tuple(OPTIONS[name].choices or ())
    declared = [f.name for f in dataclasses.fields(config_cls)
                if FIELD_OPTION.get(f.name, f.name) in OPTIONS and f.metadata.get("help", "").startswith(
                    OPTIONS[FIELD_OPTION.get(f.name, f.name)].help)]
    if command not in COMMAND_USES:  # check's seed is the randomised PIT's, not a sampler's
        return
    sampler = [f.name for f in dataclasses.fields(config_cls) if FIELD_OPTION.get(f.name, f.name) in SAMPLER_OPTIONS]
    assert set(sampler) <= set(declared), f"{command}: sampler options not taken from OPTIONS: {set(sampler) - set(declared)}"


def test_sbc_calibrates_the_sampler_the_fits_run():
    from valuedyn.fitting.inference._fit import settings_from
    from valuedyn.fitting.judge._sbc import default_settings
    from valuedyn.models import get_model

    for name in SAMPLER_OPTIONS:
        assert getattr(SBC, name) == getattr(REPORT, name), name
    plan = FitSettings()
    for model in ("logistic_onset", "replicator_mutator"):  # a closed form and an ODE model (its own tree depth)
        fitted = settings_from(plan.fit_config(trajectory="-", behaviour="unlock:place_plant", model=model))
        assert default_settings(get_model(model)) == fitted, model


def test_the_vocabulary_matches_the_rooms_that_use_it():
    from valuedyn.fitting.inference._observation import OBSERVATION_MODELS
    from valuedyn.fitting.inference._select import DIVERSITY_NAMES, KIND_FAMILY
    from valuedyn.models import BEHAVIOUR_KINDS

    assert tuple(OBSERVATION_MODELS) == settings.OBSERVATION_MODEL_NAMES
    assert settings.BEHAVIOUR_KINDS == tuple(BEHAVIOUR_KINDS) and set(KIND_FAMILY) == set(BEHAVIOUR_KINDS)
    assert sorted(b.partition(":")[2] for b in settings.DIVERSITY_BEHAVIOURS) == sorted(DIVERSITY_NAMES)


@pytest.mark.parametrize("config, message", [
    (settings.SBCConfig(model="logistic_onset", out="-", target_accept=0.3), "--target-accept must lie in"),
    (settings.SBCConfig(model="logistic_onset", out="-", chains=0), "--chains, --draws and --warmup must be >= 1"),
    (settings.SBCConfig(model="logistic_onset", out="-", ode_max_tree_depth=16), "--ode-max-tree-depth must lie in 1..15"),
    (settings.ConditionsConfig(trajectories=("a", "b"), model="m", behaviour="b", out="-", max_tree_depth=0),
     "--max-tree-depth must lie in 1..15"),
    (settings.FitConfig(trajectory="-", model="m", behaviour="b", out="-", pooling="partial"), "--pooling must be one of"),
    (settings.FitConfig(trajectory="-", model="m", behaviour="b", out="-", min_draws=-1), "--min-draws must be >= 0"),
    (FitSettings(saturated_draws=-1), "--saturated-draws must be >= 0"),
])
def test_one_validator_refuses_a_bad_sampler_option_of_any_command(config, message):
    with pytest.raises(ValuedynError, match=message):
        settings.validate_sampler_config(config)


def test_the_plan_settings_refuse_a_bad_ode_tree_depth():
    with pytest.raises(ValuedynError, match="--ode-max-tree-depth must lie in 1..15; received 0"):
        FitSettings(ode_max_tree_depth=0).validate()


# ---------------------------------------------------------------- one reader of fit attributes
def test_fit_attrs_decodes_every_json_attribute():
    from valuedyn.fitting.inference._store import CONDITIONS_JSON_ATTRS, JSON_ATTRS, fit_attrs

    values = {key: {"key": key} for key in JSON_ATTRS}
    single = SimpleNamespace(attrs={**{k: json.dumps(v) for k, v in values.items()}, "pooling": "hierarchical",
                                    "trajectory": "run.nc", "trajectory_sha256": "12e45", "model": "overshoot"})
    decoded = fit_attrs(single)
    assert {k: decoded[k] for k in JSON_ATTRS} == values
    # a single fit's path and hash stay text (a hash of digits and one e would parse as a number)
    assert decoded["trajectory"] == "run.nc" and decoded["trajectory_sha256"] == "12e45" and decoded["model"] == "overshoot"
    conditions = SimpleNamespace(attrs={"pooling": "conditions", "trajectory": json.dumps(["a.nc", "b.nc"]),
                                        "trajectory_sha256": json.dumps({"a.nc": "1", "b.nc": "2"})})
    decoded = fit_attrs(conditions)
    assert decoded["trajectory"] == ["a.nc", "b.nc"] and decoded["trajectory_sha256"] == {"a.nc": "1", "b.nc": "2"}
    assert set(CONDITIONS_JSON_ATTRS) == {"trajectory", "trajectory_sha256"}


def test_no_module_but_the_store_parses_a_fit_attribute_by_hand():
    """``json.loads`` of anything read from ``attrs`` happens in the store only (the
    conditions' reading of a trajectory's training config, not a fit's, is its own helper)."""
    root = Path(valuedyn.fitting.__file__).parent
    allowed = {root / "inference" / "_store.py"}
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path in allowed:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "loads"
                    and "attrs" in ast.unparse(node.args[0] if node.args else node)):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, "fit attributes parsed by hand (use fit_attrs):\n" + "\n".join(offenders)
