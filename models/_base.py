"""The model machinery: parameters, observables, the generic :class:`Model`, its analysis.

A model module describes its dynamics once, in sympy (:class:`ModelSpec`): state
symbols, parameter symbols, the vector field (one before and one after a change point
``t0`` where the model has one), the initial state, the state reset at ``t0`` and the
observables as expressions of the state. From that one description :class:`Model`
derives

- JAX code (``sympy.lambdify(..., modules="jax")``) for the vector field, reset and
  observables;
- an ODE solution, solved piecewise: ``[0, t0]`` with the field before the change point,
  then restarted at ``t0`` from the (reset) state with the field after it, so the
  discontinuity is handled by the solver and never smoothed. Two solvers: classical RK4 on
  a fixed grid of ``ode_steps`` steps per phase (``lax.scan``: what :meth:`Model.solve`
  and so every fit uses; a cheap, accurate gradient) and diffrax's adaptive Tsit5
  (Kvaerno5 with ``stiff=True``; :meth:`Model.solve_ode`), the reference the grid is
  checked against (:meth:`Model.grid_error`, stored with every fit of an ODE model);
- the closed form, when the module supplies one (a numerically stable rewriting of the
  solution sympy's ``dsolve`` finds; the tests check the two agree symbolically and
  against the diffrax solution);
- an :class:`Analysis`: fixed points, Jacobian, eigenvalues, stability, timescales.

Time is the dimensionless ``tau`` in [0, 1] spanning the fitting window; rates are in
1/tau; levels are in normalised level units (the ``level`` observables of
``valuedyn.models``' docstring: the data's level divided by its ``level_scale``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1

from valuedyn._errors import ValuedynError

__all__ = [
    "Parameter",
    "Observable",
    "FixedPoint",
    "Analysis",
    "ModelSpec",
    "Model",
    "Sigmoid",
    "SafeLog",
    "Expm1Ratio",
    "TIME",
    "expm1",
    "unit_interval_prior",
    "Quantity",
]

#: The time symbol every model uses (tau, dimensionless, in [0, 1]).
TIME = sp.Symbol("t", real=True)

OBSERVABLE_KINDS = ("probability", "positive", "real")
BEHAVIOUR_KINDS = ("unlock", "event", "action", "diversity", "memory")


# ---------------------------------------------------------------------------
# Sympy functions with numerically stable JAX counterparts
# ---------------------------------------------------------------------------
class Sigmoid(sp.Function):
    """Logistic function 1 / (1 + exp(-x)); lambdified to ``jax.nn.sigmoid`` (no overflow)."""

    nargs = 1

    def fdiff(self, argindex=1):
        x = self.args[0]
        return Sigmoid(x) * (1 - Sigmoid(x))

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0]))).evalf(prec)


class SafeLog(sp.Function):
    """log(x) for x > 0; lambdified as log(max(x, tiny)) so x log x stays finite at 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        return 1 / self.args[0]

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sp.log(x)

    def _eval_evalf(self, prec):
        return sp.log(self.args[0]).evalf(prec)


class Expm1Ratio(sp.Function):
    """expm1(x d) / d, with its limit x at d = 0; lambdified to a form that stays finite and
    differentiable when d rounds to 0 (overshoot's 1 - ratio in float32: ratio = beta/alpha
    one float32 step below 1 made the closed form 0/0, a failed solve among the proposals)."""

    nargs = 2

    def fdiff(self, argindex=1):
        x, d = self.args
        if argindex == 1:
            return sp.exp(x * d)
        return (x * d * sp.exp(x * d) - sp.exp(x * d) + 1) / d**2

    def _eval_rewrite_as_exp(self, x, d, **kwargs):
        return (sp.exp(x * d) - 1) / d

    def _eval_evalf(self, prec):
        x, d = self.args
        return ((sp.exp(x * d) - 1) / d).evalf(prec)


def _expm1_ratio(x, d):
    z = x * d
    small = jnp.abs(z) < 1e-4
    d_safe = jnp.where(small, 1.0, d)  # the unused branch's gradient stays finite
    return jnp.where(small, x * (1.0 + 0.5 * z), jnp.expm1(jnp.where(small, 0.0, z)) / d_safe)


def _safe_log(x):
    tiny = jnp.finfo(jnp.result_type(x, jnp.float32)).tiny
    return jnp.log(jnp.maximum(x, tiny))


_JAX_FUNCTIONS = {"Sigmoid": jax.nn.sigmoid, "SafeLog": _safe_log, "expm1": jnp.expm1, "Expm1Ratio": _expm1_ratio}


def lambdify_jax(args, exprs):
    """``sympy.lambdify`` to JAX with our stable functions; returns f(*args) -> tuple of arrays."""
    fn = sp.lambdify(args, list(exprs), modules=[_JAX_FUNCTIONS, "jax"])
    return fn


def to_plain(expr: sp.Expr) -> sp.Expr:
    """Rewrite our helper functions (Sigmoid, SafeLog, expm1, Expm1Ratio) in elementary sympy terms."""
    return expr.replace(Sigmoid, lambda x: 1 / (1 + sp.exp(-x))).replace(SafeLog, sp.log).replace(
        expm1, lambda x: sp.exp(x) - 1
    ).replace(Expm1Ratio, lambda x, d: (sp.exp(x * d) - 1) / d)


def unit_interval_prior(median: float, scale: float):
    """A logit-normal prior on (0, 1) with the given median: sigmoid(Normal(logit(median), scale)).

    Used instead of Beta priors because numpyro's Beta sampler (a gamma rejection loop)
    takes seconds to compile, which every prior-predictive draw would pay.
    """
    import numpyro.distributions as dist

    loc = math.log(median / (1.0 - median))
    return dist.TransformedDistribution(dist.Normal(loc, scale), dist.transforms.SigmoidTransform())


# ---------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """A sampled parameter: name, default prior (numpyro), unit, one-line doc, support."""

    name: str
    prior: Any  # numpyro.distributions.Distribution, on the tau / level scale
    unit: str
    doc: str
    lower: float = -math.inf
    upper: float = math.inf


