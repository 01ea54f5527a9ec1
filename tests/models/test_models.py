"""Every registered model: finite solutions and gradients over the prior, closed form =
dsolve = diffrax, analysis against independent numbers, clear errors.

Compiling a diffrax solve (and its gradient) costs seconds on a small CPU, so each model's
batched solve-plus-gradient is compiled once (``_batched``) on a fixed grid and batch size
and reused by every test that needs a diffrax solution.
"""

from __future__ import annotations

import functools
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
from valuedyn.models import BEHAVIOUR_KINDS, get_model, list_models
from valuedyn.models._base import SINCE, to_plain

MODELS = list_models()
CLOSED = [n for n in MODELS if get_model(n).closed_form]
BATCH = 64
T_GRID = jnp.linspace(0.0, 1.0, 41)


@functools.cache
def _draws(name: str, seed: int = 0) -> dict[str, jax.Array]:
    return get_model(name).sample_prior(jax.random.PRNGKey(seed), (BATCH,))


@functools.cache
def _batched(name: str):
    """Solve plus gradient of the sum of all observables on T_GRID for a batch of draws,
    compiled once per model: vmap for closed forms; lax.map for diffrax solves, whose
    vmapped reverse-mode compile costs about twice as much on a small CPU."""
    model = get_model(name)

    def loss(p):
        obs, ok = model.solve(p, T_GRID)
        return sum(jnp.sum(v) for v in obs.values()), (obs, ok)

    value_and_grad = jax.value_and_grad(loss, has_aux=True)
    if model.closed_form:
        return jax.jit(jax.vmap(value_and_grad))
    return jax.jit(lambda draws: jax.lax.map(value_and_grad, draws))


def _run(name: str, params: list[dict[str, float]] | dict[str, jax.Array]):
    """Solve a batch (a list of param dicts is padded to BATCH with its first entry) with
    the cached compile."""
    if isinstance(params, list):
        rows = params + [params[0]] * (BATCH - len(params))
        params = {k: jnp.asarray([r[k] for r in rows], jnp.float32) for k in rows[0]}
    (_, (obs, ok)), grads = _batched(name)(params)
    return obs, ok, grads


def test_registry_lists_every_model_and_refuses_unknown_names():
    assert {"logistic_onset", "overshoot", "replicator_mutator", "diversify_then_minimize", "stagewise"} <= set(MODELS)
    assert list(MODELS) == sorted(MODELS)
    with pytest.raises(ValuedynError, match=r"unknown model 'nope'; known models: .*logistic_onset.*overshoot"):
        get_model("nope")
    with pytest.raises(ValuedynError, match="does not take options"):
        get_model("overshoot", bogus=1)


@pytest.mark.parametrize("name", MODELS)
def test_model_declares_consistent_parts(name):
    model = get_model(name)
    assert model.name == name and model.summary
    obs = {o.name for o in model.observables}
    assert model.applies_to and set(model.applies_to) <= set(BEHAVIOUR_KINDS)
    assert set(model.applies_to.values()) <= obs
    draws = _draws(name)
    assert set(draws) == {p.name for p in model.parameters}
    for i in range(3):  # prior draws are valid parameters
        model.validate_params({k: float(v[i]) for k, v in draws.items()})


@pytest.mark.parametrize("name", MODELS)
def test_solutions_and_gradients_are_finite_over_many_prior_draws(name):
    model = get_model(name)
    obs, ok, grads = _run(name, _draws(name))
    assert bool(jnp.all(ok)), f"{int(jnp.sum(~ok))} failed solves"
    kinds = {o.name: o.kind for o in model.observables}
    assert set(obs) == set(kinds)
    for key, value in obs.items():
        assert value.shape == (BATCH, T_GRID.shape[0])
        assert bool(jnp.all(jnp.isfinite(value))), key
        if kinds[key] in ("positive", "probability"):
            assert float(jnp.min(value)) >= -1e-5, key
        if kinds[key] == "probability":
            assert float(jnp.max(value)) <= 1 + 1e-5, key
    # inference needs gradients with respect to every sampled parameter
    assert set(grads) == {p.name for p in model.parameters}
    for key, g in grads.items():
        assert bool(jnp.all(jnp.isfinite(g))), key
        assert float(jnp.max(jnp.abs(g))) > 0, key  # every parameter moves the solution somewhere


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


