"""The model registry: names -> factories; unknown names are refused with the known ones."""

from __future__ import annotations

from typing import Callable

from valuedyn._errors import ValuedynError
from valuedyn.models._base import Model

_FACTORIES: dict[str, Callable[..., Model]] = {}
_CACHE: dict[tuple, Model] = {}


def register_model(name: str, factory: Callable[..., Model]) -> None:
    """Register ``factory(**options) -> Model`` under ``name`` (a python identifier).

    Re-registering a name replaces the factory (and forgets cached instances), so a
    notebook can redefine a model while it is being developed.
    """
    if not name.isidentifier():
        raise ValuedynError(f"model names must be python identifiers; received {name!r}; use letters, digits and _")
    _FACTORIES[name] = factory
    for key in [k for k in _CACHE if k[0] == name]:
        del _CACHE[key]


def list_models() -> tuple[str, ...]:
    """Registered model names, sorted."""
    return tuple(sorted(_FACTORIES))


def get_model(name: str, **options) -> Model:
    """The model registered as ``name``; ``options`` go to its factory (e.g. ``stages=3``,
    ``stiff=True``). Instances are cached per (name, options)."""
    if name not in _FACTORIES:
        raise ValuedynError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}; pick one of them"
        )
    key = (name, tuple(sorted(options.items())))
    if key not in _CACHE:
        try:
            _CACHE[key] = _FACTORIES[name](**options)
        except TypeError as err:
            raise ValuedynError(f"model {name} does not take options {sorted(options)} ({err}); see its docstring") from None
    return _CACHE[key]
