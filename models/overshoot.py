"""overshoot: discover, then prune. After the first rewarded discovery at t0 the behaviour
rises fast (rate alpha) above its optimal level and relaxes slowly (rate beta) towards it.

Two-timescale linear kinetics: the level y chases a target u fast, and the target decays
slowly from the peak to the optimum,
    dy/dt = -alpha (y - u),   du/dt = -beta (u - optimum)        for t > t0,
with y = floor and nothing changing before t0, and the discovery setting the target to
u(t0) = optimum + excess (an impulse). Closed form, s = t - t0 >= 0:
    y = optimum + (floor - optimum) e^(-alpha s) + excess alpha/(alpha - beta) (e^(-beta s) - e^(-alpha s)).
alpha > beta by construction (the fast/slow labels are identified): the model samples
alpha and ratio = beta/alpha in (0, 1). Units: t, t0 in tau; alpha, beta in 1/tau;
floor, optimum, excess, y, u in normalised level units.

Quantities of interest: the discovery time t0, the rise time 1/alpha, the decay time
1/beta, the peak level (the maximum of y, at s* = ln((excess - (1 - ratio)(floor - optimum))
/ (ratio excess)) / (alpha - beta), or floor when s* <= 0) and the final level (the
optimum). The floor, the level before the discovery, is a nuisance (reported, not held
against the fit when weakly pinned; a discovery in the first updates leaves it unobserved).

Discovery prior Uniform(-0.05, 0.98) of the window: as for logistic_onset's onset, a
discovery just before the window's start (the rise already under way at the first update)
is allowed (the closed form is defined for any s = t - t0 >= 0), so the bound of 0.02 (14
updates of a 726-update run) no longer decides where an early discovery of a long run lies.
"""

from __future__ import annotations

import math

import numpyro.distributions as dist
import numpy as np
import sympy as sp

from valuedyn._errors import ValuedynError
from valuedyn.models._base import SINCE, Expm1Ratio, Model, ModelSpec, Observable, Parameter, Quantity, unit_interval_prior
from valuedyn.models._registry import register_model

NAME = "overshoot"

alpha, ratio, floor, optimum, excess = sp.symbols("alpha ratio floor optimum excess", positive=True)
t0 = sp.Symbol("t0", real=True)  # may precede the window (see the module docstring)
beta = sp.Symbol("beta", positive=True)
y, u = sp.symbols("y u", real=True)

PARAMETERS = (
    Parameter("t0", dist.Uniform(-0.05, 0.98), "tau", "time of the first rewarded discovery", -0.05, 1.0),
    Parameter("alpha", dist.LogNormal(math.log(40.0), 0.8), "1/tau", "fast rate: rise after the discovery", 0.0),
    Parameter("ratio", unit_interval_prior(0.2, 0.8), "1", "beta/alpha in (0, 1): slow relaxation rate over fast rate", 0.0, 1.0),
    Parameter("floor", dist.HalfNormal(0.25), "level", "level before the discovery", 0.0),
    Parameter("optimum", dist.LogNormal(math.log(0.4), 0.8), "level", "level the behaviour relaxes to", 0.0),
    Parameter("excess", dist.LogNormal(math.log(0.4), 0.8), "level", "peak target above the optimum at t0", 0.0),
)


def _check(values: dict[str, np.ndarray]) -> None:
    r = values["ratio"]
    if np.any(r <= 0.0) or np.any(r >= 1.0):
        raise ValuedynError(
            f"overshoot needs alpha > beta > 0, i.e. ratio = beta/alpha strictly inside (0, 1); received ratio={r}; "
            "pass beta/alpha for a slower relaxation than rise"
        )


def spec() -> ModelSpec:
    s = SINCE
    return ModelSpec(
        name=NAME,
        summary=__doc__,
        parameters=PARAMETERS,
        symbols={"t0": t0, "alpha": alpha, "ratio": ratio, "floor": floor, "optimum": optimum, "excess": excess},
        derived={beta: ratio * alpha},
        states=(y, u),
        initial=(floor, floor),
        change_point=t0,
        field_before=None,  # nothing changes before the discovery
        reset=(y, optimum + excess),  # the discovery sets the target to the peak
        field=(-alpha * (y - u), -beta * (u - optimum)),
        observables=(
            Observable("level", "positive", "y: frequency of the behaviour (probability) or count per episode / scale"),
            Observable("target", "positive", "u: the level the behaviour is chasing"),
        ),
        observable_exprs=(y, u),
        applies_to={"unlock": "level", "event": "level", "action": "level", "diversity": "level", "memory": "level"},
        # dsolve's solution rewritten: alpha/(alpha-beta) = 1/(1-ratio) and
        # e^(-beta s) - e^(-alpha s) = -e^(-beta s) expm1(-alpha s (1 - ratio)), so the rise is
        # -excess e^(-beta s) Expm1Ratio(-alpha s, 1 - ratio): finite as ratio -> 1 (limit alpha s)
        # and when 1 - ratio rounds to 0 in float32.
        closed_form=(
            optimum + (floor - optimum) * sp.exp(-alpha * s)
            - excess * sp.exp(-beta * s) * Expm1Ratio(-alpha * s, 1 - ratio),
            optimum + excess * sp.exp(-beta * s),
        ),
        check=_check,
        quantities=(
            Quantity("onset_time", t0, ("t0",), "tau", "time of the first rewarded discovery", "linear"),
            Quantity("rise_time", 1 / alpha, ("alpha",), "tau", "rise time 1/alpha (e-folding, after the discovery)"),
            Quantity("decay_time", 1 / (ratio * alpha), ("alpha", "ratio"), "tau", "decay time 1/beta (e-folding, from the peak)"),
            Quantity("peak_level", _peak_level(), ("optimum", "excess", "alpha", "ratio"), "level", "highest level"),
            Quantity("final_level", optimum, ("optimum",), "level", "level the behaviour relaxes to"),
        ),
    )


def _peak_level():
    """The maximum of y after the discovery (where dy/ds = 0; floor when y only falls)."""
    arg = (excess - (1 - ratio) * (floor - optimum)) / (ratio * excess)
    at = sp.Max(sp.log(sp.Max(arg, sp.Float(1e-300))), 0) / (alpha * (1 - ratio))
    return (optimum + (floor - optimum) * sp.exp(-alpha * at)
            - excess * sp.exp(-ratio * alpha * at) * Expm1Ratio(-alpha * at, 1 - ratio))


def make(**options) -> Model:
    return Model(spec(), **options)


register_model(NAME, make)
