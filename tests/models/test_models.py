"""Every registered model: finite solutions over the prior, closed form = dsolve = diffrax,
analysis against independent numbers, finite gradients, clear errors, the CLI."""

from __future__ import annotations

import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

try:  # jax >= 0.8 exposes the context manager at the top level
    from jax import enable_x64
except ImportError:  # pragma: no cover - older jax
    from jax.experimental import enable_x64

from valuedyn._errors import ValuedynError
from valuedyn.cli import main
from valuedyn.models import Model, get_model, list_models
from valuedyn.models._base import SINCE, to_plain

MODELS = list_models()
CLOSED = [n for n in MODELS if get_model(n).closed_form]
N_DRAWS = 64


def _draws(model: Model, n: int, seed: int = 0) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return jax.vmap(model.sample_prior)(keys)


def _one(draws, i):
    return {k: v[i] for k, v in draws.items()}


def test_registry_lists_every_model_and_refuses_unknown_names():
    assert {"logistic_onset", "overshoot"} <= set(MODELS)
    assert list(MODELS) == sorted(MODELS)
    with pytest.raises(ValuedynError, match=r"unknown model 'nope'; known models: .*logistic_onset.*overshoot"):
        get_model("nope")


@pytest.mark.parametrize("name", MODELS)
def test_model_declares_consistent_parts(name):
    model = get_model(name)
    assert model.name == name and model.summary
    obs = {o.name for o in model.observables}
    assert set(model.applies_to) <= {"unlock", "event", "action", "diversity"}
    assert set(model.applies_to.values()) <= obs
    draw = model.sample_prior(jax.random.PRNGKey(1))
    assert set(draw) == {p.name for p in model.parameters}
    model.validate_params({k: float(v) for k, v in draw.items()})  # a prior draw is valid


