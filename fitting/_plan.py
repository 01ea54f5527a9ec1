"""What a batch of fits is: a plan of (trajectory x behaviour x model) fits at one setting.

:func:`plan_fits` opens and validates every input before anything runs (a bad path,
behaviour name, model name or sampler setting is a :class:`ValuedynError` here, never
on a worker an hour later) and returns :class:`FitJob` values; :func:`run_plan`
(``valuedyn.fitting._batch``) runs them. The default behaviours (the plant motif plus
every achievement learned within the run) are chosen here, so a fitting script gets
the same plan as ``valuedyn report``.

A job's :meth:`FitJob.cache_key` is the sha256 of the trajectory's bytes and the
:class:`~valuedyn.fitting.FitConfig` without its paths (the observation model included):
the fit is redone only when the data or a setting changed.

Observation models: a planned job says ``auto``, its family's default: the beta-binomial
for unlocks and actions and the negative binomial for event totals. Each nests the plain
model (Binomial, Poisson) at dispersion 0, a finite place its sampler reaches, so on plain
data it costs little more than one weakly identified parameter, and its fitted dispersion
says how far the data are from the plain model. Diversity has one observation model
(lognormal). On request (``choose_observations``) :func:`~valuedyn.fitting.run_plan` first
fits each unlock / action behaviour's most flexible closed-form model (:func:`probe_model`)
with the Binomial and with the beta-binomial, lets
:func:`~valuedyn.fitting.choose_observation` decide (recorded in both fit files), and fits
every model of that behaviour with the chosen one (:data:`OBSERVATION_CHOICES`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from valuedyn._config import config_to_dict
from valuedyn._errors import ValuedynError

#: The developmental motif that started the project: always fitted when present.
PLANT_MOTIF = ("event:place_plant", "unlock:place_plant")
#: The other face of the project's question, fast diversification and slow minimisation:
#: the diversity of what the agent achieves and of what it does, fitted for every trajectory
#: by default (on top of --max-behaviours, which caps the plant motif plus learned achievements).
DIVERSITY_BEHAVIOURS = ("diversity:events", "diversity:actions")
#: Default models of diversity behaviours: the two mechanistic diversity models and the two
#: simple shapes (a switch and a rise-then-relax); the stagewise shapes add little there.
DIVERSITY_MODELS = ("logistic_onset", "overshoot", "diversify_then_minimize", "replicator_mutator")

#: data family -> (plain, overdispersed) observation models that run_plan chooses between
#: by fitting both, when asked to (the family's default is used when the choice cannot be made)
OBSERVATION_CHOICES = {"binomial": ("binomial", "betabinomial")}

#: FitConfig fields that name where the data come from or how the fit is shown, not what
#: is fitted: left out of the cache key (a moved trajectory with the same bytes is the same fit).
VOLATILE_FIT_FIELDS = ("out", "trajectory", "force", "progress")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The sampler settings every fit of a plan shares (FitConfig's other fields keep
    their defaults). ``rng_seed`` is FitConfig's ``seed`` (the sampler's random seed).

    The defaults are ``valuedyn report``'s and ``fit-batch``'s: 4 chains x (500 + up to 1000),
    tree depth 8, target acceptance 0.99, and a fit whose warmup saturates the tree depth
    runs 100 draws per chain instead of 1000 (``saturated_draws``: it cannot pass the gate,
    and each of its draws costs the whole cap; 200 until 2026-12-02, when the report's five
    cut overshoot fits were 300 of its 940 fit-seconds and the 10-minute target was met
    by 4 s). Measured on the shipped run (8 seeds x 16
    updates; beta-binomial for unlocks, negbin for event totals, lognormal for diversity):
    13 of the report's 14 logistic_onset / stagewise / stagewise3 fits passed the gate in
    each of two runs, at 31-213 leapfrog steps per iteration; the miss, at the gate's edge,
    changed between them (one divergence in 4000 draws; R-hat 1.010 with bulk ESS 402); at
    FIT_SEMANTICS 4 all 14 passed (R-hat <= 1.006, bulk ESS >= 498). The former defaults (2 x (300 + 300), depth 6, target
    0.95) passed none of them: NUTS needs trees deeper than 6 on these posteriors, and at
    target 0.95 stagewise3 on unlock:collect_wood had 30 divergences. overshoot on this
    rise-only run saturates even depth 10 (step size 0.001-0.002, 275 s per fit): its
    optimum and excess trade along a curved ridge the data do not cut, which is why such a
    fit's draws are cut. The cost: the report's fit step took 999-1014 s on 2 idle cores
    with cold caches, 841 s (whole report 887 s) since one gradient kernel serves the MAP,
    the Hessian and the chains' starts (the whole report at the former defaults 466-506 s);
    627 s (784 s) once NUTS walked a flat vector, 548 s (677 s) with ``min_draws`` 500: a
    fit stops after 500 draws per chain (then every 250) once they pass the gate with bulk
    and tail ESS >= 500; 13 of the 14 shape fits stopped at 500 or 750 and all 14 passed;
    491 s (547 s, from a fresh clone) once each fit file was read once per process and
    written once, uncompressed, and a saturated fit ran 100 draws per chain: all 14 passed."""

    chains: int = 4
    draws: int = 1000
    warmup: int = 500
    rng_seed: int = 0
    max_tree_depth: int = 8
    #: tree-depth cap of the models without a closed form (each leapfrog step is an ODE
    #: solve and its adjoint, so the cap bounds such a fit's time); at most max_tree_depth
    ode_max_tree_depth: int = 6
    target_accept: float = 0.99
    #: draws per chain when the warmup saturates the tree depth (FitConfig's saturated_draws; 0 = never cut)
    saturated_draws: int = 100
    #: draws per chain after which sampling stops once the gate passes with a margin
    #: (FitConfig's min_draws; 0 = always run ``draws``)
    min_draws: int = 500

    @classmethod
    def from_config(cls, config) -> "FitSettings":
        """The settings of a command's config (``valuedyn report`` / ``fit-batch``: the
        fields of the same names; ``rng_seed`` is FitConfig's ``seed``)."""
        return cls(**{field.name: getattr(config, field.name) for field in dataclasses.fields(cls)})

    def tree_depth(self, model: str) -> int:
        """The tree-depth cap of a fit of ``model``."""
        from valuedyn.models import get_model

        if get_model(model).closed_form:
            return self.max_tree_depth
        return min(self.max_tree_depth, self.ode_max_tree_depth)

    def validate(self) -> None:
        """One-line :class:`ValuedynError` for a setting no fit could run with (the
        checks of ``valuedyn fit`` itself, made before any fit starts)."""
        from valuedyn.fitting._fit import validate_sampler_config

        config = FitJob(Path("-"), "", "-", "logistic_onset", (), self).fit_config()
        validate_sampler_config(config)
        if not 1 <= self.ode_max_tree_depth <= 15:
            raise ValuedynError(f"--ode-max-tree-depth must lie in 1..15; received {self.ode_max_tree_depth}")


