"""valuedyn.models: stylized dynamical models of how a behaviour develops over training.

Each model is one small module, defined once in sympy and solved in JAX (closed form
where sympy finds one, diffrax otherwise), registered by name::

    from valuedyn.models import get_model, list_models
    model = get_model("overshoot")
    observables, ok = model.solve(params, t)   # t in tau, [T]

Registered: logistic_onset, overshoot, replicator_mutator, diversify_then_minimize,
stagewise (and stagewise3). See `valuedyn models` and `valuedyn models NAME`.
"""

from valuedyn.models._base import Analysis, FixedPoint, Model, ModelSpec, Observable, Parameter
from valuedyn.models._registry import get_model, list_models, register_model

# Importing a model module registers it.
from valuedyn.models import logistic_onset as _logistic_onset  # noqa: E402,F401
from valuedyn.models import overshoot as _overshoot  # noqa: E402,F401
from valuedyn.models import replicator_mutator as _replicator_mutator  # noqa: E402,F401
from valuedyn.models import diversify_then_minimize as _diversify_then_minimize  # noqa: E402,F401
from valuedyn.models import stagewise as _stagewise  # noqa: E402,F401

__all__ = [
    "Analysis",
    "FixedPoint",
    "Model",
    "ModelSpec",
    "Observable",
    "Parameter",
    "get_model",
    "list_models",
    "register_model",
]
