"""logistic_onset: a behaviour switches on at an onset time with a rate, between a floor and a ceiling.

The baseline every other model must beat. The switch's progress p in [0, 1] grows
logistically, dp/dt = k p (1 - p), with p = 1/2 at the onset t0 (the inflection), and the
observed level is floor + (ceiling - floor) p, so
level(t) = floor + (ceiling - floor) / (1 + exp(-k (t - t0))).
Units: t, t0 in tau (fitting window mapped to [0, 1]); k in 1/tau; floor, ceiling in
normalised level units; p is a fraction (1). A ceiling below the floor gives a switch-off.
"""

from __future__ import annotations

import math

import numpyro.distributions as dist
import sympy as sp

from valuedyn.models._base import SINCE, Model, ModelSpec, Observable, Parameter, Sigmoid
from valuedyn.models._registry import register_model

NAME = "logistic_onset"

t0, k, floor, ceiling = sp.symbols("t0 k floor ceiling", positive=True)
p = sp.Symbol("p", real=True)

PARAMETERS = (
    Parameter("t0", dist.Uniform(0.02, 0.98), "tau", "onset time (inflection, level halfway)", 0.0, 1.0),
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
    )


def make(**options) -> Model:
    return Model(spec(), **options)


register_model(NAME, make)
