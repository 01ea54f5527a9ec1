"""stagewise: development as a staircase, plateaus separated by sharp transitions.

Each stage j = 1..K switches on logistically, dp_j/dt = k p_j (1 - p_j), p_j = 1/2 at its
transition time t_j, and the level is floor + sum_j height_j p_j, so
    level(t) = floor + sum_j height_j / (1 + exp(-k (t - t_j))).
The transition times are ordered by construction (no label switching): t_1 is sampled,
then t_j = t_{j-1} + frac_j (1 - t_{j-1}), frac_j in (0, 1) (stick breaking inside the
window). The number of stages K is a model choice: ``stagewise`` has 2, ``stagewise3``
3 (``get_model("stagewise", stages=K)`` for any K). Units: t, t_j in tau; k in 1/tau;
floor, height_j in normalised level units; p_j fractions.

Quantities of interest: the transition times t_j, the 10-90 % rise time of a transition
2 ln 9 / k, the step heights height_j and the final level floor + sum_j height_j; the floor
(the level before the first transition) is a nuisance, reported when weakly pinned and not
held against the fit.
"""

from __future__ import annotations

import math

import numpyro.distributions as dist
import sympy as sp

from valuedyn.models._base import SINCE, Model, ModelSpec, Observable, Parameter, Quantity, Sigmoid, unit_interval_prior
from valuedyn.models._registry import register_model

NAME = "stagewise"

k, floor = sp.symbols("k floor", positive=True)


def spec(stages: int = 2) -> ModelSpec:
    K = int(stages)
    if K < 1:
        raise ValueError("stagewise needs at least one stage")
    t1 = sp.Symbol("t1", positive=True)
    fracs = [sp.Symbol(f"frac{j}", positive=True) for j in range(2, K + 1)]
    heights = [sp.Symbol(f"height{j}", positive=True) for j in range(1, K + 1)]
    times_sym = [sp.Symbol(f"t{j}", positive=True) for j in range(1, K + 1)]
    # ordered transition times as explicit expressions of t1 and the fractions
    times = [t1]
    for f in fracs:
        times.append(times[-1] + f * (1 - times[-1]))
    derived = {ts: sp.expand(te) for ts, te in zip(times_sym[1:], times[1:])}
    states = tuple(sp.Symbol(f"p{j}", real=True) for j in range(1, K + 1))
    params = (
        [Parameter("t1", unit_interval_prior(0.3, 0.8), "tau", "first transition time", 0.0, 1.0)]
        + [Parameter(f.name, unit_interval_prior(0.4, 0.8), "1",
                     f"t{j} = t{j - 1} + {f.name} (1 - t{j - 1}): share of the remaining window before transition {j}", 0.0, 1.0)
           for j, f in zip(range(2, K + 1), fracs)]
        + [Parameter(h.name, dist.LogNormal(math.log(0.3), 0.8), "level", f"height of step {j}", 0.0)
           for j, h in zip(range(1, K + 1), heights)]
        + [Parameter("k", dist.LogNormal(math.log(60.0), 0.5), "1/tau", "sharpness of every transition", 0.0),
           Parameter("floor", dist.HalfNormal(0.25), "level", "level before the first transition", 0.0)]
    )
    symbols = {"t1": t1, **{f.name: f for f in fracs}, **{h.name: h for h in heights}, "k": k, "floor": floor}
    return ModelSpec(
        name=NAME if K == 2 else f"{NAME}{K}",
        summary=__doc__,
        parameters=tuple(params),
        symbols=symbols,
        derived=derived,
        states=states,
        initial=tuple(Sigmoid(-k * tj) for tj in times_sym),
        field=tuple(k * p * (1 - p) for p in states),
        observables=(Observable("level", "positive", "floor + sum_j height_j p_j"),),
        observable_exprs=(floor + sum(h * p for h, p in zip(heights, states)),),
        applies_to={"unlock": "level", "event": "level", "action": "level", "diversity": "level", "memory": "level"},
        closed_form=tuple(Sigmoid(k * (SINCE - tj)) for tj in times_sym),
        quantities=(
            Quantity("onset_time", t1, ("t1",), "tau", "first transition time", "linear"),
            *[Quantity(f"transition{j}_time", tj, ("t1", *[f.name for f in fracs[:j - 1]]), "tau",
                       f"time of transition {j}", "linear") for j, tj in zip(range(2, K + 1), times_sym[1:])],
            Quantity("rise_time", 2 * sp.log(9) / k, ("k",), "tau", "10-90 % rise time of every transition"),
            *[Quantity(f"step{j}_height", h, (h.name,), "level", f"height of step {j}")
              for j, h in zip(range(1, K + 1), heights)],
            Quantity("final_level", floor + sum(heights), tuple(h.name for h in heights), "level",
                     "level after the last transition"),
        ),
    )


def make(stages: int = 2, **options) -> Model:
    return Model(spec(stages), **options)


register_model(NAME, make)
register_model(f"{NAME}3", lambda **options: make(3, **options))
