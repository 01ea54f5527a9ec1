"""What identifies a fit in a fits folder: cache keys and file names.

A plan's fit (:meth:`~valuedyn.fitting.pipeline._plan.FitJob.cache_key`) is keyed by the
sha256 of the trajectory's bytes and the :class:`~valuedyn.fitting.settings.FitConfig`
without its paths (the observation model included; :func:`settings_key`), and by what would
make the same settings give another fit (:func:`fit_definition`): the model's definition
(equations, priors, observables, solver options), the code that shapes a fit (the
inference sub-room, the stored predictive checks, the models' solver; comments and
docstrings aside) and the versions of numpyro, jax, jaxlib and diffrax. So a fit is redone
when the data, a setting, the model, that code or a library changed, never served stale.
The report's conditions fit (:func:`fit_conditions_cached`) is keyed alike by the
trajectories' bytes, its :class:`~valuedyn.fitting.settings.ConditionsConfig` and the same
definition. Old fit files still load; they are only not found under the new keys.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from valuedyn._config import config_to_dict
from valuedyn._errors import ValuedynError
from valuedyn._io import file_sha256

#: FitConfig fields that name where the data come from or how the fit is shown, not what
#: is fitted: left out of the cache key (a moved trajectory with the same bytes is the same fit).
VOLATILE_FIT_FIELDS = ("out", "trajectory", "force", "progress", "verbose")


def hashed_observation(behaviour: str, observation: str) -> str:
    """The observation model as the cache key names it. ``auto`` stands for the family's
    default and is resolved to it first; then the model that was each family's default when
    the keys were introduced (:data:`_KEYED_AS_AUTO`) is hashed as ``auto`` (spelled out or
    not: keys made before the plan chose observation models named every fit ``auto``, and
    those fits are that model's), any other under its name. So a change of a family's
    default (the beta-binomial replaced the Binomial for unlocks and actions) never lets a
    fit cached under the old default stand in for the new one."""
    family, default = _family_default(behaviour)
    if family is None:
        return observation or "auto"
    if observation in _AUTO:
        observation = default
    return "auto" if observation == _KEYED_AS_AUTO[family] else observation


def keyed_observation(behaviour: str, observation: str) -> str:
    """``observation`` as a stored config's hash should name it: unchanged, except ``auto``
    where the family's default is no longer the model keys called ``auto``
    (:data:`_KEYED_AS_AUTO`): then the default's name, so that fits made under the old
    default are not taken for the new one (conditions fits hash their config this way)."""
    family, default = _family_default(behaviour)
    if family is None or observation not in _AUTO:
        return observation
    return observation if default == _KEYED_AS_AUTO[family] else default


def _family_default(behaviour: str) -> tuple[str | None, str | None]:
    """(observation family of ``behaviour``'s kind, that family's default observation model);
    (None, None) for an unknown kind."""
    from valuedyn.fitting.inference._observation import FAMILY_OBSERVATIONS
    from valuedyn.fitting.inference._select import KIND_FAMILY

    family = KIND_FAMILY.get(str(behaviour).partition(":")[0])
    return (family, FAMILY_OBSERVATIONS[family][0]) if family else (None, None)


#: the spellings of "the family's default observation model"
_AUTO = ("", "auto", "default", None)


#: family -> the observation model a cache key calls ``auto`` (each family's default when
#: keys were introduced; fixed, so that the keys of fits made since stay valid)
_KEYED_AS_AUTO = {"binomial": "binomial", "count": "negbin", "continuous": "lognormal"}


#: bumped whenever a fit of the same trajectory and FitConfig would come out different
#: (the likelihood or the sampler changed), so that no fit cached before is reused:
#: 2 = the expected observation of an update is the level averaged over its span
#: (``Model.solve_binned``) and the population locations have their own frame
#: 3 = Stan's warmup windows (the first mass matrix from draws after 100 iterations), a
#: saturated warmup stopped after its first saturated window of 100+ iterations, and the
#: CPU kernels compiled at lower LLVM optimisation levels (other rounding)
#: 4 = the MAP, the Hessian and the chains' starting gradients from one batched gradient
#: kernel, and the sampler's host-side noise (MAP starts, chain jitter, chain keys) from numpy
FIT_SEMANTICS = 4


#: FitConfig fields added after keys were introduced -> the value that leaves the fit as it was
_ADDED_FIT_FIELDS = {"saturated_draws": 0, "min_draws": 0, "initial_points": None, "blocks": "auto", "deviation": "none"}


def fit_cache_key(trajectory_sha256: str, fit_config) -> str:
    """The cache key of a fit (sha256, 64 hex digits): :func:`settings_key` (the data and
    the settings) and :func:`fit_definition` of ``fit_config.model`` (the model's
    definition, the fitting code, the libraries)."""
    text = json.dumps({"settings": settings_key(trajectory_sha256, fit_config),
                       "definition": fit_definition(fit_config.model)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def settings_key(trajectory_sha256: str, fit_config) -> str:
    """Hash of the trajectory's bytes, a FitConfig without :data:`VOLATILE_FIT_FIELDS`
    and :data:`FIT_SEMANTICS` (what the keys were before :func:`fit_definition` joined them;
    unchanged settings keep this part of the key)."""
    stored = config_to_dict(fit_config)
    for volatile in VOLATILE_FIT_FIELDS:
        stored.pop(volatile, None)
    # hashed under the field's name before the spelling was unified, so fits cached
    # before then are still found (the key of unchanged settings never changes)
    stored["behavior"] = stored.pop("behaviour")
    for name, inactive in _ADDED_FIT_FIELDS.items():  # hashed only when set, so older keys stay valid
        if stored.get(name) == inactive:
            stored.pop(name, None)
    stored["observation"] = hashed_observation(stored["behavior"], stored.get("observation", "auto"))
    text = json.dumps({"trajectory_sha256": trajectory_sha256, "fit_config": stored, "fit_semantics": FIT_SEMANTICS},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- what else makes a fit what it is
#: the code that shapes a fit file (module or package names; a package stands for every
#: module in its folder): the inference sub-room (selection, observation models, the numpyro
#: model, NUTS, diagnostics, the store), the predictive checks the batch runner stores in
#: the file, and the models' solver (code generation, closed forms, ODE grids)
FIT_CODE = ("valuedyn.fitting.inference", "valuedyn.fitting.judge._check", "valuedyn.models._base")
#: and what shapes a conditions fit besides: its model of effects per condition and its sampling
CONDITIONS_CODE = FIT_CODE + ("valuedyn.fitting.analyses._conditions",)
#: the libraries whose release can change a fit's draws (the sampler, the compiled kernels, the ODE solver)
FIT_LIBRARIES = ("numpyro", "jax", "jaxlib", "diffrax")
#: fields of a model's definition that document it and change no fit
_DOCUMENTATION_FIELDS = ("summary", "analysis_notes", "doc", "unit", "check", "symbolic_fixed_points")


def fit_definition(model_name: str) -> dict:
    """What besides the data and the settings determines a fit of ``model_name``:
    ``{"model": sha256 of its definition, "code": sha256 of FIT_CODE, "libraries":
    {name: version}}`` (:func:`model_digest`, :func:`code_digest`, :func:`library_versions`)."""
    from valuedyn.models import get_model

    return {"model": model_digest(get_model(model_name)), "code": code_digest(FIT_CODE),
            "libraries": library_versions()}


@functools.lru_cache(maxsize=None)
def model_digest(model) -> str:
    """sha256 of a model's definition: its sympy expressions (field, initial state, reset,
    closed forms, derived symbols, observables), its parameters' priors (distribution type
    and arguments, transforms) and bounds, and its solver options (ODE steps, stiffness,
    tolerances). Documentation (summary, docs, units) is left out. A model registered
    anew (``register_model``) is a new instance, so an edited prior gets a new digest."""
    spec = {f.name: _describe(getattr(model.spec, f.name)) for f in dataclasses.fields(model.spec)
            if f.name not in _DOCUMENTATION_FIELDS}
    options = {"stiff": model.stiff, "rtol": model.rtol, "atol": model.atol, "max_steps": model.max_steps,
               "ode_steps": model.ode_steps}
    return hashlib.sha256(json.dumps({"spec": spec, "options": options}, sort_keys=True).encode()).hexdigest()


def _describe(value):
    """A JSON-able description of a piece of a model's definition (sympy: ``srepr``; numpyro
    distributions and transforms: type and arguments; arrays: values)."""
    import sympy as sp

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, sp.Basic):
        return sp.srepr(value)
    if isinstance(value, dict):
        return sorted([_describe(k), _describe(v)] for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: _describe(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _DOCUMENTATION_FIELDS}
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    arguments = getattr(value, "arg_constraints", None)  # a numpyro distribution: its arguments
    names = list(arguments) if isinstance(arguments, dict) else []
    names += [k for k in vars(value) if not k.startswith("_") and k not in names] if hasattr(value, "__dict__") else []
    return {"type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{name: _describe(getattr(value, name, None)) for name in sorted(names)}}


def code_digest(modules) -> str:
    """sha256 of the code of ``modules`` (module or package names; a package: every ``.py``
    in its folder): each file's syntax tree without docstrings, so an edited comment or
    docstring keeps the digest and an edited statement changes it."""
    files = []
    for name in modules:
        found = importlib.util.find_spec(name)
        if found is None or found.origin is None:
            raise ValuedynError(f"fit code {name!r} names no module; fix FIT_CODE")
        origin = Path(found.origin)
        files += sorted(origin.parent.glob("*.py")) if found.submodule_search_locations else [origin]
    digest = hashlib.sha256()
    for path in files:
        text = path.read_bytes()
        digest.update(f"{path.parent.name}/{path.name}\n{_code_of(text)}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=256)
def _code_of(text: bytes) -> str:
    """A module's syntax tree without docstrings (parsed once per content)."""
    return ast.dump(_without_docstrings(ast.parse(text)))


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def library_versions() -> dict[str, str]:
    """{name: installed version} of :data:`FIT_LIBRARIES` (``"absent"`` for one not installed)."""
    versions = {}
    for name in FIT_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def slug(text: str) -> str:
    """``text`` with every character but letters, digits, ``-`` and ``_`` replaced by ``-``."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


# ---------------------------------------------------------------- a cached fit (what `valuedyn report` runs)
#: ConditionsConfig fields that name where the data come from or how the fit is shown, not
#: what is fitted: left out of the cache key (as :data:`VOLATILE_FIT_FIELDS`)
VOLATILE_CONDITIONS_FIELDS = ("out", "trajectories", "force", "progress", "strict")


def _cache_identity(trajectory_sha256: list[str], config: dict) -> str:
    stored = {k: v for k, v in config.items() if k not in VOLATILE_CONDITIONS_FIELDS + ("config_class",)}
    if stored.get("deviation") == "none":  # added after keys were: hashed only when set, so older keys stay valid
        stored.pop("deviation")
    if "observation" in stored:  # "auto" of a family whose default changed names the new default
        stored["observation"] = keyed_observation(stored.get("behaviour", stored.get("behavior", "")), stored["observation"])
    return json.dumps({"trajectory_sha256": list(trajectory_sha256), "config": stored}, sort_keys=True)


def conditions_cache_key(trajectory_sha256: list[str], config) -> str:
    """sha256 of what determines a conditions fit: the trajectories' bytes (in order), the
    :class:`~valuedyn.fitting.settings.ConditionsConfig` without its paths and
    :func:`fit_definition` of its model, with the conditions model's own code
    (:data:`CONDITIONS_CODE`) in place of the single fits'."""
    definition = {**fit_definition(config.model), "code": code_digest(CONDITIONS_CODE)}
    text = json.dumps({"settings": _cache_identity(trajectory_sha256, config_to_dict(config)),
                       "definition": definition}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def fit_conditions_cached(trajectories, behaviour: str, model: str, fits_dir, *, settings, seeds=(), max_seeds: int = 0,
                          progress: bool = True, deviation: str = "none", updates: str | None = None) -> tuple[Path, bool]:
    """The conditions fit of ``behaviour`` with ``model`` over ``trajectories`` at the
    sampler ``settings`` of a plan (:class:`~valuedyn.fitting.FitSettings`; other fields at
    their defaults; ``deviation``: the behaviour's structured deviation, as its single fits
    have it; ``updates``: the common update window, ``FIRST:LAST``, None = all), written into ``fits_dir`` as
    ``conditions__<behaviour>__<model>__<key>.nc``; returns (path, reused). A file under
    that name is reused only when it loads and names the same trajectory bytes and
    settings (a half-written or foreign file is refitted). Prints to stderr."""
    import contextlib

    from valuedyn.fitting.analyses._conditions import fit_conditions
    from valuedyn.fitting.inference._store import fit_attrs, load_fit
    from valuedyn.fitting.settings import ConditionsConfig

    config = ConditionsConfig(
        trajectories=tuple(str(p) for p in trajectories), model=model, behaviour=behaviour, out="unused.nc",
        seeds=tuple(seeds), max_seeds=int(max_seeds), chains=settings.chains, draws=settings.draws,
        warmup=settings.warmup, seed=settings.rng_seed, max_tree_depth=settings.max_tree_depth,
        force=True, progress=progress, deviation=deviation, updates=updates,
    )
    shas = [file_sha256(p) for p in config.trajectories]
    key = conditions_cache_key(shas, config)
    out = Path(fits_dir) / f"conditions__{slug(behaviour)}__{slug(model)}__{key[:12]}.nc"
    if out.is_file():
        try:
            attrs = fit_attrs(load_fit(out))
            stored = (list(attrs["trajectory_sha256"].values()), attrs["config"])
            if _cache_identity(*stored) == _cache_identity(shas, config_to_dict(config)):
                return out, True
        except (ValuedynError, KeyError, TypeError, AttributeError):  # a foreign or half-written file is refitted
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):  # the command's summary; stdout belongs to the caller
        fit_conditions(dataclasses.replace(config, out=str(out)))
    return out, False