@pytest.mark.parametrize("name", MODELS)
def test_solutions_are_finite_over_many_prior_draws(name):
    model = get_model(name)
    draws = _draws(model, N_DRAWS)
    t = jnp.linspace(0.0, 1.0, 41)
    obs, ok = jax.jit(jax.vmap(lambda p: model.solve(p, t)))(draws)
    assert bool(jnp.all(ok)), f"{int(jnp.sum(~ok))} failed solves"
    kinds = {o.name: o.kind for o in model.observables}
    for key, value in obs.items():
        assert value.shape == (N_DRAWS, t.shape[0])
        assert bool(jnp.all(jnp.isfinite(value))), key
        if kinds[key] in ("positive", "probability"):
            assert float(jnp.min(value)) >= -1e-5, key
        if kinds[key] == "probability":
            assert float(jnp.max(value)) <= 1 + 1e-5, key


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_is_the_dsolve_solution(name):
    """The stable closed form used in JAX equals sympy's dsolve solution (random points)."""
    model = get_model(name)
    ours = [to_plain(sp.sympify(e).subs(model.spec.derived)) for e in model.spec.closed_form]
    theirs = [to_plain(e) for e in model.dsolve()]
    rng = random.Random(0)
    syms = list(model.spec.symbols.values())
    for _ in range(5):
        point = {s: sp.Rational(rng.randint(5, 95), 100) for s in syms}
        for sym, p in zip(syms, model.parameters):
            if p.unit == "1/tau":
                point[sym] = sp.Rational(rng.randint(100, 4000), 100)
        point[SINCE] = sp.Rational(rng.randint(0, 100), 100)
        for a, b in zip(ours, theirs):
            va, vb = complex(a.subs(point).evalf(30)), complex(b.subs(point).evalf(30))
            assert abs(va - vb) <= 1e-20 + 1e-15 * abs(vb)


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_equals_diffrax_solution(name):
    model = get_model(name)
    with enable_x64():
        draws = {k: jnp.asarray(np.asarray(v), jnp.float64) for k, v in _draws(model, 8, seed=3).items()}
        t = jnp.linspace(0.0, 1.0, 51, dtype=jnp.float64)

        def both(p):
            closed, ok_c = model.solve_closed(p, t)
            ode, ok_o = model.solve_ode(p, t, rtol=1e-10, atol=1e-30, max_steps=20000)
            return closed, ode, ok_c & ok_o

        closed, ode, ok = jax.jit(jax.vmap(both))(draws)
        assert bool(jnp.all(ok))
        for key in closed:
            np.testing.assert_allclose(np.asarray(ode[key]), np.asarray(closed[key]), rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("name", MODELS)
def test_analysis_matches_independent_numbers(name):
    """Fixed points satisfy f(x*) = 0 and their eigenvalues equal those of jax.jacfwd."""
    model = get_model(name)
    draws = _draws(model, 3, seed=7)
    for i in range(3):
        params = {k: float(v[i]) for k, v in draws.items()}
        result = model.analysis(params)
        assert result.fixed_points, "no fixed point found"
        with enable_x64():
            p64 = {k: jnp.float64(v) for k, v in params.items()}
            for fp in result.fixed_points:
                x = jnp.asarray([fp.values[s] for s in model.state_names], jnp.float64)
                f = model.vector_field(p64, x)
                scale = 1.0 + float(jnp.max(jnp.abs(jnp.asarray([float(v) for v in p64.values()]))))
                assert float(jnp.max(jnp.abs(f))) < 1e-9 * scale
                jac = jax.jacfwd(lambda y: model.vector_field(p64, y))(x)
                numeric = np.sort_complex(np.linalg.eigvals(np.asarray(jac)))
                symbolic = np.sort_complex(np.asarray(fp.eigenvalues_numeric))
                np.testing.assert_allclose(symbolic, numeric, rtol=1e-7, atol=1e-9)
                expect = [math.inf if e.real == 0 else 1 / abs(e.real) for e in fp.eigenvalues_numeric]
                np.testing.assert_allclose(fp.timescales_numeric, expect)
                stable = all(e.real < 0 for e in fp.eigenvalues_numeric)
                assert (fp.stability == "stable") == stable


@pytest.mark.parametrize("name", MODELS)
def test_gradients_wrt_every_parameter_are_finite(name):
    model = get_model(name)
    draws = _draws(model, 4, seed=11)
    t = jnp.linspace(0.0, 1.0, 21)

    def loss(p):
        obs, _ = model.solve(p, t)
        return sum(jnp.sum(v) for v in obs.values())

    grads = jax.jit(jax.vmap(jax.grad(loss)))(draws)
    assert set(grads) == {p.name for p in model.parameters}
    for key, g in grads.items():
        assert bool(jnp.all(jnp.isfinite(g))), key
    # the gradient is informative, not identically zero, for the rates and the change point
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in grads.values())


@pytest.mark.parametrize("name", MODELS)
def test_simulate_adds_bounded_noise(name):
    model = get_model(name)
    params = model.typical_params()
    t = jnp.linspace(0.0, 1.0, 400)
    target = next(iter(model.applies_to.values()))
    clean, _ = model.solve(params, t)
    noisy = model.simulate(jax.random.PRNGKey(0), params, t, noise=0.01, observable=target)
    assert noisy.shape == t.shape and bool(jnp.all(jnp.isfinite(noisy)))
    resid = np.asarray(noisy - clean[target])
    assert 0.005 < resid.std() < 0.02
    with pytest.raises(ValuedynError, match="observables"):
        model.simulate(jax.random.PRNGKey(0), params, t, observable="nope")


