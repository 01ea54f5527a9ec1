"""What a batch of fits is: a plan of (trajectory x behaviour x model) fits at one setting.

:func:`plan_fits` opens and validates every input before anything runs (a bad path,
behaviour name, model name or sampler setting is a :class:`ValuedynError` here, never
on a worker an hour later) and returns :class:`FitJob` values; :func:`run_plan`
(``valuedyn.fitting.pipeline._batch``) runs them. The default behaviours (the plant motif plus
every achievement learned within the run) are chosen here, so a fitting script gets
the same plan as ``valuedyn report``.

A job's :meth:`FitJob.cache_key` is the sha256 of the trajectory's bytes, the
:class:`~valuedyn.fitting.FitConfig` without its paths (the observation model included),
the model's definition, the fitting code and the numpyro / jax versions: the fit is redone
when any of them changed (:mod:`valuedyn.fitting.pipeline._cache`).

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from valuedyn._errors import ValuedynError
from valuedyn.fitting.pipeline._cache import fit_cache_key, hashed_observation, settings_key, slug
from valuedyn.fitting.settings import DIVERSITY_BEHAVIOURS, FitSettings

#: The developmental motif that started the project: always fitted when present.
PLANT_MOTIF = ("event:place_plant", "unlock:place_plant")
#: Default models of diversity behaviours: the two mechanistic diversity models and the two
#: simple shapes (a switch and a rise-then-relax); the stagewise shapes add little there.
DIVERSITY_MODELS = ("logistic_onset", "overshoot", "diversify_then_minimize", "replicator_mutator")

#: data family -> (plain, overdispersed) observation models that run_plan chooses between
#: by fitting both, when asked to (the family's default is used when the choice cannot be made)
OBSERVATION_CHOICES = {"binomial": ("binomial", "betabinomial")}


@dataclasses.dataclass(frozen=True)
class FitJob:
    """One fit of a plan: a behaviour of a trajectory file, one model, the plan's settings.

    ``seeds``: the trajectory's seed labels to fit (empty: all of them). ``observation``:
    the observation model (``auto``: the family's default, or the one run_plan chooses).
    ``deviation``: the structured deviation (``none``, or ``ou`` where run_plan's choice,
    or the plan, gives every model of the behaviour one).
    """

    trajectory: Path
    trajectory_sha256: str
    behaviour: str
    model: str
    seeds: tuple[int, ...]
    settings: FitSettings
    observation: str = "auto"
    deviation: str = "none"

    @property
    def family(self) -> str:
        """The data family of the behaviour (binomial, count, continuous)."""
        from valuedyn.fitting.inference._select import KIND_FAMILY

        return KIND_FAMILY.get(self.behaviour.partition(":")[0], "")

    @property
    def data(self) -> tuple:
        """What identifies the data a fit sees: fits sharing it compare (and share an observation choice)."""
        return (self.trajectory, self.behaviour, self.seeds, self.settings)

    def fit_config(self, out: str | Path = "unused.nc"):
        """The :class:`~valuedyn.fitting.settings.FitConfig` of this fit, writing to ``out``."""
        return self.settings.fit_config(trajectory=self.trajectory, behaviour=self.behaviour, model=self.model, out=out,
                                         observation=self.observation, seeds=self.seeds,
                                         deviation=self.deviation)

    def cache_key(self) -> str:
        """sha256 of what determines the fit: the trajectory's bytes, the FitConfig minus paths,
        the model's definition, the fitting code and the libraries (:func:`fit_cache_key`)."""
        return fit_cache_key(self.trajectory_sha256, self.fit_config())

    def settings_key(self) -> str:
        """The part of :meth:`cache_key` that the data and the settings make (:func:`settings_key`)."""
        return settings_key(self.trajectory_sha256, self.fit_config())

    def file_name(self) -> str:
        """The fit file's name in a fits folder: readable parts plus the key's first 12 hex digits."""
        observation = hashed_observation(self.behaviour, self.observation)
        named = "" if observation == "auto" else f"__{slug(observation)}"
        named += "" if self.deviation == "none" else f"__{slug(self.deviation)}"
        stem = f"{slug(self.trajectory.stem)}__{slug(self.behaviour)}__{slug(self.model)}{named}"
        return f"{stem}__{self.cache_key()[:12]}.nc"


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


# ---------------------------------------------------------------- behaviours and models


def learned_achievements(ds, threshold: float, window: float = 0.1) -> list[tuple[str, float]]:
    """Achievements learned within the run, in the order they are learned.

    Rule: pooling all seeds, the unlock rate (episodes that unlocked it / finished
    episodes) over the first ``window`` of updates is below ``threshold`` and over the
    last ``window`` is at or above it. Returned with the env step at which the pooled
    rate, smoothed over ``window``, first reaches ``threshold``. A cell the file marks
    unobserved (:func:`valuedyn.data.observed_mask`: an imported log's missing rate) counts
    neither in the unlocks nor in that achievement's finished episodes. A file without
    the unlocks part learns nothing.
    """
    from valuedyn.data import observed_mask

    if "achievement_unlocks" not in ds:
        return []
    seen = observed_mask(ds, "achievement_unlocks")  # [seed, update, achievement]
    unlocks = np.where(seen, np.asarray(ds["achievement_unlocks"].values, dtype=float), 0.0).sum(axis=0)  # [update, achievement]
    # per achievement: the finished episodes of the cells whose rate was logged
    episodes = (np.asarray(ds["episodes_finished"].values, dtype=float)[..., None] * seen).sum(axis=0)  # [update, achievement]
    env_step = np.asarray(ds["env_step"].values, dtype=float)
    n = episodes.shape[0]
    width = max(1, int(round(window * n)))

    def pooled(rows):
        total = episodes[rows].sum(axis=0)
        return np.divide(unlocks[rows].sum(axis=0), total, out=np.full(unlocks.shape[1], np.nan), where=total > 0)

    early, late = pooled(slice(0, width)), pooled(slice(n - width, n))
    names = [str(a) for a in ds["achievement"].values]
    kernel = np.ones(width)

    def smooth(values):
        return np.stack([np.convolve(values[:, a], kernel, mode="full")[:n] for a in range(len(names))], axis=1)

    smooth_unlocks, smooth_episodes = smooth(unlocks), smooth(episodes)
    rate = np.divide(smooth_unlocks, smooth_episodes, out=np.zeros_like(smooth_unlocks), where=smooth_episodes > 0)
    learned = []
    for a, name in enumerate(names):
        if np.isfinite(early[a]) and np.isfinite(late[a]) and early[a] < threshold <= late[a]:
            crossed = np.flatnonzero(rate[:, a] >= threshold)
            learned.append((name, float(env_step[crossed[0]]) if crossed.size else float(env_step[-1])))
    return sorted(learned, key=lambda item: (item[1], item[0]))


def _labels_of(ds, variable: str, dim: str) -> set[str]:
    """The labels of ``dim`` where the file holds ``variable`` (empty where its part is absent)."""
    return {str(v) for v in ds[dim].values} if variable in ds and dim in ds.coords else set()


def default_behaviours(ds, threshold: float) -> list[str]:
    """The plant motif (where the trajectory records it: ``event:place_plant`` only with the
    events part, ``unlock:place_plant`` only with the unlocks part) plus every learned achievement."""
    events = _labels_of(ds, "event_total", "event")
    achievements = _labels_of(ds, "achievement_unlocks", "achievement")
    chosen = [b for b in PLANT_MOTIF if b.partition(":")[2] in (events if b.startswith("event") else achievements)]
    chosen += [f"unlock:{name}" for name, _ in learned_achievements(ds, threshold) if f"unlock:{name}" not in chosen]
    return chosen


def absent_behaviours(ds, behaviours: Sequence[str]) -> dict[str, str]:
    """Behaviour -> the optional part it needs that ``ds`` does not hold (e.g. an unlock-only
    import: ``{"event:place_plant": "events", "diversity:actions": "actions", ...}``)."""
    from valuedyn.fitting.inference._select import behaviour_part

    return {b: behaviour_part(b)[0] for b in behaviours if behaviour_part(b)[1] and behaviour_part(b)[1] not in ds}


def absent_note(name: str, ds, absent: dict[str, str]) -> str:
    """One line: which behaviours a file does not offer and which parts its log lacked."""
    from valuedyn.data._schema import is_imported

    parts = sorted(set(absent.values()))
    whose = "its log (imported) lacked" if is_imported(ds) else "the file lacks"
    return (f"{name}: not fitted, {whose} the part{'s' if len(parts) > 1 else ''} {', '.join(parts)}: "
            f"{', '.join(absent)}")


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
    ``behaviours`` also :data:`DIVERSITY_BEHAVIOURS` unless ``diversity`` is False (or the
    file lacks their part: a note names the default behaviours a file cannot offer and the
    parts its log lacked; a behaviour asked for by name whose part is absent is refused); without
    ``models``, ``ode_models=False`` leaves out the models without a closed form. ``dataset``:
    the trajectory already opened (saves reading it twice). Returns the jobs and notes
    (what was left out and why). Raises :class:`ValuedynError` for any bad input.

    >>> from valuedyn.fitting import FitSettings, plan_fits, shipped_trajectories
    >>> jobs, notes = plan_fits(shipped_trajectories()[0], ["unlock:place_plant"], ["logistic_onset", "overshoot"],
    ...                         seeds=(0, 1), settings=FitSettings(chains=2, draws=60, warmup=60, min_draws=0))
    >>> [(job.behaviour, job.model, job.seeds) for job in jobs]
    [('unlock:place_plant', 'logistic_onset', (0, 1)), ('unlock:place_plant', 'overshoot', (0, 1))]
    >>> len(jobs[0].cache_key()), notes
    (64, [])
    """
    from valuedyn._io import file_sha256
    from valuedyn.data import open_trajectory
    from valuedyn.fitting.inference._select import chosen_seeds, select_behaviour
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
    if not behaviours:
        # the defaults a file without a part cannot offer: said in one line, never fitted to made-up zeros
        offered = [b for b in PLANT_MOTIF if b not in wanted] + (list(DIVERSITY_BEHAVIOURS) if diversity else [])
        absent = absent_behaviours(ds, offered)
        if absent:
            notes.append(absent_note(path.name, ds, absent))
        if diversity:
            wanted += [b for b in DIVERSITY_BEHAVIOURS if b not in wanted and b not in absent]
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