# stagewise3 runs the same code as stagewise; overshoot is checked with the stiff solver
# (Kvaerno5), the others with the default Tsit5.
@pytest.mark.parametrize("name", [n for n in CLOSED if n != "stagewise3"])
def test_closed_form_equals_diffrax_solution(name):
    stiff = name == "overshoot"
    model = get_model(name, stiff=stiff)
    draws = _draws(name, seed=3)
    with enable_x64():
        grid = jnp.linspace(0.0, 1.0, 51, dtype=jnp.float64)

        @jax.jit
        def both(p, t):
            closed, ok_c = model.solve_closed(p, t)
            ode, ok_o = model.solve_ode(p, t, rtol=1e-10, atol=1e-300, max_steps=20000)
            return closed, ode, ok_c & ok_o

        cases = [({k: jnp.float64(np.asarray(v[i])) for k, v in draws.items()}, grid) for i in range(6)]
        if name == "overshoot":
            # a grid crowding t0 from both sides: the solver restarts at the change point
            p = {"t0": 0.3, "alpha": 60.0, "ratio": 0.1, "floor": 0.05, "optimum": 0.4, "excess": 0.6}
            near = jnp.sort(jnp.concatenate([0.3 + jnp.geomspace(1e-6, 0.7, 25), 0.3 - jnp.geomspace(1e-6, 0.3, 25),
                                             jnp.asarray([0.3])]))
            cases.append(({k: jnp.float64(v) for k, v in p.items()}, near))
        for i, (p, t) in enumerate(cases):  # one compile for all cases
            closed, ode, ok = both(p, t)
            assert bool(ok)
            for key in closed:
                np.testing.assert_allclose(np.asarray(ode[key]), np.asarray(closed[key]), rtol=1e-6, atol=1e-9,
                                           err_msg=f"{key}, case {i}")
        if name == "overshoot":
            before, after = np.asarray(t) < 0.3, np.asarray(t) >= 0.3
            assert np.all(np.asarray(ode["target"])[before] == pytest.approx(0.05, abs=1e-12))
            # the target jumps to the peak at t0: not smoothed over by the solver
            assert np.asarray(ode["target"])[after][0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", ["overshoot", "logistic_onset"])
def test_rk4_grid_equals_closed_form_values_and_gradients(name):
    """The fixed-grid solver (what fits of ODE models use) against closed forms, in float64:
    values and the gradient of a weighted sum, t0 (where the grid restarts) included, on a
    grid crowding the change point."""
    model = get_model(name)
    draws = _draws(name, seed=5)
    with enable_x64():
        t = jnp.sort(jnp.concatenate([jnp.linspace(0.0, 1.0, 41), 0.35 + jnp.geomspace(1e-5, 0.3, 9),
                                      0.35 - jnp.geomspace(1e-5, 0.3, 9)]))
        weights = jnp.asarray(np.random.default_rng(0).normal(size=t.shape[0]))

        def total(p, method):
            obs, ok = model._solve_with(p, t, method)
            return jnp.sum(obs["level"] * weights), (obs, ok)

        both = jax.jit(lambda p: [jax.value_and_grad(total, has_aux=True)(p, m) for m in ("closed", "grid")])
        for i in range(4):
            p = {k: jnp.float64(np.asarray(v[i])) for k, v in draws.items()}
            if "t0" in p:
                p["t0"] = jnp.float64(0.35)  # the crowded grid's centre
            ((_, (closed, ok_c)), g_closed), ((_, (grid, ok_g)), g_grid) = both(p)
            assert bool(ok_c) and bool(ok_g)
            for key in closed:
                np.testing.assert_allclose(np.asarray(grid[key]), np.asarray(closed[key]), rtol=1e-6, atol=1e-6,
                                           err_msg=f"{key}, draw {i}")
            for key in g_closed:
                scale = max(1.0, abs(float(g_closed[key])))
                assert abs(float(g_grid[key]) - float(g_closed[key])) <= 1e-5 * scale, (key, i)


@pytest.mark.parametrize("name", [n for n in MODELS if n not in CLOSED])
def test_rk4_grid_matches_adaptive_solve_and_its_check_sees_a_coarse_grid(name):
    """ODE models: the default grid is within 1e-4 of diffrax's adaptive solve over prior
    draws (grid_error), and the same check reports a 16-step grid's error."""
    with enable_x64():
        t = jnp.linspace(0.0, 1.0, 61)
        params = {k: v[:8].astype(jnp.float64) for k, v in _draws(name, seed=11).items()}
        fine = jax.jit(jax.vmap(lambda p: get_model(name).grid_error(p, t)))(params)
        coarse = jax.jit(jax.vmap(lambda p: get_model(name, ode_steps=16).grid_error(p, t)))(params)
    assert np.all(np.isfinite(np.asarray(fine))) and float(jnp.max(fine)) < 1e-4, np.asarray(fine)
    with enable_x64():  # out to the trust analysis' horizon (tau = 4): as many steps per unit tau
        far_t = jnp.linspace(0.0, 4.0, 81)
        far = jax.jit(jax.vmap(lambda p: get_model(name).grid_error(p, far_t)))(params)
    assert float(jnp.max(far)) < 1e-4, np.asarray(far)
    assert float(jnp.max(coarse)) > 1e-3, np.asarray(coarse)
    assert get_model(name, ode_steps=0).ode_method == "ode" and get_model(name).ode_method == "grid"
    assert float(get_model(name, ode_steps=0).grid_error({k: v[0] for k, v in params.items()}, t)) == 0.0


def test_bad_ode_steps_and_a_grid_without_steps_are_refused():
    with pytest.raises(ValuedynError, match="ode_steps must be >= 0"):
        get_model("replicator_mutator", ode_steps=-1)
    adaptive = get_model("replicator_mutator", ode_steps=0)
    with pytest.raises(ValuedynError, match="ode_steps=0: no grid"):
        adaptive.states(adaptive.typical_params(), T_GRID, method="grid")
    with pytest.raises(ValuedynError, match="method must be auto, closed, grid or ode"):
        adaptive.states(adaptive.typical_params(), T_GRID, method="rk4")


@pytest.mark.parametrize("name", MODELS)
def test_analysis_matches_independent_numbers(name):
    """Fixed points satisfy f(x*) = 0 and their eigenvalues equal those of jax.jacfwd."""
    model = get_model(name)
    draws = _draws(name, seed=7)
    for i in range(3):
        params = {k: float(v[i]) for k, v in draws.items()}
        result = model.analysis(params)
        assert result.fixed_points, "no fixed point found"
        assert any(fp.stability == "stable" for fp in result.fixed_points)
        with enable_x64():
            p64 = {k: jnp.float64(v) for k, v in params.items()}
            for fp in result.fixed_points:
                x = jnp.asarray([fp.values[s] for s in model.state_names], jnp.float64)
                f = model.vector_field(p64, x)
                scale = 1.0 + max(abs(v) for v in params.values())
                assert float(jnp.max(jnp.abs(f))) < 1e-9 * scale
                jac = jax.jacfwd(lambda y: model.vector_field(p64, y))(x)
                numeric = np.sort_complex(np.linalg.eigvals(np.asarray(jac)))
                symbolic = np.sort_complex(np.asarray(fp.eigenvalues_numeric))
                np.testing.assert_allclose(symbolic, numeric, rtol=1e-7, atol=1e-9)
                expect = [math.inf if e.real == 0 else 1 / abs(e.real) for e in fp.eigenvalues_numeric]
                np.testing.assert_allclose(fp.timescales_numeric, expect)
                assert (fp.stability == "stable") == all(e.real < 0 for e in fp.eigenvalues_numeric)
        assert model.name in result.format() and "eigenvalues" in result.format()


@pytest.mark.parametrize("name", CLOSED)
def test_simulate_adds_bounded_noise(name):
    model = get_model(name)
    params = model.typical_params()
    t = jnp.linspace(0.0, 1.0, 400)
    target = next(iter(model.applies_to.values()))
    clean, _ = model.solve(params, t)
    noisy = jax.jit(lambda key, p: model.simulate(key, p, t, noise=0.01, observable=target))(jax.random.PRNGKey(0), params)
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
    times = [p for p in model.parameters if p.unit == "tau"]
    assert times
    for time in times:  # an onset may precede the window (logistic_onset, overshoot: lower bound -0.05)
        assert time.lower in (0.0, -0.05) and time.upper == 1.0
        for bad in (1.5, time.lower - 0.1):
            with pytest.raises(ValuedynError, match=rf"parameter {time.name} .* must lie in \[{time.lower}, 1.0\]"):
                model.validate_params({**good, time.name: bad})
    missing = dict(good)
    missing.pop(model.parameters[0].name)
    with pytest.raises(ValuedynError, match="missing"):
        model.validate_params(missing)
    with pytest.raises(ValuedynError, match="unknown"):
        model.validate_params({**good, "bogus": 1.0})
    with pytest.raises(ValuedynError, match="finite"):
        model.validate_params({**good, model.parameters[0].name: float("nan")})
    with pytest.raises(ValuedynError, match="must be a number"):
        model.validate_params({**good, model.parameters[0].name: "abc"})


def test_overshoot_refuses_alpha_not_above_beta():
    model = get_model("overshoot")
    good = model.typical_params()
    for ratio in (1.0, 0.0):
        with pytest.raises(ValuedynError, match=r"alpha > beta"):
            model.validate_params({**good, "ratio": ratio})
    with pytest.raises(ValuedynError, match="unknown \\['beta'\\]"):
        model.validate_params({**good, "beta": 3.0})
    derived = model.derived_quantities(good)
    assert float(derived["beta"]) == pytest.approx(good["ratio"] * good["alpha"], rel=1e-6)


def test_overshoot_rises_above_optimum_then_relaxes():
    model = get_model("overshoot")
    p = {"t0": 0.3, "alpha": 60.0, "ratio": 0.1, "floor": 0.05, "optimum": 0.4, "excess": 0.6}
    t = jnp.asarray([0.0, 0.299, 0.301, 0.35, 0.99])
    obs, ok = jax.jit(lambda q: model.solve(q, t))(p)
    assert bool(ok)
    level, target = np.asarray(obs["level"]), np.asarray(obs["target"])
    assert level[0] == pytest.approx(0.05, abs=1e-6) and level[1] == pytest.approx(0.05, abs=1e-6)
    assert target[1] == pytest.approx(0.05, abs=1e-6)  # nothing before the discovery
    # the target jumps at t0: 1e-3 after t0 it is at the peak less its slow decay
    assert target[2] == pytest.approx(0.4 + 0.6 * math.exp(-6.0 * 0.001), rel=1e-4)
    assert level[3] > 0.6  # fast rise above the optimum
    assert abs(level[4] - 0.4) < 0.05 * 0.6  # slow relaxation towards it


def test_failed_ode_solve_reports_not_ok_without_raising():
    """An extremely stiff draw exhausts max_steps: ok=False and finite zeros for it, the
    other draws unaffected, no exception (inside jit and lax.map)."""
    name = "diversify_then_minimize"
    good = get_model(name).typical_params()
    obs, ok, _ = _run(name, [good, {**good, "k": 1e8}])
    assert bool(ok[0]) and not bool(ok[1])
    reference, _, _ = _run(name, [good])
    for key, value in obs.items():
        assert bool(jnp.all(jnp.isfinite(value)))
        assert float(jnp.max(jnp.abs(value[1]))) == 0.0
        np.testing.assert_allclose(np.asarray(value[0]), np.asarray(reference[key][0]), rtol=1e-6)


def test_sample_prior_shapes():
    model = get_model("overshoot")
    single = model.sample_prior(jax.random.PRNGKey(0))
    assert set(single) == {p.name for p in model.parameters}
    assert all(v.shape == () for v in single.values())
    assert all(v.shape == (BATCH,) for v in _draws("overshoot").values())


def test_stagewise_transition_times_are_ordered_and_stage_count_is_a_choice():
    model = get_model("stagewise3")
    names3 = [p.name for p in model.parameters]
    assert [p.name for p in get_model("stagewise", stages=3).parameters] == names3
    assert "frac3" in names3 and "frac3" not in [p.name for p in get_model("stagewise").parameters]
    draws = _draws("stagewise3")
    times = jax.vmap(model.derived_quantities)(draws)
    t1, t2, t3 = draws["t1"], times["t2"], times["t3"]
    assert bool(jnp.all((t1 < t2) & (t2 < t3) & (t3 < 1.0)))
    obs, ok, _ = _run("stagewise3", draws)
    level = obs["level"]
    total = draws["floor"] + draws["height1"] + draws["height2"] + draws["height3"]
    assert bool(jnp.all(jnp.diff(level, axis=1) >= -1e-5))  # a staircase never steps down
    assert bool(jnp.all(level <= total[:, None] + 1e-5)) and bool(jnp.all(level >= draws["floor"][:, None] - 1e-6))


def test_diversify_then_minimize_full_model_approaches_reduced_model_as_eps_shrinks():
    name = "diversify_then_minimize"
    model = get_model(name)
    manifold = model.slow_manifold()
    from valuedyn.models.diversify_then_minimize import REDUCED_COST, C, c_min, d_floor, eps, k, surplus

    assert sp.simplify(manifold["slow manifold D"] - (d_floor + C)) == 0
    # the dsolve solution of the reduced model equals the closed form used in solve_reduced
    point = {k: 30, eps: sp.Rational(1, 20), d_floor: sp.Rational(1, 2), c_min: sp.Rational(1, 10),
             surplus: sp.Rational(7, 10), SINCE: sp.Rational(3, 10)}
    assert abs(float(to_plain(REDUCED_COST).subs(point) - manifold["reduced C(t0 + s)"].subs(point))) < 1e-12
    # Singular-perturbation limit: keep the slow rate eps*k fixed (so the reduced model is
    # the same) and make the fast rate k larger; the full model must converge to it.
    base = {"t0": 0.2, "d_floor": 0.5, "surplus": 0.8, "c_min": 0.1}
    slow_rate = 4.0
    cases = [{**base, "eps": e, "k": slow_rate / e} for e in (0.2, 0.02)]
    full, ok, _ = _run(name, cases)
    assert bool(jnp.all(ok))
    late = np.asarray(T_GRID) > 0.2 + 0.25  # after the fast boundary layer (5/k for the slower k)
    solve_reduced = jax.jit(model.solve_reduced)
    reduced, ok_r = solve_reduced(cases[0], T_GRID)
    reduced_small, _ = solve_reduced(cases[1], T_GRID)
    assert bool(ok_r)
    errors = {}
    for key in ("diversity", "cost"):
        np.testing.assert_allclose(np.asarray(reduced[key]), np.asarray(reduced_small[key]), rtol=1e-5)
        for i, e in enumerate((0.2, 0.02)):
            errors[key, e] = float(jnp.max(jnp.abs(full[key][i] - reduced[key])[late]))
    for key in ("diversity", "cost"):
        assert errors[key, 0.02] < 0.01, errors
        assert errors[key, 0.02] < errors[key, 0.2] / 4, errors  # first order in eps


def test_diversify_then_minimize_refuses_eps_outside_unit_interval():
    model = get_model("diversify_then_minimize")
    with pytest.raises(ValuedynError, match=r"eps strictly inside \(0, 1\)"):
        model.validate_params({**model.typical_params(), "eps": 1.0})


def test_replicator_focal_behaviour_takes_over_and_diversity_falls():
    name = "replicator_mutator"
    model = get_model(name)
    p = {"t0": 0.3, "delta": 40.0, "mu": 0.2, "p0": 0.02}
    obs, ok, _ = _run(name, [p])
    assert bool(ok[0])
    stable = [fp for fp in model.analysis(p).fixed_points if fp.stability == "stable"]
    assert len(stable) == 1
    t = np.asarray(T_GRID)
    level = np.asarray(obs["level"][0])
    assert level[0] == pytest.approx(0.02, abs=1e-6)
    assert level[t < 0.3].max() < 0.05  # nothing selects the focal behaviour before t0
    assert level[-1] == pytest.approx(stable[0].values["x1"], abs=1e-3)  # it takes over after t0
    hill0, hill1, hill2 = (np.asarray(obs[h][0]) for h in ("hill0", "hill1", "hill2"))
    assert np.all(hill2 <= hill1 + 1e-5) and np.all(hill1 <= hill0 + 1e-2) and np.all(hill0 <= 3 + 1e-5)
    assert hill1[-1] < 0.5 * hill1[0]
    np.testing.assert_allclose(np.asarray(obs["diversity"][0]), hill1 / 3, rtol=1e-6)


def test_overshoot_closed_form_is_finite_where_ratio_rounds_to_one():
    """ratio one float32 step below 1 (and exactly 1) once made the closed form 0/0; the
    level and its gradient now follow the limit ratio -> 1 continuously."""
    model = get_model("overshoot")
    params = {"t0": 0.2, "alpha": 30.0, "floor": 0.1, "optimum": 0.3, "excess": 0.5}
    t = jnp.linspace(0.0, 1.0, 21)

    def total(ratio):
        obs, _ = model.solve({**params, "ratio": ratio}, t)
        return jnp.sum(obs["level"])

    near = [np.float32(1.0 - 2.0**-k) for k in (10, 16, 24)] + [np.float32(1.0)]
    values = [float(total(jnp.float32(r))) for r in near]
    grads = [float(jax.grad(total)(jnp.float32(r))) for r in near]
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
    # the limit: with beta = alpha the rise is excess alpha s e^(-alpha s)
    s = np.clip(np.asarray(t) - params["t0"], 0.0, None)
    limit = params["optimum"] + (params["floor"] - params["optimum"]) * np.exp(-30.0 * s) + 0.5 * 30.0 * s * np.exp(-30.0 * s)
    limit = np.where(np.asarray(t) < params["t0"], params["floor"], limit)
    assert values[-1] == pytest.approx(float(limit.sum()), rel=1e-4)
    assert values[-2] == pytest.approx(values[-1], rel=1e-5)
