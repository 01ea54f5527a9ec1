"""diversify_then_minimize: fast diversification when a new reward source is found,
then slow action minimization, a gradient flow that removes the actions that earn nothing.

State: diversity D (behaviours in use) and the cost C of surplus actions (per episode).
Finding the reward source at t0 adds surplus actions, C(t0) = c_min + surplus (an
impulse); the diversity follows the actions in use on the fast timescale 1/k, and the
surplus is pruned on the slow timescale 1/(eps k), faster the more behaviours are in use:
    dD/dt = k (d_floor + C - D),       dC/dt = -eps k (C - c_min) D        (t > t0),
with D = d_floor, C = 0 and nothing changing before t0. eps = slow/fast rate ratio in
(0, 1). Singular perturbation (eps -> 0): the slow manifold D = d_floor + C and the
reduced model dC/dt = -eps k (C - c_min)(d_floor + C), solved in closed form
(``solve_reduced``). Units: t, t0 in tau; k in 1/tau; eps in 1; D, C, d_floor, surplus,
c_min in normalised level units. No closed form for the full system: solved as an ODE.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import sympy as sp

from valuedyn._errors import ValuedynError
from valuedyn.models._base import (
    SINCE, Model, ModelSpec, Observable, Parameter, expm1, lambdify_jax, to_plain, unit_interval_prior,
)
from valuedyn.models._registry import register_model

NAME = "diversify_then_minimize"

t0, k, eps, d_floor, surplus, c_min = sp.symbols("t0 k eps d_floor surplus c_min", positive=True)
D, C = sp.symbols("D C", real=True)

PARAMETERS = (
    Parameter("t0", dist.Uniform(0.02, 0.98), "tau", "time the new reward source is found", 0.0, 1.0),
    Parameter("k", dist.LogNormal(math.log(40.0), 0.6), "1/tau", "fast rate: diversification", 0.0),
    Parameter("eps", unit_interval_prior(0.1, 0.8), "1", "slow/fast rate ratio (pruning rate = eps k D)", 0.0, 1.0),
    Parameter("d_floor", dist.LogNormal(math.log(0.5), 0.6), "level", "diversity before the discovery", 0.0),
    Parameter("surplus", dist.LogNormal(math.log(0.5), 0.8), "level", "surplus-action cost added by the discovery", 0.0),
    Parameter("c_min", dist.HalfNormal(0.2), "level", "cost left after pruning (actions that do earn)", 0.0),
)

# Reduced (slow-manifold) model: w = C - c_min, m = d_floor + c_min, lam = eps k m:
# dw/dt = -eps k w (w + m)  =>  w(s) = m w0 e^(-lam s) / (m + w0 (1 - e^(-lam s))).
_m = d_floor + c_min
_lam = eps * k * _m
REDUCED_COST = c_min + _m * surplus * sp.exp(-_lam * SINCE) / (_m - surplus * expm1(-_lam * SINCE))


def _check(values: dict[str, np.ndarray]) -> None:
    e = values["eps"]
    if np.any(e <= 0.0) or np.any(e >= 1.0):
        raise ValuedynError(
            f"diversify_then_minimize needs a slow rate below the fast one, eps strictly inside (0, 1); received eps={e}; "
            "pass the slow/fast rate ratio"
        )


class DiversifyThenMinimize(Model):
    """The generic model plus the reduced slow-manifold model (sympy and JAX)."""

    def __init__(self, spec: ModelSpec, **options):
        super().__init__(spec, **options)
        self._reduced_cost = lambdify_jax([SINCE, *self._param_syms], [REDUCED_COST])

    def slow_manifold(self) -> dict[str, sp.Expr]:
        """Singular perturbation, eps -> 0: the fast equation's root D = h(C), the reduced
        slow equation dC/dt on it, and its dsolve solution from C(t0) = c_min + surplus."""
        fast = self.spec.field[0]
        h = sp.solve(sp.Eq(fast, 0), D)[0]
        reduced = sp.factor(self.spec.field[1].subs(D, h))
        c_fn = sp.Function("C")
        sol = sp.dsolve(sp.Eq(c_fn(SINCE).diff(SINCE), reduced.subs(C, c_fn(SINCE))), c_fn(SINCE),
                        ics={c_fn(0): c_min + surplus})
        sol = sol[0] if isinstance(sol, list) else sol
        return {"slow manifold D": h, "reduced dC/dt": reduced, "reduced C(t0 + s)": sp.simplify(sol.rhs)}

    def _reduced_analysis(self) -> dict[str, sp.Expr]:
        fast = self.spec.field[0]
        h = sp.solve(sp.Eq(fast, 0), D)[0]
        return {
            "slow manifold (eps -> 0) D": h,
            "reduced model dC/dt": sp.factor(self.spec.field[1].subs(D, h)),
            "reduced solution C(t0 + s)": to_plain(REDUCED_COST),
        }

    def solve_reduced(self, params, t):
        """Observables of the reduced model (D on the slow manifold, C from the reduced
        closed form); the fast boundary layer after t0 is absent. Returns (obs, ok)."""
        t, ps = self._as_arrays(params, t)
        start = ps[self._param_syms.index(t0)]
        s = jnp.maximum(t - start, 0.0)
        cost_after = jnp.broadcast_to(jnp.asarray(self._reduced_cost(s, *ps)[0], t.dtype), t.shape)
        p = dict(zip([q.name for q in self.parameters], ps))
        cost = jnp.where(t < start, 0.0, cost_after)
        diversity = p["d_floor"] + cost
        obs = self._observe_states([diversity, cost], ps)
        ok = jnp.all(jnp.isfinite(cost))
        return obs, ok


def spec() -> ModelSpec:
    return ModelSpec(
        name=NAME,
        summary=__doc__,
        parameters=PARAMETERS,
        symbols={"t0": t0, "k": k, "eps": eps, "d_floor": d_floor, "surplus": surplus, "c_min": c_min},
        states=(D, C),
        initial=(d_floor, sp.Integer(0)),
        change_point=t0,
        field_before=None,
        reset=(D, c_min + surplus),
        field=(k * (d_floor + C - D), -eps * k * (C - c_min) * D),
        observables=(
            Observable("diversity", "positive", "D: diversity of behaviour in use (level units)"),
            Observable("cost", "positive", "C: cost/count of surplus actions per episode (level units)"),
        ),
        observable_exprs=(D, C),
        applies_to={"diversity": "diversity", "event": "cost"},
        check=_check,
    )


def make(**options) -> Model:
    return DiversifyThenMinimize(spec(), **options)


register_model(NAME, make)
