"""valuedyn.models: stylized dynamical models of how a behaviour develops over training.

Each model is one small module, defined once in sympy and solved in JAX (closed form
where sympy's dsolve finds one, otherwise RK4 on a fixed grid, checked against diffrax's
adaptive solve), registered by name::

    from valuedyn.models import get_model, list_models
    model = get_model("overshoot")
    model.validate_params(params)              # outside jit: ValuedynError on bad input
    observables, ok = model.solve(params, t)   # pure JAX; t in tau (fitting window -> [0, 1])

Registered models, and the observable each fits per behaviour kind (``applies_to``):

- ``logistic_onset`` (closed form): unlock, event, action, diversity -> ``level``.
- ``overshoot`` (closed form): unlock, event, action, diversity -> ``level``.
- ``stagewise`` (2 stages), ``stagewise3`` (closed form; ``get_model("stagewise", stages=K)``):
  unlock, event, action, diversity -> ``level``.
- ``replicator_mutator`` (ODE): action -> ``level`` (the focal frequency, a
  probability); diversity -> ``diversity`` (hill1 / K, level units). Its Hill numbers
  hill0 (smoothed), hill1, hill2 are observables too, in [1, K].
- ``diversify_then_minimize`` (ODE): diversity -> ``diversity``; event -> ``cost``
  (the surplus-action count per episode). ``solve_reduced`` gives the slow-manifold model.

Each model declares its quantities of interest (``model.quantities``, :class:`Quantity`:
onset time, rise time, peak, final level, decay time, ... as expressions of its parameters,
with the parameters behind each); a parameter behind none is a nuisance
(``model.nuisance_parameters``, e.g. the floor before an onset). The judge of a fit calls it
"not identified" only about those quantities and the parameters behind them.

``level`` observables are in normalised level units and declared "positive": for
probability data (unlocks) the priors allow levels above 1, so an observation model for
probabilities must bound them. Options for any model: ``ode_steps`` (RK4 steps per phase of
an ODE model, default 512; 0: diffrax's adaptive Tsit5), ``stiff=True`` (the adaptive solve
with Kvaerno5), ``rtol``, ``atol``, ``max_steps`` (of the adaptive solve). See ``valuedyn models`` and
``valuedyn models NAME`` for the equations and the analysis.
"""

from valuedyn.models._base import BEHAVIOUR_KINDS, Analysis, FixedPoint, Model, ModelSpec, Observable, Parameter, Quantity
from valuedyn.models._registry import get_model, list_models, register_model

# Importing a model module registers it.
from valuedyn.models import logistic_onset as _logistic_onset  # noqa: E402,F401
from valuedyn.models import overshoot as _overshoot  # noqa: E402,F401
from valuedyn.models import replicator_mutator as _replicator_mutator  # noqa: E402,F401
from valuedyn.models import diversify_then_minimize as _diversify_then_minimize  # noqa: E402,F401
from valuedyn.models import stagewise as _stagewise  # noqa: E402,F401

__all__ = [
    "BEHAVIOUR_KINDS",
    "Analysis",
    "FixedPoint",
    "Model",
    "ModelSpec",
    "Observable",
    "Parameter",
    "Quantity",
    "get_model",
    "list_models",
    "register_model",
]
