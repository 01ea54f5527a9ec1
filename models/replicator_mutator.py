"""replicator_mutator: K behaviours compete under selection (fitness) and mutation
(exploration); discovering a new reward source at t0 raises the fitness of one (focal)
behaviour, which then takes over the repertoire and the diversity falls.

Frequencies x_1..x_K (x_K = 1 - x_1 - ... - x_{K-1}, so the state is x_1..x_{K-1}) follow
    dx_i/dt = x_i (f_i - phi) + mu (1/K - x_i),   phi = sum_j x_j f_j,
with f_i = 0 for every behaviour before t0 and f_1 = delta (the focal behaviour) after it;
uniform mutation at rate mu keeps every behaviour in use. Starts from x_1 = p0 and the
others equal. Units: t, t0 in tau; delta, mu in 1/tau; frequencies are probabilities.
Observables: the focal frequency (level) and Hill numbers of order 0, 1, 2 (effective
numbers of behaviours, in [1, K]); hill0 is smoothed: sum_i x_i^2 / (x_i^2 + c^2) with
c = 0.01 counts the behaviours above about 1% frequency (a plain count is K whenever
mu > 0 and is not differentiable); diversity = hill1 / K is the level-unit version fitted
to diversity data. No closed form (Riccati-type system): solved as an ODE.
"""

from __future__ import annotations

import math

import numpyro.distributions as dist
import sympy as sp

from valuedyn.models._base import TIME, Model, ModelSpec, Observable, Parameter, SafeLog, unit_interval_prior
from valuedyn.models._registry import register_model

NAME = "replicator_mutator"
HILL0_THRESHOLD = sp.Rational(1, 100)

t0, delta, mu = sp.symbols("t0 delta mu", positive=True)
p0 = sp.Symbol("p0", positive=True)

PARAMETERS = (
    Parameter("t0", dist.Uniform(0.02, 0.98), "tau", "time the new reward source is found", 0.0, 1.0),
    Parameter("delta", dist.LogNormal(math.log(20.0), 0.7), "1/tau", "fitness gain of the focal behaviour at t0", 0.0),
    Parameter("mu", dist.LogNormal(math.log(0.3), 1.0), "1/tau", "mutation (exploration) rate", 0.0),
    Parameter("p0", unit_interval_prior(0.05, 0.8), "1", "initial frequency of the focal behaviour", 0.0, 1.0),
)


def spec(behaviours: int = 3) -> ModelSpec:
    K = int(behaviours)
    if K < 2:
        raise ValueError("replicator_mutator needs at least 2 behaviours")
    states = tuple(sp.Symbol(f"x{i}", real=True) for i in range(1, K))
    x = list(states) + [1 - sum(states)]
    initial = tuple([p0] + [(1 - p0) / (K - 1)] * (K - 2))
    fitness_after = [delta] + [0] * (K - 1)

    def field(fitness):
        phi = sum(xi * fi for xi, fi in zip(x, fitness))
        return tuple(x[i] * (fitness[i] - phi) + mu * (sp.Rational(1, K) - x[i]) for i in range(K - 1))

    c = HILL0_THRESHOLD
    hill0 = sum(xi**2 / (xi**2 + c**2) for xi in x)
    hill1 = sp.exp(-sum(xi * SafeLog(xi) for xi in x))
    hill2 = 1 / sum(xi**2 for xi in x)
    return ModelSpec(
        name=NAME if K == 3 else f"{NAME}{K}",
        summary=__doc__,
        parameters=PARAMETERS,
        symbols={"t0": t0, "delta": delta, "mu": mu, "p0": p0},
        states=states,
        initial=initial,
        change_point=t0,
        field_before=field([0] * K),
        # before t0 all fitnesses are equal: pure mutation, linear, x_i -> 1/K at rate mu
        closed_form_before=tuple(sp.Rational(1, K) + (x0 - sp.Rational(1, K)) * sp.exp(-mu * TIME)
                                 for x0 in initial),
        field=field(fitness_after),
        observables=(
            Observable("level", "probability", "x1: frequency of the focal behaviour"),
            Observable("hill0", "positive", "smoothed count of behaviours above ~1% frequency"),
            Observable("hill1", "positive", "exp(Shannon entropy): effective number of behaviours"),
            Observable("hill2", "positive", "inverse Simpson index 1/sum x_i^2"),
            Observable("diversity", "positive", "hill1 / K: diversity in level units (1 = all equally used)"),
        ),
        observable_exprs=(x[0], hill0, hill1, hill2, hill1 / K),
        applies_to={"action": "level", "diversity": "diversity"},
        analysis_notes=f"x{K} = 1 - " + " - ".join(str(s) for s in states) + "; fitness f1 = delta after t0, 0 otherwise",
    )


def make(behaviours: int = 3, **options) -> Model:
    return Model(spec(behaviours), **options)


register_model(NAME, make)