@dataclasses.dataclass(frozen=True)
class FitJob:
    """One fit of a plan: a behaviour of a trajectory file, one model, the plan's settings.

    ``seeds``: the trajectory's seed labels to fit (empty: all of them). ``observation``:
    the observation model (``auto``: the family's default, or the one run_plan chooses).
    """

    trajectory: Path
    trajectory_sha256: str
    behaviour: str
    model: str
    seeds: tuple[int, ...]
    settings: FitSettings
    observation: str = "auto"

    @property
    def family(self) -> str:
        """The data family of the behaviour (binomial, count, continuous)."""
        from valuedyn.fitting._select import KIND_FAMILY

        return KIND_FAMILY.get(self.behaviour.partition(":")[0], "")

    @property
    def data(self) -> tuple:
        """What identifies the data a fit sees: fits sharing it compare (and share an observation choice)."""
        return (self.trajectory, self.behaviour, self.seeds, self.settings)

    def fit_config(self, out: str | Path = "unused.nc"):
        """The :class:`~valuedyn.fitting.FitConfig` of this fit, writing to ``out``."""
        from valuedyn.fitting import FitConfig

        s = self.settings
        return FitConfig(
            trajectory=str(self.trajectory), behaviour=self.behaviour, model=self.model, out=str(out),
            observation=self.observation,
            seeds=tuple(self.seeds), chains=s.chains, draws=s.draws, warmup=s.warmup, seed=s.rng_seed,
            max_tree_depth=s.tree_depth(self.model), target_accept=s.target_accept,
            saturated_draws=s.saturated_draws, min_draws=s.min_draws,
            force=True,  # a stale file under a cache name is replaced, never trusted
            progress=True,
        )

    def cache_key(self) -> str:
        """sha256 of what determines the fit: the trajectory's bytes and the FitConfig minus paths."""
        return fit_cache_key(self.trajectory_sha256, self.fit_config())

    def file_name(self) -> str:
        """The fit file's name in a fits folder: readable parts plus the key's first 12 hex digits."""
        observation = _hashed_observation(self.behaviour, self.observation)
        named = "" if observation == "auto" else f"__{slug(observation)}"
        stem = f"{slug(self.trajectory.stem)}__{slug(self.behaviour)}__{slug(self.model)}{named}"
        return f"{stem}__{self.cache_key()[:12]}.nc"