@dataclass(frozen=True)
class Quantity:
    """A quantity of interest: what a reader reads off a fit (onset time, rise time, peak,
    final level, decay time, ...), as an expression of the model's parameters (derived
    symbols allowed).

    ``parameters``: the parameters behind it, whose identification matters to it (the
    judge calls a fit "not identified" only about quantities of interest and these; a
    parameter behind no quantity is a nuisance, reported when weakly pinned, not
    disqualifying). ``scale``: where its contraction is judged, ``log`` for a positive
    quantity whose prior spans orders of magnitude (rates, times since, levels),
    ``linear`` for a time on the window's axis."""

    name: str
    expr: Any  # sympy expression in the parameter (and derived) symbols
    parameters: tuple[str, ...]
    unit: str
    doc: str
    scale: str = "log"

    def __post_init__(self):
        if self.scale not in ("log", "linear"):
            raise ValueError(f"quantity scale must be log or linear, got {self.scale!r}")


@dataclass(frozen=True)
class Observable:
    """A quantity data can be compared with; kind is probability | positive | real."""

    name: str
    kind: str
    doc: str

    def __post_init__(self):
        if self.kind not in OBSERVABLE_KINDS:
            raise ValueError(f"observable kind must be one of {OBSERVABLE_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class FixedPoint:
    """One fixed point of the vector field after the change point.

    Symbolic fields are sympy objects; ``values``, ``eigenvalues_numeric``,
    ``timescales_numeric`` are filled (floats / complex) when parameters are given.
    ``stability`` is "stable", "unstable", "saddle", "marginal" or "depends on parameters".
    """

    state: dict[str, sp.Expr]
    jacobian: sp.Matrix
    eigenvalues: tuple[sp.Expr, ...]
    stability: str
    timescales: tuple[sp.Expr, ...]
    values: dict[str, float] | None = None
    eigenvalues_numeric: tuple[complex, ...] | None = None
    timescales_numeric: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Analysis:
    """Symbolic (and, given parameters, numerical) analysis of a model's vector field.

    The field analysed is the one that governs the long run: the field after the change
    point ``t0`` where the model has one. ``fixed_points`` carry symbolic entries when
    sympy solves ``f(x) = 0`` in general; otherwise (``symbolic=False``) they are found
    for the given parameters only. ``reduced`` holds extra sympy results a model adds
    (e.g. the slow-manifold reduction), name -> expression.
    """

    model: str
    states: tuple[str, ...]
    vector_field: dict[str, sp.Expr]
    jacobian: sp.Matrix
    fixed_points: tuple[FixedPoint, ...]
    symbolic: bool
    params: dict[str, float] | None = None
    derived: dict[str, sp.Expr] = field(default_factory=dict)
    reduced: dict[str, sp.Expr] = field(default_factory=dict)
    notes: str = ""

    def format(self) -> str:
        """Human-readable text: field, Jacobian, fixed points with eigenvalues and timescales."""
        lines = [f"analysis of {self.model} (vector field after the change point, time in tau):"]
        for name, expr in self.vector_field.items():
            lines.append(f"  d{name}/dt = {sp.sstr(expr)}")
        for name, expr in self.derived.items():
            lines.append(f"  where {name} = {sp.sstr(expr)}")
        lines.append(f"  Jacobian = {sp.sstr(self.jacobian.tolist())}")
        if self.notes:
            lines.append(f"  note: {self.notes}")
        if not self.fixed_points:
            lines.append("  fixed points: none found")
        for i, fp in enumerate(self.fixed_points):
            lines.append(f"  fixed point {i + 1}: " + ", ".join(f"{k} = {sp.sstr(v)}" for k, v in fp.state.items()))
            lines.append(f"    eigenvalues: {', '.join(sp.sstr(e) for e in fp.eigenvalues)}")
            lines.append(f"    stability: {fp.stability}")
            lines.append(f"    timescales 1/|Re lambda|: {', '.join(sp.sstr(s) for s in fp.timescales)}")
            if fp.values is not None:
                vals = ", ".join(f"{k} = {v:.4g}" for k, v in fp.values.items())
                eig = ", ".join(_fmt_complex(e) for e in fp.eigenvalues_numeric)
                ts = ", ".join(f"{s:.4g}" for s in fp.timescales_numeric)
                lines.append(f"    at the given parameters: {vals}; eigenvalues {eig}; timescales {ts} tau")
        for name, expr in self.reduced.items():
            lines.append(f"  {name}: {sp.sstr(expr)}")
        if self.params is not None:
            lines.append("  parameters used for numbers: " + ", ".join(f"{k} = {v:.4g}" for k, v in self.params.items()))
        return "\n".join(lines)


def _fmt_complex(z: complex) -> str:
    if abs(z.imag) < 1e-12 * max(1.0, abs(z.real)):
        return f"{z.real:.4g}"
    return f"{z.real:.4g}{z.imag:+.4g}i"


# ---------------------------------------------------------------------------
# What a model module declares
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """The symbolic description a model module writes once.

    - ``symbols``: parameter name -> sympy Symbol (one per :class:`Parameter`).
    - ``derived``: derived symbol -> expression in parameter symbols (e.g. beta = ratio*alpha);
      fields may use derived symbols; they are substituted before code generation.
    - ``states``: state symbols; ``initial``: state at tau = 0 (expressions in parameters).
    - ``field``: d state/dt after the change point (or everywhere when ``change_point`` is None).
    - ``change_point``: the parameter symbol of the change-point time, or None.
    - ``field_before``: d state/dt before the change point (None: the state is constant).
    - ``reset``: state just after the change point as expressions of the state just before
      it (None: continuous). Lets a discovery act as an impulse.
    - ``observables`` / ``observable_exprs``: records and expressions in states and parameters.
    - ``closed_form``: state after the change point (or for all t without one) as
      expressions of ``s`` (time since the change point, or t) and the parameters, or None.
      ``closed_form_before``: state before it as expressions of t (None: the initial
      state); when given, the ODE path uses it instead of solving the phase before t0.
    - ``check``: extra validation of a float parameter dict (raise ValuedynError).
    - ``symbolic_fixed_points``: whether sympy.solve should be asked for them in general.
    - ``quantities``: the quantities of interest (:class:`Quantity`); none declared: every
      parameter counts as one.
    """

    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    symbols: dict[str, sp.Symbol]
    states: tuple[sp.Symbol, ...]
    initial: tuple[sp.Expr, ...]
    field: tuple[sp.Expr, ...]
    observables: tuple[Observable, ...]
    observable_exprs: tuple[sp.Expr, ...]
    applies_to: dict[str, str]
    derived: dict[sp.Symbol, sp.Expr] = dataclasses.field(default_factory=dict)
    change_point: sp.Symbol | None = None
    field_before: tuple[sp.Expr, ...] | None = None
    reset: tuple[sp.Expr, ...] | None = None
    closed_form: tuple[sp.Expr, ...] | None = None
    closed_form_before: tuple[sp.Expr, ...] | None = None
    check: Callable[[dict[str, float]], None] | None = None
    symbolic_fixed_points: bool = True
    analysis_notes: str = ""
    quantities: tuple[Quantity, ...] = ()


SINCE = sp.Symbol("s", nonnegative=True)  # time since the change point, in closed forms

#: Gauss-Legendre nodes per piece of an observation's span (:meth:`Model.solve_binned`):
#: exact for cubics over the piece; on the core overshoot case 2 nodes took a value and
#: gradient of the log density from 281 to 233 us against 3 nodes
BIN_NODES = 2

#: RK4 steps per phase (before / after the change point) of a model without a closed form
#: (``Model(ode_steps=...)``; 0: diffrax's adaptive solve). Time runs over [0, 1] tau, so a
#: step is at most 1/512 tau. Over 256 prior draws of each ODE model (float64, 201 times),
#: the largest difference from the adaptive solve (rtol 1e-5) was 1.7e-5 (replicator_mutator)
#: and 4.9e-5 (diversify_then_minimize) at 512 steps, the same as at 1024 below the 99th
#: percentile (the adaptive solve's own error, 5e-6 and 3e-5); 2e-4 and 9e-4 at 256 steps.
ODE_STEPS = 512

#: Gauss-Legendre nodes per piece of a span given by its ``edges`` (a block of several
#: updates, :meth:`Model.solve_binned`): a block 43 updates wide (the widest of a 726-update
#: run in 64 blocks, 0.059 tau) can hold a whole rise; over a logistic rise of rate 20-300
#: per tau placed anywhere in such a span, the largest error of the span's average was 0.116
#: level units at 2 nodes, 0.029 at 4, 0.0018 at 8 and 1e-4 at 12 (against a 20001-point mean)
BLOCK_NODES = 8


def _stacked(values, dtype) -> jax.Array:
    """Scalars (a lambdified sympy tuple: numbers or 0-d arrays) as one vector of ``dtype``."""
    return jnp.stack([jnp.broadcast_to(jnp.asarray(v, dtype), ()) for v in values])


def _field_at(fn, time, y, ps) -> jax.Array:
    """A lambdified vector field ``fn(time, *states, *params)`` at state vector ``y``."""
    return _stacked(fn(time, *[y[i] for i in range(y.shape[0])], *ps), y.dtype)


@functools.lru_cache(maxsize=None)
def _gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of n-point Gauss-Legendre quadrature on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(n)
    return tuple(0.5 * (x + 1.0)), tuple(0.5 * w)


# ---------------------------------------------------------------------------
# The generic model
# ---------------------------------------------------------------------------
class Model:
    """One registered dynamical model (its contract: this module's docstring and :class:`ModelSpec`).

    Options: ``ode_steps`` (default :data:`ODE_STEPS`) RK4 steps per phase solve a model
    without a closed form on a fixed grid (:meth:`_grid_states`: fast gradients, no error
    control, so :meth:`grid_error` checks it against the adaptive solve); ``ode_steps=0`` or
    ``stiff=True`` solve it with diffrax's adaptive Tsit5, Kvaerno5 when stiff; ``rtol``,
    ``atol`` and ``max_steps`` set that solve's controller and step bound.
    """

    def __init__(self, spec: ModelSpec, *, stiff: bool = False, rtol: float = 1e-5, atol: float = 1e-9,
                 max_steps: int = 4096, ode_steps: int = ODE_STEPS):
        self.spec = spec
        self.name = spec.name
        self.summary = spec.summary.strip()
        self.parameters = tuple(spec.parameters)
        self.state_names = tuple(str(s) for s in spec.states)
        self.observables = tuple(spec.observables)
        self.applies_to = dict(spec.applies_to)
        self.closed_form = spec.closed_form is not None
        self.stiff = bool(stiff)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        self.ode_steps = int(ode_steps)
        if self.ode_steps < 0:
            raise ValuedynError(f"ode_steps must be >= 0 (0: adaptive diffrax solves); received {ode_steps}")
        names = [p.name for p in self.parameters]
        if sorted(names) != sorted(spec.symbols):
            raise ValueError(f"{spec.name}: parameters {names} and symbols {sorted(spec.symbols)} differ")
        for kind, obs in self.applies_to.items():
            if kind not in BEHAVIOUR_KINDS or obs not in {o.name for o in self.observables}:
                raise ValueError(f"{spec.name}: applies_to {kind!r} -> {obs!r} is not a kind/observable")
        self._param_syms = tuple(spec.symbols[n] for n in names)
        self.quantities = tuple(spec.quantities)
        for quantity in self.quantities:
            unknown = sorted(set(quantity.parameters) - set(names))
            if unknown:
                raise ValueError(f"{spec.name}: quantity {quantity.name} names unknown parameters {unknown}")
        self._codegen()

    # -- quantities of interest -----------------------------------------------
    @property
    def interest_parameters(self) -> tuple[str, ...]:
        """The parameters behind the quantities of interest (every parameter when the model
        declares none), in the model's order."""
        if not self.quantities:
            return tuple(p.name for p in self.parameters)
        behind = {name for q in self.quantities for name in q.parameters}
        return tuple(p.name for p in self.parameters if p.name in behind)

    @property
    def nuisance_parameters(self) -> tuple[str, ...]:
        """The parameters behind no quantity of interest (e.g. logistic_onset's floor)."""
        return tuple(p.name for p in self.parameters if p.name not in self.interest_parameters)

    def quantity_values(self, params: dict) -> dict[str, np.ndarray]:
        """Each quantity of interest at ``params`` (name -> array, any shape, broadcast
        alike): numpy, outside jit, for posterior and prior draws."""
        if getattr(self, "_quantity_fn", None) is None:
            exprs = [sp.sympify(q.expr) for q in self.quantities]
            for _ in range(len(self.spec.derived) + 1):
                exprs = [e.subs(self.spec.derived) for e in exprs]
            exprs = [to_plain(e) for e in exprs]
            self._quantity_fn = sp.lambdify(self._param_syms, exprs, modules="numpy")
        values = [np.asarray(params[p.name], np.float64) for p in self.parameters]
        with np.errstate(all="ignore"):
            out = self._quantity_fn(*values)
        shape = np.broadcast(*values).shape
        return {q.name: np.broadcast_to(np.asarray(v, np.float64), shape) for q, v in zip(self.quantities, out)}

    # -- code generation ----------------------------------------------------
    def _sub(self, exprs):
        out = [sp.sympify(e) for e in exprs]
        for _ in range(len(self.spec.derived) + 1):  # derived symbols may use derived symbols
            out = [e.subs(self.spec.derived) for e in out]
        return out

    def _codegen(self) -> None:
        spec = self.spec
        states, params = list(spec.states), list(self._param_syms)
        self._f_after = lambdify_jax([TIME, *states, *params], self._sub(spec.field))
        before = spec.field_before if spec.field_before is not None else [0] * len(states)
        self._f_before = lambdify_jax([TIME, *states, *params], self._sub(before))
        self._initial = lambdify_jax(params, self._sub(spec.initial))
        reset = spec.reset if spec.reset is not None else states
        self._reset = lambdify_jax([*states, *params], self._sub(reset))
        self._observe = lambdify_jax([*states, *params], self._sub(spec.observable_exprs))
        cb = spec.closed_form_before if spec.closed_form_before is not None else spec.initial
        self._closed_before = lambdify_jax([TIME, *params], self._sub(cb))
        if spec.closed_form is not None:
            self._closed_after = lambdify_jax([SINCE, *params], self._sub(spec.closed_form))

    def derived_quantities(self, params) -> dict[str, jax.Array]:
        """Derived parameters (e.g. overshoot's beta = ratio * alpha, stagewise's ordered
        transition times) as JAX values; jit/vmap-safe."""
        if not self.spec.derived:
            return {}
        ps = [jnp.asarray(params[p.name]) for p in self.parameters]
        names = list(self.spec.derived)
        # derived expressions may use earlier derived symbols: substitute to a fixed point
        exprs = [self.spec.derived[d] for d in names]
        for _ in range(len(names)):
            exprs = [sp.sympify(e).subs(self.spec.derived) for e in exprs]
        values = lambdify_jax(self._param_syms, exprs)(*ps)
        return {str(d): jnp.asarray(v) for d, v in zip(names, values)}

    def __repr__(self) -> str:
        return f"<valuedyn model {self.name}: parameters {', '.join(p.name for p in self.parameters)}>"

    # -- parameters ---------------------------------------------------------
    def validate_params(self, params: dict[str, float]) -> None:
        """Outside jit: refuse missing/unknown names, non-finite values, values outside the
        support, and violated model constraints, with a one-line ValuedynError."""
        names = [p.name for p in self.parameters]
        missing = [n for n in names if n not in params]
        unknown = sorted(set(params) - set(names))
        if missing or unknown:
            raise ValuedynError(
                f"model {self.name} takes parameters {names}; received missing {missing} and unknown {unknown}; "
                "pass exactly the listed names (see `valuedyn models " + self.name + "`)"
            )
        values = {}
        for p in self.parameters:
            try:
                arr = np.asarray(params[p.name], dtype=float)
            except (TypeError, ValueError):
                raise ValuedynError(
                    f"parameter {p.name} of {self.name} must be a number; received {params[p.name]!r}; pass a float"
                ) from None
            if not np.all(np.isfinite(arr)):
                raise ValuedynError(f"parameter {p.name} of {self.name} must be finite; received {arr}; pass a finite value")
            if np.any(arr < p.lower) or np.any(arr > p.upper):
                raise ValuedynError(
                    f"parameter {p.name} of {self.name} ({p.doc}) must lie in [{p.lower}, {p.upper}]; "
                    f"received {arr if arr.ndim else float(arr)}; pass a value inside that range"
                )
            values[p.name] = arr
        if self.spec.check is not None:
            self.spec.check(values)

    def sample_prior(self, key, sample_shape: tuple[int, ...] = ()) -> dict[str, jax.Array]:
        """One draw from the default priors; ``sample_shape=(n,)`` gives n draws at once
        (cheaper to compile than vmap over keys, same distribution)."""
        keys = jax.random.split(key, len(self.parameters))
        return {p.name: p.prior.sample(k, tuple(sample_shape)) for p, k in zip(self.parameters, keys)}

    def typical_params(self) -> dict[str, float]:
        """Prior means (medians for transformed priors such as :func:`unit_interval_prior`),
        clipped to the support: a representative point for the CLI and demos."""
        out = {}
        for p in self.parameters:
            try:
                value = float(p.prior.mean)
            except NotImplementedError:
                value = p.prior.base_dist.mean
                for transform in p.prior.transforms:
                    value = transform(value)
                value = float(value)
            out[p.name] = float(np.clip(value, p.lower, p.upper))
        return out

    def _as_arrays(self, params, t):
        t = jnp.asarray(t)
        dtype = jnp.result_type(t.dtype, jnp.float32) if jnp.issubdtype(t.dtype, jnp.floating) else jnp.float32
        for p in self.parameters:
            dtype = jnp.result_type(dtype, jnp.asarray(params[p.name]).dtype)
        ps = [jnp.asarray(params[p.name], dtype) for p in self.parameters]
        return jnp.asarray(t, dtype), ps

    # -- solutions ----------------------------------------------------------
    def _observe_states(self, ys, ps) -> dict[str, jax.Array]:
        values = self._observe(*ys, *ps)
        shape = ys[0].shape
        return {o.name: jnp.broadcast_to(jnp.asarray(v, ys[0].dtype), shape) for o, v in zip(self.observables, values)}

    def _closed_states(self, t, ps):
        if self.spec.change_point is None:
            start = jnp.zeros((), t.dtype)
        else:
            start = ps[self._param_syms.index(self.spec.change_point)]
        # s clipped at 0: the after-branch is evaluated everywhere (where() picks), and a
        # negative s would overflow its exponentials and poison the gradient with NaN.
        s = jnp.maximum(t - start, 0.0)
        after = [jnp.broadcast_to(jnp.asarray(v, t.dtype), t.shape) for v in self._closed_after(s, *ps)]
        if self.spec.change_point is None:
            return after
        tb = jnp.minimum(t, start)
        before = [jnp.broadcast_to(jnp.asarray(v, t.dtype), t.shape) for v in self._closed_before(tb, *ps)]
        return [jnp.where(t < start, b, a) for b, a in zip(before, after)]

    def _ode_states(self, t, ps, *, stiff=None, rtol=None, atol=None, max_steps=None):
        """States at ``t`` by diffrax's adaptive solver (the reference solution)."""
        import diffrax

        stiff = self.stiff if stiff is None else stiff
        rtol = self.rtol if rtol is None else rtol
        atol = self.atol if atol is None else atol
        max_steps = self.max_steps if max_steps is None else max_steps
        solver = diffrax.Kvaerno5() if stiff else diffrax.Tsit5()
        controller = diffrax.PIDController(rtol=rtol, atol=atol)

        def solve(fn, start, stop, y_start, ts):
            def vf(time, y, args):
                return _field_at(fn, time, y, args)

            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(vf), solver, start, stop, None, y_start, args=tuple(ps),
                saveat=diffrax.SaveAt(ts=ts, t1=True), stepsize_controller=controller,
                max_steps=max_steps, throw=False,
                # DirectAdjoint, not the default RecursiveCheckpointAdjoint: the latter's
                # checkpointed while loop closure-converts its body with example values traced
                # outside pmap/shard_map (no sharding) and, in the backward pass, compares them
                # with values traced inside (sharding over the manual device mesh); equinox's
                # strict comparison raised "closure-converted function called with different
                # dynamic arguments", so ODE models could not run chains over devices. The
                # bounded loop of DirectAdjoint uses no closure conversion and also supports
                # forward mode.
                adjoint=diffrax.DirectAdjoint(),
            )
            return sol.ys[:-1], sol.ys[-1], sol.result == diffrax.RESULTS.successful

        return self._piecewise_states(t, ps, solve)

    def _grid_states(self, t, ps):
        """States at ``t`` by classical Runge-Kutta (RK4) on a uniform grid of
        ``ode_steps`` steps over each phase, read between grid points by cubic Hermite
        interpolation (of the grid's states and slopes: fourth order, like the steps).

        Why not diffrax's adaptive solve: in a fit, the gradient of the log density
        differentiates the solve, and through diffrax's while loop (``DirectAdjoint``, the
        adjoint that runs under pmap) that cost 184 ms for 32 solves at 300 updates on a
        2-core CPU, against 24 ms through this ``lax.scan`` (compile 15 s against 3 s).
        A fixed grid has no error control: :meth:`grid_error` measures it against the
        adaptive solution, and a fit reports it (``ode_error`` in its diagnostics).
        """
        n_steps = self.ode_steps
        try:  # concrete times past tau = 1 (extrapolation): as many steps per unit of tau
            n_steps *= max(1, math.ceil(float(np.max(np.asarray(t)))))
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError, ValueError):
            pass  # traced times (a fit's data): ode_steps over each phase, whatever its length

        def solve(fn, start, stop, y_start, ts):
            h = (stop - start) / n_steps

            def slope(time, y):
                return _field_at(fn, time, y, ps)

            def step(carry, i):
                y, k1 = carry
                time = start + i * h
                k2 = slope(time + 0.5 * h, y + 0.5 * h * k1)
                k3 = slope(time + 0.5 * h, y + 0.5 * h * k2)
                k4 = slope(time + h, y + h * k3)
                y_next = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
                f_next = slope(time + h, y_next)
                return (y_next, f_next), (y_next, f_next)

            f_start = slope(start, y_start)
            _, (ys, fs) = jax.lax.scan(step, (y_start, f_start), jnp.arange(n_steps, dtype=y_start.dtype))
            ys = jnp.concatenate([y_start[None], ys])
            fs = jnp.concatenate([f_start[None], fs])
            u = jnp.clip((ts - start) / jnp.where(h > 0, h, 1.0), 0.0, float(n_steps))
            i = jnp.clip(jnp.floor(u), 0, n_steps - 1).astype(jnp.int32)
            s = (u - i)[:, None]
            s2, s3 = s * s, s * s * s
            at_ts = ((2.0 * s3 - 3.0 * s2 + 1.0) * ys[i] + (s3 - 2.0 * s2 + s) * h * fs[i]
                     + (3.0 * s2 - 2.0 * s3) * ys[i + 1] + (s3 - s2) * h * fs[i + 1])
            return at_ts, ys[-1], jnp.asarray(True)

        return self._piecewise_states(t, ps, solve)

    def _piecewise_states(self, t, ps, solve):
        """States at ``t`` from ``solve(field, start, stop, y_start, ts) -> (states at ts
        [T, n], state at stop [n], ok)``: one phase, or (with a change point ``t0``) the phase
        before it (constant, closed form or solved) and the one after, restarted at ``t0``
        from the reset state. A failed or non-finite solve gives finite zeros and ok=False,
        so inference can reject the proposal."""
        n = len(self.spec.states)
        y0 = _stacked(self._initial(*ps), t.dtype)
        zero = jnp.zeros((), t.dtype)
        # the solve's end moves nothing inside it: no gradient through it
        t_end = jax.lax.stop_gradient(jnp.maximum(jnp.maximum(t[-1], 1.0), zero))
        tt = jnp.maximum(t, zero)
        if self.spec.change_point is None:
            ys, _, ok = solve(self._f_after, zero, t_end, y0, tt)
        else:
            t0 = ps[self._param_syms.index(self.spec.change_point)]
            if self.spec.field_before is None:
                # Constant state before the change point: no solve needed (half the compile).
                ys0 = jnp.broadcast_to(y0, (tt.shape[0], n))
                ok0 = jnp.asarray(True)
                y_t0 = y0
            elif self.spec.closed_form_before is not None:
                # The phase before t0 is solved in closed form (checked in the tests); only
                # the phase after it needs a solve.
                tb = jnp.clip(tt, zero, t0)
                ys0 = jnp.stack([jnp.broadcast_to(jnp.asarray(v, t.dtype), tt.shape) for v in self._closed_before(tb, *ps)], axis=1)
                y_t0 = _stacked(self._closed_before(t0, *ps), t.dtype)
                ok0 = jnp.asarray(True)
            else:
                ys0, y_t0, ok0 = solve(self._f_before, zero, t0, y0, jnp.clip(tt, zero, t0))
            y_after = _stacked(self._reset(*[y_t0[i] for i in range(n)], *ps), t.dtype)
            t_stop = jnp.maximum(t_end, t0)
            ys1, _, ok1 = solve(self._f_after, t0, t_stop, y_after, jnp.clip(tt, t0, t_stop))
            ys = jnp.where((tt < t0)[:, None], ys0, ys1)
            ok = ok0 & ok1
        ok = ok & jnp.all(jnp.isfinite(ys))
        ys = jnp.where(ok, ys, jnp.zeros_like(ys))
        return [ys[:, i] for i in range(n)], ok

    def states(self, params, t, *, method: str = "auto", **ode_options):
        """State trajectories: ({state_name: [T]}, ok). method: auto | closed | grid | ode
        (auto: the closed form where there is one, else the RK4 grid of ``ode_steps``
        steps, else (``ode_steps=0`` or ``stiff``) diffrax's adaptive solve, which ``ode``
        always uses)."""
        t, ps = self._as_arrays(params, t)
        if method == "auto":
            method = "closed" if self.closed_form else self.ode_method
        if method == "closed":
            if not self.closed_form:
                raise ValuedynError(f"model {self.name} has no closed form; use method='ode'")
            ys = self._closed_states(t, ps)
            ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(y)) for y in ys]))
        elif method == "ode":
            ys, ok = self._ode_states(t, ps, **ode_options)
        elif method == "grid":
            if self.ode_steps == 0:
                raise ValuedynError(f"model {self.name} was built with ode_steps=0: no grid; use method='ode'")
            ys, ok = self._grid_states(t, ps)
        else:
            raise ValuedynError(f"method must be auto, closed, grid or ode; received {method!r}")
        return dict(zip(self.state_names, ys)), ok

    @property
    def ode_method(self) -> str:
        """How :meth:`solve` solves a model without a closed form: ``grid`` (RK4 on a fixed
        grid) unless the model was built ``stiff`` or with ``ode_steps=0``, then ``ode``."""
        return "ode" if self.stiff or self.ode_steps == 0 else "grid"

    def _solve_with(self, params, t, method, **ode_options):
        t_arr, ps = self._as_arrays(params, t)
        states, ok = self.states(params, t, method=method, **ode_options)
        obs = self._observe_states([states[n] for n in self.state_names], ps)
        if method != "closed" and not (method == "auto" and self.closed_form):
            obs = {k: jnp.where(ok, v, jnp.zeros_like(v)) for k, v in obs.items()}
        return obs, ok

    def solve(self, params: dict[str, jax.Array], t: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
        """Observables at times t (tau, sorted, [T]) and ok (bool scalar); pure JAX.

        Uses the closed form when the model has one, else the diffrax solve. Never raises
        inside jit: a failed ODE solve returns zeros and ok=False.
        """
        return self._solve_with(params, t, "auto")

    def solve_binned(self, params: dict[str, jax.Array], t: jax.Array, *,
                     nodes: int | None = None, edges: jax.Array | None = None) -> tuple[dict[str, jax.Array], jax.Array]:
        """Observables averaged over each observation's span, and ok; pure JAX.

        The span of ``t[k]`` runs from halfway to its left neighbour to halfway to its
        right one (the first and last spans are as wide on both sides), so on the uniform
        grid of one trajectory row per update it is that update's share of training time:
        what one update's episodes measure. ``edges`` ``[T + 1]`` (tau, increasing) give
        the spans explicitly instead: ``[edges[k], edges[k + 1]]`` (a block of several
        updates, whose span is not halfway to its neighbours' middles). The average is by
        Gauss-Legendre quadrature with ``nodes`` nodes (default :data:`BIN_NODES`, with
        ``edges`` :data:`BLOCK_NODES`: a block is wide enough to hold a whole rise), split at
        the change point when the span contains it.

        Why: the level at a point has a kink in ``t0`` wherever ``t0`` crosses an
        observation time (nothing changes before it, the rise starts at once after it),
        so a likelihood of point values has a jump in its gradient at every update; NUTS's
        leapfrog steps lose energy at each jump and the step size collapses (on the core
        overshoot case: 137 leapfrog steps per iteration at point values, 36 averaged).
        The average over a span is continuously differentiable in ``t0``.
        """
        t_arr, ps = self._as_arrays(params, t)
        if edges is None and (t_arr.ndim != 1 or t_arr.shape[0] < 2):
            return self.solve(params, t)
        x, w = _gauss_legendre(nodes or (BIN_NODES if edges is None else BLOCK_NODES))
        x, w = jnp.asarray(x, t_arr.dtype), jnp.asarray(w, t_arr.dtype)
        if edges is None:
            mid = 0.5 * (t_arr[1:] + t_arr[:-1])
            lo = jnp.concatenate([2.0 * t_arr[:1] - mid[:1], mid])
            hi = jnp.concatenate([mid, 2.0 * t_arr[-1:] - mid[-1:]])
        else:
            edges = jnp.asarray(edges, t_arr.dtype)
            lo, hi = edges[:-1], edges[1:]
        width = hi - lo
        if self.spec.change_point is None:  # one piece per span
            at = lo[:, None] + width[:, None] * x
            weight = jnp.broadcast_to(w, at.shape)
        elif self.closed_form:
            # Only the span that holds the change point needs two pieces (split there): in
            # every other span the split is clipped to an end and one piece has zero width.
            # So: one piece per span, and the split span's two pieces evaluated once more and
            # put in its place (half the evaluations; the same sums). An ODE solve needs its
            # times sorted, so ODE models keep the layout below.
            at = lo[:, None] + width[:, None] * x
            change = ps[self._param_syms.index(self.spec.change_point)]
            # the split span as a one-hot mask (gathers and scatters cost more than the sums here)
            k = jnp.clip(jnp.sum(hi < change), 0, t_arr.shape[0] - 1)
            here = jnp.arange(t_arr.shape[0]) == k
            lo_k, hi_k = jnp.sum(jnp.where(here, lo, 0.0)), jnp.sum(jnp.where(here, hi, 0.0))
            split = jnp.clip(change, lo_k, hi_k)
            at_k = jnp.concatenate([lo_k + (split - lo_k) * x, split + (hi_k - split) * x])
            weight_k = jnp.concatenate([(split - lo_k) * w, (hi_k - split) * w]) / (hi_k - lo_k)
            observed, ok = self.solve(params, jnp.concatenate([at.reshape(-1), at_k]))
            n_regular = at.size
            return {key: jnp.where(here, jnp.sum(v[n_regular:] * weight_k), jnp.sum(v[:n_regular].reshape(at.shape) * w, axis=1))
                    for key, v in observed.items()}, ok
        else:
            split = jnp.clip(ps[self._param_syms.index(self.spec.change_point)], lo, hi)
            # [T, 2 nodes]: nodes of [lo, split] then of [split, hi]; sorted along the flat axis
            at = jnp.concatenate([lo[:, None] + (split - lo)[:, None] * x, split[:, None] + (hi - split)[:, None] * x], axis=1)
            weight = jnp.concatenate([((split - lo) / width)[:, None] * w, ((hi - split) / width)[:, None] * w], axis=1)
        observed, ok = self.solve(params, at.reshape(-1))
        return {k: jnp.sum(v.reshape(at.shape) * weight, axis=1) for k, v in observed.items()}, ok

    def solve_closed(self, params, t):
        """Observables from the closed form (models with ``closed_form`` only)."""
        return self._solve_with(params, t, "closed")

    def solve_ode(self, params, t, *, stiff: bool | None = None, rtol: float | None = None,
                  atol: float | None = None, max_steps: int | None = None):
        """Observables from the diffrax solve, whatever ``closed_form`` says."""
        return self._solve_with(params, t, "ode", stiff=stiff, rtol=rtol, atol=atol, max_steps=max_steps)

    def grid_error(self, params, t, observable: str | None = None) -> jax.Array:
        """Largest absolute difference, over ``t`` (and over the observables, or just
        ``observable``), between :meth:`solve`'s fixed-grid solution and diffrax's adaptive
        one: the error the RK4 grid adds. 0 where :meth:`solve` does not use the grid
        (closed forms, adaptive-only models); inf where only one of the two solves fails.
        Pure JAX, one parameter set (vmap it)."""
        if self.closed_form or self.ode_method != "grid":
            return jnp.zeros((), jnp.float32)
        grid, ok_grid = self._solve_with(params, t, "grid")
        reference, ok_ref = self._solve_with(params, t, "ode")
        keys = [observable] if observable is not None else list(grid)
        error = jnp.max(jnp.stack([jnp.max(jnp.abs(grid[k] - reference[k])) for k in keys]))
        return jnp.where(ok_grid & ok_ref, error, jnp.where(ok_grid == ok_ref, 0.0, jnp.inf))

    def simulate(self, key, params, t, *, noise: float = 0.05, observable: str | None = None) -> jax.Array:
        """One noisy trajectory [T] of ``observable`` (default: the first applies_to target).

        Gaussian observation noise with sd ``noise``; probabilities are clipped to [0, 1]
        and positive observables at 0, so the result stays in the observable's range.
        """
        names = {o.name: o for o in self.observables}
        if observable is None:
            observable = next(iter(self.applies_to.values()), self.observables[0].name)
        if observable not in names:
            raise ValuedynError(
                f"model {self.name} has observables {sorted(names)}; received {observable!r}; pass one of them"
            )
        obs, _ = self.solve(params, t)
        clean = obs[observable]
        noisy = clean + noise * jax.random.normal(key, clean.shape, clean.dtype)
        kind = names[observable].kind
        if kind == "probability":
            noisy = jnp.clip(noisy, 0.0, 1.0)
        elif kind == "positive":
            noisy = jnp.maximum(noisy, 0.0)
        return noisy

    # -- the symbolic solution --------------------------------------------------
    def dsolve(self) -> tuple[sp.Expr, ...]:
        """The state after the change point (or from tau = 0 without one) as sympy's
        ``dsolve`` finds it, in terms of s = time since the phase start and the parameters.

        The closed form a module supplies (``spec.closed_form``) is a numerically stable
        rewriting of this; the tests check that the two agree. Decoupled fields (diagonal
        Jacobian) are solved one equation at a time. Raises NotImplementedError when
        sympy finds no explicit solution.
        """
        spec = self.spec
        derived = spec.derived
        funcs = [sp.Function(f"_{s}_") for s in spec.states]
        s = SINCE
        subs_state = {st: f(s) for st, f in zip(spec.states, funcs)}
        field_exprs = [sp.sympify(e).subs(derived).subs(TIME, s) for e in spec.field]
        if spec.change_point is None:
            start = [sp.sympify(e).subs(derived) for e in spec.initial]
        else:
            t0 = spec.change_point
            before = spec.closed_form_before if spec.closed_form_before is not None else spec.initial
            before = [sp.sympify(e).subs(derived).subs(TIME, t0) for e in before]
            reset = spec.reset if spec.reset is not None else spec.states
            start = [sp.sympify(e).subs(derived).subs(dict(zip(spec.states, before))) for e in reset]
        start = [to_plain(e) for e in start]
        eqs = [sp.Eq(f(s).diff(s), e.subs(subs_state)) for f, e in zip(funcs, field_exprs)]
        jac = sp.Matrix(spec.field).jacobian(spec.states)
        decoupled = all(jac[i, j] == 0 for i in range(jac.rows) for j in range(jac.cols) if i != j)
        out = []
        if decoupled:
            for f, eq, y0 in zip(funcs, eqs, start):
                sol = sp.dsolve(eq, f(s), ics={f(0): y0})
                sol = sol[0] if isinstance(sol, list) else sol
                out.append(sol.rhs)
        else:
            sols = sp.dsolve(eqs, [f(s) for f in funcs], ics={f(0): y0 for f, y0 in zip(funcs, start)})
            by_func = {sol.lhs: sol.rhs for sol in sols}
            out = [by_func[f(s)] for f in funcs]
        return tuple(out)

    # -- vector field as a JAX function (for checks) -------------------------
    def vector_field(self, params, y, *, time: float = 1.0, before: bool = False):
        """d state/dt (JAX array [n]) at state y [n], for the field after (or before) t0."""
        fn = self._f_before if before else self._f_after
        ps = [jnp.asarray(params[p.name]) for p in self.parameters]
        y = jnp.asarray(y)
        return _field_at(fn, time, y, ps)

    # -- analysis -----------------------------------------------------------
    def analysis(self, params: dict[str, float] | None = None) -> Analysis:
        """Fixed points, Jacobian, eigenvalues, stability and timescales of the field after
        the change point; as sympy, and as numbers when params are given."""
        if params is not None:
            self.validate_params(params)
            params = {k: float(np.asarray(v)) for k, v in params.items()}
        spec = self.spec
        states = list(spec.states)
        field_exprs = [sp.sympify(e) for e in spec.field]
        jac = sp.Matrix(field_exprs).jacobian(states)
        numeric_subs = None
        if params is not None:
            numeric_subs = {spec.symbols[k]: sp.Float(v, 30) for k, v in params.items()}
            numeric_subs = {**{d: e.subs(numeric_subs) for d, e in spec.derived.items()}, **numeric_subs}
        fixed: list[FixedPoint] = []
        if spec.symbolic_fixed_points:
            for sol, point, j_at, eigs, stability, timescales in self._symbolic_fixed_points():
                fixed.append(self._numbers(point, j_at, eigs, stability, timescales, numeric_subs))
        elif numeric_subs is not None:
            num_field = [e.subs(numeric_subs) for e in field_exprs]
            for sol in _numeric_roots(num_field, states):
                point = {str(s): sol[s] for s in states}
                fixed.append(self._numbers(point, *_linearise(jac, sol), numeric_subs))
        derived = {str(k): v for k, v in spec.derived.items()}
        return Analysis(
            model=self.name, states=self.state_names,
            vector_field={str(s): e for s, e in zip(states, field_exprs)}, jacobian=jac,
            fixed_points=tuple(fixed), symbolic=spec.symbolic_fixed_points, params=params,
            derived=derived, reduced=self._reduced_analysis(), notes=spec.analysis_notes,
        )

    def _reduced_analysis(self) -> dict[str, sp.Expr]:
        return {}

    def _symbolic_fixed_points(self):
        """Fixed points of the field after t0 with their linearisation, computed once per model
        (sympy.solve and simplify take seconds for the larger systems)."""
        if getattr(self, "_symbolic_cache", None) is None:
            states = list(self.spec.states)
            field_exprs = [sp.sympify(e) for e in self.spec.field]
            jac = sp.Matrix(field_exprs).jacobian(states)
            cache = []
            for sol in sp.solve(field_exprs, states, dict=True):
                point = {str(s): sp.simplify(sol.get(s, s)) for s in states}
                cache.append((sol, point, *_linearise(jac, sol)))
            self._symbolic_cache = cache
        return self._symbolic_cache

    def _numbers(self, point, j_at, eigs, stability, timescales, numeric_subs) -> FixedPoint:
        values = eig_num = ts_num = None
        if numeric_subs is not None:
            values = {k: float(sp.re(sp.sympify(v).subs(numeric_subs).evalf())) for k, v in point.items()}
            eig_num = tuple(complex(sp.sympify(e).subs(numeric_subs).evalf()) for e in eigs)
            ts_num = tuple(math.inf if abs(e.real) == 0 else 1.0 / abs(e.real) for e in eig_num)
            stability = _stability_numeric(eig_num) if stability == "depends on parameters" else stability
        return FixedPoint(state=point, jacobian=j_at, eigenvalues=tuple(eigs), stability=stability,
                          timescales=timescales, values=values, eigenvalues_numeric=eig_num,
                          timescales_numeric=ts_num)


def _linearise(jac, sol):
    """Jacobian at a fixed point, its eigenvalues (with multiplicity), stability, timescales."""
    j_at = sp.simplify(jac.subs(sol))
    eigs = []
    for ev, mult in j_at.eigenvals().items():
        eigs.extend([sp.simplify(ev)] * mult)
    stability = _stability(eigs)
    timescales = []
    for e in eigs:
        inverse = sp.simplify(1 / sp.Abs(sp.re(e)))
        if inverse.has(sp.atan2, sp.arg):
            # sympy cannot tell a square-root argument is positive; keep 1/|Re lambda| readable
            inverse = 1 / sp.Abs(sp.re(e, evaluate=False), evaluate=False)
        timescales.append(inverse)
    return j_at, tuple(eigs), stability, tuple(timescales)


def _stability(eigs) -> str:
    re = [sp.re(e) for e in eigs]
    if all(r.is_negative for r in re):
        return "stable"
    if any(r.is_positive for r in re) and any(r.is_negative for r in re):
        return "saddle"
    if all(r.is_positive for r in re):
        return "unstable"
    if all(r.is_nonpositive for r in re) and any(r.is_zero for r in re):
        return "marginal"
    return "depends on parameters"


def _stability_numeric(eigs) -> str:
    re = [e.real for e in eigs]
    if all(r < 0 for r in re):
        return "stable"
    if any(r > 0 for r in re) and any(r < 0 for r in re):
        return "saddle"
    if all(r > 0 for r in re):
        return "unstable"
    return "marginal"


def _numeric_roots(num_field, states) -> list[dict]:
    """Real roots of a polynomial field with numeric coefficients (sympy), deduplicated."""
    rational = [sp.nsimplify(sp.expand(e), rational=True, tolerance=1e-14) for e in num_field]
    roots = []
    for sol in sp.solve(rational, states, dict=True):
        vals = {s: complex(sp.sympify(sol.get(s, s)).evalf(30)) for s in states}
        if all(abs(v.imag) < 1e-9 for v in vals.values()):
            point = {s: sp.Float(v.real, 30) for s, v in vals.items()}
            if not any(all(abs(float(point[s] - r[s])) < 1e-9 for s in states) for r in roots):
                roots.append(point)
    return roots