@pytest.mark.parametrize("name", MODELS)
def test_invalid_parameters_are_refused_outside_jit(name):
    model = get_model(name)
    good = model.typical_params()
    rate = next(p.name for p in model.parameters if p.unit == "1/tau")
    with pytest.raises(ValuedynError, match=rf"parameter {rate} .* must lie in \[0"):
        model.validate_params({**good, rate: -1.0})
    times = [p.name for p in model.parameters if p.unit == "tau"]
    for name_t in times:
        with pytest.raises(ValuedynError, match=rf"parameter {name_t} .* must lie in \[0.0, 1.0\]"):
            model.validate_params({**good, name_t: 1.5})
    missing = dict(good)
    missing.pop(model.parameters[0].name)
    with pytest.raises(ValuedynError, match="missing"):
        model.validate_params(missing)
    with pytest.raises(ValuedynError, match="unknown"):
        model.validate_params({**good, "bogus": 1.0})
    with pytest.raises(ValuedynError, match="finite"):
        model.validate_params({**good, model.parameters[0].name: float("nan")})


def test_overshoot_refuses_alpha_not_above_beta():
    model = get_model("overshoot")
    good = model.typical_params()
    for ratio in (1.0, 0.0):
        with pytest.raises(ValuedynError, match=r"alpha > beta"):
            model.validate_params({**good, "ratio": ratio})
    with pytest.raises(ValuedynError, match="unknown \\['beta'\\]"):
        model.validate_params({**good, "beta": 3.0})


def test_overshoot_rises_above_optimum_then_relaxes_and_jumps_at_t0():
    model = get_model("overshoot")
    p = {"t0": 0.3, "alpha": 60.0, "ratio": 0.1, "floor": 0.05, "optimum": 0.4, "excess": 0.6}
    t = jnp.asarray([0.0, 0.299, 0.301, 0.35, 0.99])
    solve_both = jax.jit(lambda q: (model.solve_closed(q, t), model.solve_ode(q, t)))
    for obs, ok in solve_both(p):
        assert bool(ok)
        level, target = np.asarray(obs["level"]), np.asarray(obs["target"])
        assert level[0] == pytest.approx(0.05, abs=1e-6) and level[1] == pytest.approx(0.05, abs=1e-6)
        assert target[1] == pytest.approx(0.05, abs=1e-6)  # nothing before the discovery
        # the target jumps at t0 (not smoothed): 1e-3 after t0 it is at the peak less its slow decay
        assert target[2] == pytest.approx(0.4 + 0.6 * math.exp(-6.0 * 0.001), rel=1e-4)
        assert level[3] > 0.6  # fast rise above the optimum
        assert abs(level[4] - 0.4) < 0.05 * 0.6  # slow relaxation towards it


def test_stiff_solver_agrees_with_default():
    model_stiff = get_model("overshoot", stiff=True)
    model = get_model("overshoot")
    p = model.typical_params()
    t = jnp.linspace(0.0, 1.0, 11)
    (a, ok_a), (b, ok_b) = jax.jit(lambda q: (model_stiff.solve_ode(q, t), model.solve_ode(q, t)))(p)
    assert bool(ok_a) and bool(ok_b)
    np.testing.assert_allclose(np.asarray(a["level"]), np.asarray(b["level"]), rtol=1e-3, atol=1e-5)


def test_failed_ode_solve_reports_not_ok_without_raising():
    model = get_model("overshoot")
    p = model.typical_params()
    t = jnp.linspace(0.0, 1.0, 11)
    obs, ok = jax.jit(lambda q: model.solve_ode(q, t, max_steps=2))(p)
    assert not bool(ok)
    assert bool(jnp.all(jnp.isfinite(obs["level"])))


def test_cli_lists_models_with_parameters(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out
        for p in get_model(name).parameters:
            assert p.name in out


def test_cli_shows_equations_and_analysis(capsys):
    assert main(["models", "overshoot"]) == 0
    out = capsys.readouterr().out
    assert "dy/dt = -alpha*(-u + y)" in out
    assert "eigenvalues: -beta, -alpha" in out or "eigenvalues: -alpha, -beta" in out
    assert "stable" in out and "timescales" in out and "1/beta" in out


def test_cli_unknown_model_exits_2(capsys):
    assert main(["models", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "overshoot" in err