def _hashed_observation(behaviour: str, observation: str) -> str:
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
    from valuedyn.fitting._observation import FAMILY_OBSERVATIONS
    from valuedyn.fitting._select import KIND_FAMILY

    family = KIND_FAMILY.get(str(behaviour).partition(":")[0])
    return (family, FAMILY_OBSERVATIONS[family][0]) if family else (None, None)


#: the spellings of "the family's default observation model"
_AUTO = ("", "auto", "default", None)


#: family -> the observation model a cache key calls ``auto`` (each family's default when
#: keys were introduced; fixed, so that the keys of fits made since stay valid)
_KEYED_AS_AUTO = {"binomial": "binomial", "count": "negbin", "continuous": "lognormal"}


def probe_model(models: Sequence[str]) -> str:
    """The model on which a behaviour's observation model is chosen: the most flexible
    closed-form one (most parameters; ODE models only when there is no closed-form one,
    then the fewest parameters), ties broken by the order given (stagewise3 among the
    registered models). Overdispersion is scatter around a curve that follows the data:
    a rigid shape's misfit reads as overdispersion too. On the shipped run logistic_onset's
    Binomial fits of three unlock behaviours covered 0.80-0.84 of the observations and
    the beta-binomial was chosen on them, while stagewise's Binomial fits covered 0.90 and
    the rule kept the Binomial on its fits."""
    from valuedyn.models import get_model

    order = {name: index for index, name in enumerate(models)}

    def rank(name):
        model = get_model(name)
        size = len(model.parameters)
        return (0, -size, order[name]) if model.closed_form else (1, size, order[name])

    return min(models, key=rank)


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
_ADDED_FIT_FIELDS = {"saturated_draws": 0, "min_draws": 0}


