"""Fit cache keys cannot serve a stale fit: a changed model definition (prior, equation),
fitting code or numpyro / jax release gives a new key; documentation does not.

No sampling here: a new key is what makes ``run_plan`` refit (its index is looked up by key)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from pathlib import Path

import numpyro.distributions as dist
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.fitting import FitJob, FitSettings
from valuedyn.fitting.pipeline import _cache
from valuedyn.fitting.settings import ConditionsConfig
from valuedyn.models import Model, get_model, register_model
from valuedyn.models import overshoot

PROBE = "cache_key_probe"
SHA = "ab" * 32


def _register(**changes) -> None:
    """Register overshoot's definition as PROBE, with ``changes`` to its spec."""
    spec = dataclasses.replace(overshoot.spec(), name=PROBE, **changes)
    register_model(PROBE, lambda **options: Model(spec, **options))


def _key(model: str = PROBE) -> str:
    job = FitJob(Path("run.nc"), SHA, "event:place_plant", model, (0, 1), FitSettings())
    return job.cache_key()


@pytest.fixture
def probe_model():
    from valuedyn.models import _registry

    _register()
    yield
    # unregistered again: a plan of every registered model (in a later test on this worker) never names it
    _registry._FACTORIES.pop(PROBE, None)
    for key in [k for k in _registry._CACHE if k[0] == PROBE]:
        del _registry._CACHE[key]


def test_editing_a_prior_refits(probe_model):
    before = _key()
    _register()  # the same definition registered anew: the same key (nothing random in it)
    assert _key() == before
    alpha = overshoot.PARAMETERS[1]
    edited = tuple(dataclasses.replace(p, prior=dist.LogNormal(math.log(30.0), 0.8)) if p is alpha else p
                   for p in overshoot.PARAMETERS)
    _register(parameters=edited)
    assert _key() != before
    # the settings part is the same: only the definition moved the key
    job = FitJob(Path("run.nc"), SHA, "event:place_plant", PROBE, (0, 1), FitSettings())
    _register()
    assert FitJob(Path("run.nc"), SHA, "event:place_plant", PROBE, (0, 1), FitSettings()).settings_key() \
        == job.settings_key()
    assert _key() == before


def test_editing_an_equation_or_a_bound_refits_and_documentation_does_not(probe_model):
    before = _key()
    spec = overshoot.spec()
    _register(closed_form=(spec.closed_form[0] * 1.01, spec.closed_form[1]))
    assert _key() != before
    _register(initial=(spec.initial[0], spec.initial[1] * 2))
    assert _key() != before
    bounded = tuple(dataclasses.replace(p, upper=5.0) if p.name == "excess" else p for p in overshoot.PARAMETERS)
    _register(parameters=bounded)
    assert _key() != before
    reworded = tuple(dataclasses.replace(p, doc=p.doc + " (reworded)") for p in overshoot.PARAMETERS)
    _register(summary="another summary", parameters=reworded)
    assert _key() == before


def test_model_options_enter_the_key():
    model = get_model("replicator_mutator")
    assert _cache.model_digest(model) != _cache.model_digest(get_model("replicator_mutator", ode_steps=256))
    assert _cache.model_digest(model) == _cache.model_digest(get_model("replicator_mutator"))


def test_editing_fitting_code_refits_and_a_comment_does_not(tmp_path, monkeypatch):
    package = tmp_path / "cache_key_code_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "_likelihood.py"
    module.write_text('"""A stand-in for a module of the fitting code."""\n\nSCALE = 1.0\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_cache, "FIT_CODE", _cache.FIT_CODE + ("cache_key_code_probe",))
    before = _key("overshoot")
    module.write_text('"""A stand-in, its docstring reworded."""\n\n# a comment\nSCALE = 1.0  # why\n')
    assert _key("overshoot") == before
    module.write_text('"""A stand-in for a module of the fitting code."""\n\nSCALE = 2.0\n')
    assert _key("overshoot") != before
    (package / "_new.py").write_text("OFFSET = 0\n")  # a module added to a package counts too
    changed = _key("overshoot")
    (package / "_new.py").unlink()
    assert changed != _key("overshoot")


def test_the_shipped_fitting_code_is_hashed():
    digest = _cache.code_digest(_cache.FIT_CODE)
    assert digest == _cache.code_digest(_cache.FIT_CODE) and len(digest) == 64
    assert digest != _cache.code_digest(tuple(m for m in _cache.FIT_CODE if m != "valuedyn.fitting.inference"))


def test_a_numpyro_or_jax_release_refits(monkeypatch):
    before = _key("overshoot")
    assert _cache.fit_definition("overshoot")["libraries"]["numpyro"] == importlib.metadata.version("numpyro")
    real = importlib.metadata.version
    for library in ("numpyro", "jax"):
        # another release installed (the environment is substituted: one numpyro / jax can be installed here)
        monkeypatch.setattr(importlib.metadata, "version", lambda name, lib=library: "999.0" if name == lib else real(name))
        assert _key("overshoot") != before
        monkeypatch.undo()
    assert _key("overshoot") == before


def test_conditions_keys_follow_the_definition_too(probe_model):
    config = ConditionsConfig(trajectories=("a.nc", "b.nc"), model=PROBE, behaviour="event:place_plant",
                              out="unused.nc")
    before = _cache.conditions_cache_key([SHA, SHA], config)
    alpha = overshoot.PARAMETERS[1]
    _register(parameters=tuple(dataclasses.replace(p, prior=dist.LogNormal(math.log(30.0), 0.5)) if p is alpha
                               else p for p in overshoot.PARAMETERS))
    assert _cache.conditions_cache_key([SHA, SHA], config) != before


def test_unknown_fit_code_is_refused(monkeypatch):
    monkeypatch.setattr(_cache, "FIT_CODE", ("valuedyn.fitting.no_such_module",))
    with pytest.raises(ValuedynError, match="names no module"):
        _key("overshoot")


def test_conditions_keys_follow_the_conditions_model_code(monkeypatch):
    config = ConditionsConfig(trajectories=("a.nc", "b.nc"), model="overshoot", behaviour="event:place_plant",
                              out="unused.nc")
    before = _cache.conditions_cache_key([SHA, SHA], config)
    assert "valuedyn.fitting.analyses._conditions" in _cache.CONDITIONS_CODE
    # the conditions model's module hashed as if edited: a statement added to its syntax tree
    real = _cache.code_digest
    monkeypatch.setattr(_cache, "code_digest", lambda modules: real(modules) + ("x" if "valuedyn.fitting.analyses._conditions"
                                                                                   in modules else ""))
    assert _cache.conditions_cache_key([SHA, SHA], config) != before
    assert _cache.fit_definition("overshoot")["code"] == real(_cache.FIT_CODE)  # single fits do not hash it
