"""logistic_onset: a behaviour switches on at an onset time with a rate, between a floor and a ceiling.

The baseline every other model must beat. The switch's progress p in [0, 1] grows
logistically, dp/dt = k p (1 - p), with p = 1/2 at the onset t0 (the inflection), and the
observed level is floor + (ceiling - floor) p, so
level(t) = floor + (ceiling - floor) / (1 + exp(-k (t - t0))).
Units: t, t0 in tau (fitting window mapped to [0, 1]); k in 1/tau; floor, ceiling in
normalised level units; p is a fraction (1). A ceiling below the floor gives a switch-off.

Quantities of interest (what a reader reads; :class:`~valuedyn.models.Quantity`): the onset
time t0, the 10-90 % rise time 2 ln 9 / k and the final level (the ceiling). The floor, the
level long before the onset, is a nuisance: a behaviour found early leaves it unobserved,
and a weakly pinned floor is reported, not held against the fit.

Onset prior Uniform(-0.05, 0.98) of the window. The inflection may precede the window's
start: the sigmoid is defined for any t0, so a behaviour already halfway learned at the
first update has its onset at t0 < 0 (down to 5 % of the window before it). Until issue 30
the prior's lower bound was 0.02: on a run of 726 updates that is 14 updates, and an unlock
rate rising from 0.11 to 0.89 within the first ~21 updates put every draw of t0 on that
bound (0.0200, sd 4e-5), which the judge read as "not identified". With the bound below 0,
an onset in the first percent of a long run is placed by the data (and the fine early blocks
of ``--blocks``: 1 update wide at the start), and an onset before the window is reported
as pressed against the bound ("the onset precedes the window's start"), which it then is.
"""

from __future__ import annotations

import math

import numpyro.distributions as dist
import sympy as sp

from valuedyn.models._base import SINCE, Model, ModelSpec, Observable, Parameter, Quantity, Sigmoid
from valuedyn.models._registry import register_model

NAME = "logistic_onset"

k, floor, ceiling = sp.symbols("k floor ceiling", positive=True)
t0 = sp.Symbol("t0", real=True)  # may precede the window (see the module docstring)
p = sp.Symbol("p", real=True)

PARAMETERS = (
    Parameter("t0", dist.Uniform(-0.05, 0.98), "tau", "onset time (inflection, level halfway)", -0.05, 1.0),
    Parameter("k", dist.LogNormal(math.log(20.0), 0.8), "1/tau", "switching rate", 0.0),
    Parameter("floor", dist.HalfNormal(0.25), "level", "level long before the onset", 0.0),
    Parameter("ceiling", dist.LogNormal(math.log(0.6), 0.7), "level", "level long after the onset", 0.0),
)


def spec() -> ModelSpec:
    return ModelSpec(
        name=NAME,
        summary=__doc__,
        parameters=PARAMETERS,
        symbols={"t0": t0, "k": k, "floor": floor, "ceiling": ceiling},
        states=(p,),
        initial=(Sigmoid(-k * t0),),
        field=(k * p * (1 - p),),
        observables=(Observable("level", "positive", "floor + (ceiling - floor) p: probability, or count per episode / scale"),),
        observable_exprs=(floor + (ceiling - floor) * p,),
        applies_to={"unlock": "level", "event": "level", "action": "level", "diversity": "level", "memory": "level"},
        # No change point: t0 is the inflection, the field is the same at all times; the
        # closed form is written in s = t (time since tau = 0).
        closed_form=(Sigmoid(k * (SINCE - t0)),),
        quantities=(
            Quantity("onset_time", t0, ("t0",), "tau", "onset time (the level halfway from floor to ceiling)", "linear"),
            Quantity("rise_time", 2 * sp.log(9) / k, ("k",), "tau", "10-90 % rise time"),
            Quantity("final_level", ceiling, ("ceiling",), "level", "level long after the onset"),
        ),
    )


def make(**options) -> Model:
    return Model(spec(), **options)


register_model(NAME, make)