def fit_cache_key(trajectory_sha256: str, fit_config) -> str:
    """Hash of the trajectory's bytes, a FitConfig without :data:`VOLATILE_FIT_FIELDS`
    and :data:`FIT_SEMANTICS`."""
    stored = config_to_dict(fit_config)
    for volatile in VOLATILE_FIT_FIELDS:
        stored.pop(volatile, None)
    # hashed under the field's name before the spelling was unified, so fits cached
    # before then are still found (the key of unchanged settings never changes)
    stored["behavior"] = stored.pop("behaviour")
    for name, inactive in _ADDED_FIT_FIELDS.items():  # hashed only when set, so older keys stay valid
        if stored.get(name) == inactive:
            stored.pop(name, None)
    stored["observation"] = _hashed_observation(stored["behavior"], stored.get("observation", "auto"))
    text = json.dumps({"trajectory_sha256": trajectory_sha256, "fit_config": stored, "fit_semantics": FIT_SEMANTICS},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def slug(text: str) -> str:
    """``text`` with every character but letters, digits, ``-`` and ``_`` replaced by ``-``."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


# ---------------------------------------------------------------- behaviours and models


def learned_achievements(ds, threshold: float, window: float = 0.1) -> list[tuple[str, float]]:
    """Achievements learned within the run, in the order they are learned.

    Rule: pooling all seeds, the unlock rate (episodes that unlocked it / finished
    episodes) over the first ``window`` of updates is below ``threshold`` and over the
    last ``window`` is at or above it. Returned with the env step at which the pooled
    rate, smoothed over ``window``, first reaches ``threshold``.
    """
    unlocks = np.asarray(ds["achievement_unlocks"].values, dtype=float).sum(axis=0)  # [update, achievement]
    episodes = np.asarray(ds["episodes_finished"].values, dtype=float).sum(axis=0)  # [update]
    env_step = np.asarray(ds["env_step"].values, dtype=float)
    n = len(episodes)
    width = max(1, int(round(window * n)))

    def pooled(rows):
        total = episodes[rows].sum()
        return unlocks[rows].sum(axis=0) / total if total > 0 else np.full(unlocks.shape[1], np.nan)

    early, late = pooled(slice(0, width)), pooled(slice(n - width, n))
    names = [str(a) for a in ds["achievement"].values]
    kernel = np.ones(width)
    smooth_unlocks = np.stack([np.convolve(unlocks[:, a], kernel, mode="full")[:n] for a in range(len(names))], axis=1)
    smooth_episodes = np.convolve(episodes, kernel, mode="full")[:n]
    rate = np.divide(smooth_unlocks, smooth_episodes[:, None], out=np.zeros_like(smooth_unlocks),
                     where=smooth_episodes[:, None] > 0)
    learned = []
    for a, name in enumerate(names):
        if np.isfinite(early[a]) and np.isfinite(late[a]) and early[a] < threshold <= late[a]:
            crossed = np.flatnonzero(rate[:, a] >= threshold)
            learned.append((name, float(env_step[crossed[0]]) if crossed.size else float(env_step[-1])))
    return sorted(learned, key=lambda item: (item[1], item[0]))


def default_behaviours(ds, threshold: float) -> list[str]:
    """The plant motif (where the trajectory records it) plus every learned achievement."""
    events = {str(e) for e in ds["event"].values}
    achievements = {str(a) for a in ds["achievement"].values}
    chosen = [b for b in PLANT_MOTIF if b.partition(":")[2] in (events if b.startswith("event") else achievements)]
    chosen += [f"unlock:{name}" for name, _ in learned_achievements(ds, threshold) if f"unlock:{name}" not in chosen]
    return chosen


def applicable_models(behaviour: str, requested: Sequence[str] = (), *, ode_models: bool = True) -> list[str]:
    """Models whose ``applies_to`` holds the behaviour's kind (``requested`` narrows them;
    without it a diversity behaviour gets :data:`DIVERSITY_MODELS`, any other every model,
    and ``ode_models=False`` drops the models without a closed form)."""
    from valuedyn.models import get_model, list_models

    kind = behaviour.partition(":")[0]
    if requested:
        names = list(requested)
    else:
        names = [n for n in DIVERSITY_MODELS if n in list_models()] if kind == "diversity" else list(list_models())
        if not ode_models:
            names = [name for name in names if get_model(name).closed_form]
    return [name for name in names if kind in get_model(name).applies_to]


def chosen_seeds(ds, seeds: Sequence[int] = (), max_seeds: int = 0) -> tuple[int, ...]:
    """``seeds`` if given, else the first ``max_seeds`` seed labels (empty tuple: all seeds)."""
    if seeds:
        return tuple(int(s) for s in seeds)
    labels = [int(s) for s in ds["seed"].values]
    if max_seeds and len(labels) > max_seeds:
        return tuple(labels[:max_seeds])
    return ()


def plan_fits(
    trajectory: str | Path,
    behaviours: Sequence[str] = (),
    models: Sequence[str] = (),
    *,
    seeds: Sequence[int] = (),
    max_seeds: int = 0,
    settings: FitSettings = FitSettings(),
    learned_threshold: float = 0.5,
    max_behaviours: int = 0,
    diversity: bool = True,
    ode_models: bool = True,
    dataset=None,
) -> tuple[list[FitJob], list[str]]:
    """The fits of one trajectory file, every input validated first.

    ``behaviours`` (``KIND:NAME``; default :func:`default_behaviours`), ``models``
    (default: every registered model whose kind applies), ``seeds`` (default: the first
    ``max_seeds``, 0 = all), at most ``max_behaviours`` behaviours (0 = all), and without
    ``behaviours`` also :data:`DIVERSITY_BEHAVIOURS` unless ``diversity`` is False; without
    ``models``, ``ode_models=False`` leaves out the models without a closed form. ``dataset``:
    the trajectory already opened (saves reading it twice). Returns the jobs and notes
    (what was left out and why). Raises :class:`ValuedynError` for any bad input.
    """
    from valuedyn._io import file_sha256
    from valuedyn.data import open_trajectory
    from valuedyn.fitting._select import select_behaviour
    from valuedyn.models import get_model

    settings.validate()
    for name in models:
        get_model(name)  # unknown name -> ValuedynError listing the known ones
    if not 0.0 < learned_threshold < 1.0:
        raise ValuedynError(f"--learned-threshold must lie in (0, 1); received {learned_threshold}")
    path = Path(trajectory)
    ds = open_trajectory(path) if dataset is None else dataset  # missing / corrupt / off-contract -> ValuedynError
    sha = file_sha256(path)
    chosen = chosen_seeds(ds, seeds, max_seeds)
    notes: list[str] = []
    wanted = list(behaviours) or default_behaviours(ds, learned_threshold)
    if max_behaviours and len(wanted) > max_behaviours:
        notes.append(
            f"{path.name}: {len(wanted) - max_behaviours} further behaviours left out by "
            f"--max-behaviours {max_behaviours}: {', '.join(wanted[max_behaviours:])}"
        )
        wanted = wanted[:max_behaviours]
    if not behaviours and diversity:
        wanted += [b for b in DIVERSITY_BEHAVIOURS if b not in wanted]
    jobs: list[FitJob] = []
    for behaviour in wanted:
        select_behaviour(ds, behaviour, seeds=chosen or None)  # bad name / empty data -> ValuedynError
        fitting = applicable_models(behaviour, models, ode_models=ode_models)
        if not models and not ode_models:
            solved = [m for m in applicable_models(behaviour) if m not in fitting]
            if solved:
                notes.append(f"{path.name}: {behaviour}: models without a closed form left out ({', '.join(solved)}; "
                             "--ode-models fits them)")
        if not fitting:
            notes.append(f"{path.name}: {behaviour}: no requested model applies to its kind; skipped")
            continue
        jobs += [FitJob(path, sha, behaviour, model, chosen, settings) for model in fitting]
    return jobs, notes
