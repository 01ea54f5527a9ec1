"""Run a plan of fits: fit, check and compare, cached by content hash, on an executor.

:func:`run_plan` takes the :class:`~valuedyn.fitting.pipeline._plan.FitJob` values of
:func:`~valuedyn.fitting.pipeline._plan.plan_fits` and a fits folder, and leaves there:

- one fit file per job, named ``STEM__BEHAVIOUR__MODEL__KEY12.nc`` (ArviZ netCDF with
  its posterior predictive checks stored, written once, atomically, by
  ``fit_trajectory(..., before_write=attach_checks)``);
- ``index.json``: cache key -> fit file, rewritten atomically after every finished fit,
  so a run killed at any moment loses at most the fits in flight and a rerun redoes only
  those (a fit file is trusted only when the index names it, it loads, and it names the
  same trajectory bytes);
- ``compare__STEM__BEHAVIOUR__KEY12.json`` per behaviour with two or more fitted models
  (PSIS-LOO and stacking; leave-future-out when asked).

Observation models: every family's default nests its plain model (beta-binomial for unlocks
and actions, negative binomial for event totals; lognormal for diversity), so by default
no choice fit runs and the fitted dispersion says how far the data are from the plain
model. With ``choose_observations`` (``fit-batch --choose-observation``): before the plan's fits, each
unlock or action behaviour whose jobs say ``auto`` gets its most flexible closed-form
model (:func:`~valuedyn.fitting.pipeline._plan.probe_model`) fitted with the Binomial and with the
beta-binomial; :func:`~valuedyn.fitting.choose_observation` decides between them (and
records the decision in both files), and every model of the behaviour is then fitted with
the chosen one (the probe's own fit is reused). The decisions are in
:attr:`BatchResult.observation_choices`. If a probe fit fails, the family's default
(the beta-binomial) is used and the reason says so. Event totals keep the negative binomial (it
nests the Poisson), diversity the lognormal. A rigid model's misfit of the curve's
shape would read as overdispersion too, hence the most flexible one (README, "Many fits at once").

Executors: fits run in groups, one model's fits per group, per observation model (they share one compiled
sampler; compilation dominates small fits). By default the groups run in a local pool
of spawned processes (one per core, at most 4), or in this process with
``workers=1``. With ``scheduler="tcp://HOST:PORT"`` (or a ``distributed.Client``) they
are submitted to a Dask distributed cluster, groups split so every worker has work.
Either way a fit that raises is reported as failed with its error and the others
complete; the files are the same (the fit is determined by its config and seed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from valuedyn._errors import ValuedynError
from valuedyn._io import write_text_atomic
from valuedyn.fitting.pipeline._cache import slug
from valuedyn.fitting.pipeline._plan import FitJob


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar on stderr (the runner's and the report's progress)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **kwargs)


# ---------------------------------------------------------------- results


@dataclasses.dataclass
class FitOutcome:
    """What became of one job. ``status``: ``"done"`` (fitted now), ``"cached"`` (an
    earlier fit reused), ``"failed"`` (the fit raised: ``error`` says what), or
    ``"skipped"`` (not started: it would have ended past the time budget).
    ``diagnostics``: the sampler diagnostics stored in the file (with ``trustworthy`` and
    ``reasons``); ``checks``: the stored posterior predictive checks; ``seconds``: wall
    time of the fit and its checks (0 when cached)."""

    job: FitJob
    key: str
    status: str
    path: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    diagnostics: dict = dataclasses.field(default_factory=dict)
    checks: dict | None = None
    #: when the first attempt's verdict was "sampler failed" with a remedy and the fit was
    #: refitted once with it (``path`` is then the refit): the first attempt's ``file``,
    #: ``key``, ``verdict`` label, ``failure`` (its causes in words), ``remedy`` (the
    #: Remedy's dict) and ``refit`` (``done``, ``cached``, ``failed: ...`` or ``skipped``)
    first_attempt: dict | None = None

    @property
    def fitted(self) -> bool:
        return self.status in ("done", "cached")

    @property
    def check_failures(self) -> list[str]:
        """Where the fit fails its posterior predictive checks, in words: the flags that
        :func:`valuedyn.fitting.check_fit` recorded (Bayesian p-values of the development
        statistics outside [0.05, 0.95], 50% / 90% interval coverage outside [0.4, 0.6] /
        [0.85, 0.95], a non-uniform LOO-PIT)."""
        if not self.checks:
            return ["no checks stored"]
        return [str(flag) for flag in self.checks.get("flags", [])]


@dataclasses.dataclass
class Comparison:
    """The models of one behaviour of one trajectory compared. ``table``: the pandas
    DataFrame of :func:`valuedyn.fitting.compare_fits` (indexed by model, best first:
    ``elpd_loo``, ``se``, ``d_elpd``, ``dse``, ``weight``, ...); ``warnings``: unreliable
    PSIS-LOO and untrustworthy fits; ``path``: the cached JSON beside the fits."""

    trajectory: Path
    behaviour: str
    models: list[str]
    table: object
    warnings: list[str]
    path: Path


@dataclasses.dataclass
class BatchResult:
    """``observation_choices``: :attr:`FitJob.data <valuedyn.fitting.pipeline._plan.FitJob.data>` ->
    the observation model decision for those data (``chosen``, ``reason``, ``probe_model``,
    ``coverage_90``, ``elpd_loo``, ``d_elpd``, ``dse``, ``fits``: observation -> file, and
    ``decided``: False when a probe fit failed and the default was kept)."""

    outcomes: list[FitOutcome]
    comparisons: list[Comparison]
    fits_dir: Path
    observation_choices: dict = dataclasses.field(default_factory=dict)
    #: :attr:`FitJob.data` -> the deviation decision for those data (``chosen``, ``reason``,
    #: ``smooth`` / ``ou``: model -> failed checks, ``fits``: deviation -> model -> file)
    deviation_choices: dict = dataclasses.field(default_factory=dict)

    def deviation_choice(self, job: FitJob) -> dict | None:
        """The deviation decision that applied to ``job``'s data (None: none was made)."""
        return self.deviation_choices.get(job.data)

    def observation_choice(self, job: FitJob) -> dict | None:
        """The observation decision that applied to ``job``'s data (None: none was made)."""
        return self.observation_choices.get(job.data)

    @property
    def failed(self) -> list[FitOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def to_dict(self) -> dict:
        """JSON-ready summary (``batch.json`` of ``valuedyn fit-batch``)."""
        return {
            "fits": [
                {"trajectory": str(o.job.trajectory), "behaviour": o.job.behaviour, "model": o.job.model,
                 "observation": o.job.observation, "key": o.key, "status": o.status, "file": str(o.path) if o.path else None, "error": o.error,
                 "seconds": o.seconds, "trustworthy": o.diagnostics.get("trustworthy"),
                 "check_failures": o.check_failures if o.fitted else None, "first_attempt": o.first_attempt}
                for o in self.outcomes
            ],
            "comparisons": [
                {"trajectory": str(c.trajectory), "behaviour": c.behaviour, "models": c.models, "file": str(c.path),
                 "winner": str(c.table.index[0]), "warnings": c.warnings}
                for c in self.comparisons
            ],
            "observation_choices": [
                {"trajectory": str(data[0]), "behaviour": data[1], "seeds": list(data[2]), **choice}
                for data, choice in self.observation_choices.items()
            ],
            "deviation_choices": [
                {"trajectory": str(data[0]), "behaviour": data[1], "seeds": list(data[2]), **choice}
                for data, choice in self.deviation_choices.items()
            ],
        }


# ---------------------------------------------------------------- the cache


class FitIndex:
    """``FITS_DIR/index.json``: cache key -> ``{"file", "trajectory", "behaviour", "model",
    "observation", "seconds"}`` (``seconds``: wall time of the fit and its checks when it ran)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "index.json"
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except (json.JSONDecodeError, OSError):
                log(f"fit cache index {self.path} is unreadable; its fits will be redone")

    def lookup(self, key: str, trajectory_sha256: str) -> Path | None:
        """The cached fit for ``key`` if the index names it, its file loads and it names
        the same trajectory bytes (a half-written or foreign file is never trusted)."""
        from valuedyn.fitting.inference._store import fit_attrs, load_fit

        entry = self.entries.get(key)
        if entry is None:
            return None
        path = self.folder / entry["file"]
        if not path.is_file():
            return None
        try:
            attrs = fit_attrs(load_fit(path))
        except ValuedynError:
            return None
        return path if str(attrs.get("trajectory_sha256", "")) == trajectory_sha256 else None

    def record(self, key: str, path: Path, job: FitJob, seconds: float | None = None) -> None:
        path = Path(path)
        name = path.name if path.parent == self.folder else path.relative_to(self.folder).as_posix()
        self.entries[key] = {"file": name, "trajectory": str(job.trajectory), "behaviour": job.behaviour,
                             "model": job.model, "observation": job.observation}
        if seconds is not None:
            self.entries[key]["seconds"] = round(float(seconds), 1)
        write_text_atomic(self.path, json.dumps(self.entries, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- fitting (runs on a worker)


_WATCHING_PARENT = False


def _exit_with_parent() -> None:
    """In a spawned worker: end this process as soon as the process that started it is gone.
    A report or fit-batch stopped with SIGTERM or SIGKILL runs no clean-up, and its workers
    went on fitting for minutes on cores nobody had asked for."""
    global _WATCHING_PARENT
    import multiprocessing
    import threading

    parent = multiprocessing.parent_process()
    if _WATCHING_PARENT or parent is None:
        return
    _WATCHING_PARENT = True

    def watch():
        from multiprocessing.connection import wait

        wait([parent.sentinel])  # ready when the parent process ends
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def fit_group(configs: list[tuple[int, object]], deadline: float | None, channel=None,
              fresh_process: bool = True) -> list[tuple[int, str, str, float]]:
    """Fit and check ``configs`` (``(job id, FitConfig)``) one after another; returns (and
    puts on ``channel``, when given, as each ends) ``(job id, status, payload, seconds)``
    with status ``"done"`` (payload: the written path), ``"failed"`` (payload: the error
    in one line) or ``"skipped"`` (it would end past ``deadline``, a ``time.time()``).

    Runs on a pool or Dask worker: a module-level function of plain arguments.
    """
    if fresh_process:
        from valuedyn.fitting.pipeline._jax_setup import prepare_jax

        prepare_jax(configs[0][1].chains)
        _exit_with_parent()
    import numpy as np

    from valuedyn.fitting.inference._fit import fit_trajectory
    from valuedyn.fitting.judge._check import attach_checks

    results, durations = [], []
    for job_id, fit_config in configs:
        if deadline is not None and durations and time.time() + float(np.mean(durations)) > deadline:
            result = (job_id, "skipped", "", 0.0)
        else:
            if fresh_process:  # one progress bar (the parent's) instead of interleaved NUTS bars
                fit_config = dataclasses.replace(fit_config, progress=False)
            mark = time.perf_counter()
            try:
                with contextlib.redirect_stdout(sys.stderr):  # the fit's summary is a log line; stdout is the caller's
                    written = fit_trajectory(fit_config, before_write=attach_checks)  # checks stored in the file: the parent only reads it
                status, payload = "done", str(written)
            except Exception as err:  # one fit that raises must not lose the others; the result names it
                first_line = str(err).splitlines()[0] if str(err) else ""
                status, payload = "failed", f"{type(err).__name__}: {first_line}"
            seconds = time.perf_counter() - mark
            durations.append(seconds)
            result = (job_id, status, payload, seconds)
        results.append(result)
        if channel is not None:
            channel.put(result)
    return results


def _groups(todo: list[tuple[int, object]], at_least: int) -> list[list[tuple[int, object]]]:
    """Jobs grouped by model and observation model (one compiled sampler each), ODE models
    (slow to compile) and the largest groups first; the largest groups are halved until
    there are ``at_least`` groups (or single fits)."""
    from valuedyn.models import get_model

    by_model: dict[tuple[str, str], list] = {}
    for item in todo:
        by_model.setdefault((item[1].model, item[1].observation), []).append(item)
    groups = [members for _, members in sorted(
        by_model.items(), key=lambda kv: (get_model(kv[0][0]).closed_form, -len(kv[1]), kv[0]))]
    while len(groups) < at_least and max(map(len, groups)) > 1:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        members = groups.pop(largest)
        half = (len(members) + 1) // 2
        groups[largest:largest] = [members[:half], members[half:]]
    return groups


def default_workers(workers: int, n_groups: int) -> int:
    """``workers`` if set, else one per core, at most 4; never more than there are groups."""
    if workers:
        return max(1, min(workers, n_groups))
    return max(1, min(os.cpu_count() or 1, 4, n_groups))


def _dask_client(scheduler):
    """A ``distributed.Client`` for ``scheduler`` (an address or a Client) and whether we own it."""
    try:
        from distributed import Client
    except ImportError:
        raise ValuedynError("--scheduler needs Dask distributed; install it with `pip install distributed`") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout="20s"), True
    except (OSError, TimeoutError) as err:
        raise ValuedynError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({type(err).__name__}: {err}); "
            "start one (`dask scheduler`) or pass its tcp://HOST:PORT"
        ) from None


def _run_groups(groups, deadline, *, workers: int, scheduler, on_result: Callable) -> None:
    """Run ``groups`` (on ``scheduler``, a ``distributed.Client``, when given) and call ``on_result((job id, status, payload, seconds))`` for each
    fit as soon as the parent learns of it. A group whose worker dies reports its
    unreported fits as failed."""
    seen: set[int] = set()

    def deliver(result) -> None:
        if result[0] not in seen:
            seen.add(result[0])
            on_result(result)

    def lost(group, err) -> None:
        for job_id, _ in group:
            deliver((job_id, "failed", f"worker lost ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})", 0.0))

    if scheduler is not None:
        from distributed import as_completed

        futures = {scheduler.submit(fit_group, group, deadline, None, True, pure=False): group for group in groups}
        for future in as_completed(futures):
            try:
                for result in future.result():
                    deliver(result)
            except Exception as err:  # the worker died or the task could not run
                lost(futures[future], err)
    elif workers <= 1:
        from types import SimpleNamespace

        channel = SimpleNamespace(put=deliver)  # each result delivered (and indexed) as its fit ends, not after its group
        for group in groups:
            fit_group(group, deadline, channel, fresh_process=False)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from multiprocessing.managers import SyncManager

        context = multiprocessing.get_context("spawn")  # JAX must not be forked
        manager = SyncManager(ctx=context)
        manager.start(_exit_with_parent)  # its server process, too, ends with this one
        with manager:
            channel = manager.Queue()
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(fit_group, group, deadline, channel, True): group for group in groups}
                while not all(f.done() for f in futures):
                    try:
                        deliver(channel.get(timeout=0.5))
                    except Exception:  # queue.Empty through the manager proxy
                        pass
                while not channel.empty():
                    deliver(channel.get())
                for future, group in futures.items():
                    try:
                        future.result()
                    except Exception as err:  # BrokenProcessPool: a worker was killed
                        lost(group, err)


# ---------------------------------------------------------------- the runner


def run_plan(
    jobs: Sequence[FitJob],
    fits_dir: str | Path,
    *,
    scheduler=None,
    workers: int = 0,
    time_budget: float = 0,
    compare: bool = True,
    lfo: bool = False,
    show_progress: bool = True,
    choose_observations: bool = False,
    refit_remedy: bool = False,
    choose_deviations: bool = False,
) -> BatchResult:
    """Fit, check and compare ``jobs``; fit files, comparisons and ``index.json`` in
    ``fits_dir``. Returns every job's :class:`FitOutcome` (in the order of ``jobs``) and
    the comparisons. See the module docstring for the executors.

    ``time_budget`` (seconds, 0 = none): a fit that would, at the mean time of its
    group's fits so far, end past the budget is not started (a group's first fit always
    runs); it is reported as skipped and a rerun with a larger budget reuses every fit
    made here. ``lfo``: also score leave-future-out (refits every model).
    ``choose_observations``: choose the observation model of unlock and action behaviours
    from data first (module docstring); off, every job keeps the observation it names.
    ``refit_remedy``: a fit whose verdict is "sampler failed" with a remedy is refitted
    once with it (:func:`refit_with_remedies`; ``valuedyn report`` and ``fit-batch`` ask
    for it by default, ``--no-refit-remedy`` turns it off).
    ``choose_deviations``: after the fits, every behaviour whose fits (at ``deviation`` none)
    fail predictive checks has all its models fitted again with the Ornstein-Uhlenbeck
    deviation, and :func:`~valuedyn.fitting.judge._deviation_choice.choose_deviation` keeps
    one set for all its models (:func:`_choose_deviations`; the decisions are in
    :attr:`BatchResult.deviation_choices`). Remedies and comparisons then act on the kept fits.

    ``workers=1`` fits in this process (no pool to start; its compiled models are reused);
    a second run finds every fit in the cache:

    >>> import tempfile
    >>> from valuedyn.fitting import FitSettings, load_fit, plan_fits, run_plan, shipped_trajectories
    >>> jobs, _ = plan_fits(shipped_trajectories()[0], ["unlock:place_plant"], ["logistic_onset"], seeds=(0, 1),
    ...                     settings=FitSettings(chains=2, draws=60, warmup=60, min_draws=0))
    >>> with tempfile.TemporaryDirectory() as fits:
    ...     first = run_plan(jobs, fits, workers=1, show_progress=False)
    ...     again = run_plan(jobs, fits, workers=1, show_progress=False)
    ...     shape = load_fit(first.outcomes[0].path).posterior["t0"].shape
    >>> [o.status for o in first.outcomes], [o.status for o in again.outcomes], shape
    (['done'], ['cached'], (2, 60, 2))
    """
    if workers < 0:
        raise ValuedynError(f"--workers must be >= 0 (0: one per core, at most 4); received {workers}")
    if time_budget < 0:
        raise ValuedynError(f"--time-budget must be >= 0 seconds (0 = no limit); received {time_budget}")
    fits_dir = Path(fits_dir)
    if fits_dir.exists() and not fits_dir.is_dir():
        raise ValuedynError(f"fits folder {fits_dir} is a file; pass a folder")
    started = time.time()
    choices, fitted_now = {}, {}
    if choose_observations:
        jobs, choices, fitted_now = _choose_observations(
            jobs, fits_dir, scheduler=scheduler, workers=workers, time_budget=time_budget, show_progress=show_progress)
        if time_budget:  # the choice's fits count against the budget (a group's first fit always runs)
            time_budget = max(time_budget - (time.time() - started), 1e-3)
    keys = [job.cache_key() for job in jobs]
    if len(set(keys)) != len(keys):
        raise ValuedynError("the plan lists the same fit twice (same trajectory, behaviour, model and settings); "
                            "remove the duplicate")
    index = FitIndex(fits_dir)
    outcomes = [FitOutcome(job=job, key=key, status="pending") for job, key in zip(jobs, keys)]
    todo = []
    for job_id, outcome in enumerate(outcomes):
        hit = index.lookup(outcome.key, outcome.job.trajectory_sha256)
        if hit is not None and outcome.key in fitted_now:  # fitted moments ago, to choose its observation model
            outcome.status, outcome.path, outcome.seconds = "done", hit, fitted_now[outcome.key]
        elif hit is not None:
            outcome.status, outcome.path = "cached", hit
        else:
            todo.append((job_id, outcome.job.fit_config(fits_dir / outcome.job.file_name())))

    client, owned = _dask_client(scheduler) if scheduler is not None and todo else (None, False)
    try:
        if client is not None:
            groups = _groups(todo, len(client.scheduler_info().get("workers", {})))
            stage_workers = 0  # the cluster's workers run the groups
            where = f" on the Dask cluster at {client.scheduler.address}"
        else:
            groups = _groups(todo, 0) if todo else []
            # this stage's processes; ``workers`` itself stays as asked for the stages after it (a fully
            # cached stage here once left the deviation fits and the remedy refits to one process)
            stage_workers = default_workers(workers, len(groups) or 1)
            where = f" in {stage_workers} processes" if stage_workers > 1 else ""
        probed = sum(o.status == "done" for o in outcomes)  # fitted above, to choose the observation model
        log(f"fit: {len(jobs)} fits, {len(jobs) - len(todo) - probed} cached, "
            + (f"{probed} made while choosing observation models, " if probed else "")
            + f"{len(todo)} to run{where}" + (f" (time budget {time_budget:g} s)" if time_budget else ""))
        _fit_todo(groups, outcomes, index, fits_dir, time_budget, stage_workers, client, show_progress)
    finally:
        if owned:
            client.close()
    for outcome in outcomes:
        if outcome.status == "pending":  # a worker never answered for it
            outcome.status, outcome.error = "failed", "no result came back from the worker"

    _read_diagnostics_and_checks([o for o in outcomes if o.fitted], show_progress)
    deviation_choices = {}
    if choose_deviations:
        left = None if not time_budget else max(time_budget - (time.time() - started), 1e-3)
        outcomes, deviation_choices = _choose_deviations(outcomes, fits_dir, index, scheduler=scheduler, workers=workers,
                                                         time_left=left, show_progress=show_progress)
    if refit_remedy:
        left = None if not time_budget else max(time_budget - (time.time() - started), 0.0)
        refit_with_remedies(outcomes, fits_dir, index, scheduler=scheduler, workers=workers, time_left=left,
                            show_progress=show_progress)
    comparisons = compare_outcomes(outcomes, fits_dir, lfo=lfo, show_progress=show_progress) if compare else []
    return BatchResult(outcomes=outcomes, comparisons=comparisons, fits_dir=fits_dir, observation_choices=choices,
                       deviation_choices=deviation_choices)


def _refit_config(outcome: FitOutcome, verdict, remedy):
    """The FitConfig of ``outcome``'s refit with ``remedy`` (the restart's starting points
    drawn from the first attempt's best mode) and its cache key."""
    from valuedyn.fitting.inference._store import load_fit
    from valuedyn.fitting.judge._trust import best_mode_starts
    from valuedyn.fitting.pipeline._cache import fit_cache_key

    config = remedy.apply(outcome.job.fit_config())
    if remedy.restart_from_best_mode:
        starts = best_mode_starts(load_fit(outcome.path), verdict.modes, config.chains)
        config = dataclasses.replace(config, initial_points=json.dumps({k: v.tolist() for k, v in starts.items()},
                                                                       sort_keys=True))
    return config, fit_cache_key(outcome.job.trajectory_sha256, config)


#: subfolder of a fits folder that keeps the first attempts of refitted fits (still cached):
#: a folder of fit files then holds one file per fit, as ``valuedyn figures`` expects
FIRST_ATTEMPTS = "first_attempts"


def _retire_first_attempt(outcome: FitOutcome, first_path: Path, fits_dir: Path, index: FitIndex) -> None:
    """Move a refitted fit's first attempt into :data:`FIRST_ATTEMPTS` (the index follows)."""
    target = fits_dir / FIRST_ATTEMPTS / first_path.name
    if first_path == target or not first_path.is_file():
        return
    target.parent.mkdir(exist_ok=True)
    os.replace(first_path, target)
    seconds = index.entries.get(outcome.key, {}).get("seconds")
    index.record(outcome.key, target, outcome.job, seconds)


def _record_first_attempt(path: Path, first: dict) -> None:
    """Store the first attempt (its settings, diagnostics and verdict) in the refit's file
    (attribute ``first_attempt``; atomic rewrite), unless it is there already."""
    from valuedyn.fitting.inference._store import fit_attrs, load_fit, save_fit

    idata = load_fit(path)
    if fit_attrs(idata).get("first_attempt", {}).get("key") == first["key"]:
        return
    idata.attrs["first_attempt"] = json.dumps(first, default=float)
    save_fit(idata, path)


def refit_with_remedies(outcomes: list[FitOutcome], fits_dir: Path, index: FitIndex, *, scheduler=None,
                        workers: int = 0, time_left: float | None = None, show_progress: bool = True) -> None:
    """Refit, once, every fitted outcome whose gate failed and whose verdict
    (:func:`~valuedyn.fitting.classify_fit`) is "sampler failed" with a
    :class:`~valuedyn.fitting.judge._trust.Remedy`: the job's FitConfig with the remedy's
    changes (and, for chains stuck in a lower mode, every chain started from draws of the
    best mode), cached under its own key (``...__refit__KEY12.nc``). The refit replaces
    the outcome's file (in place) and keeps its own verdict: it is never refitted again.
    The first attempt's file moves into ``FITS_DIR/first_attempts/`` (still cached there),
    so the folder holds one file per fit. The refit's ``first_attempt`` attribute holds the first attempt's file, cache key,
    settings, diagnostics and verdict; ``outcome.first_attempt`` a summary. A refit that
    raises, or is not started for time (``time_left`` seconds; None = no limit), leaves
    the first attempt in place and says so."""
    from valuedyn.fitting.inference._store import fit_attrs, load_fit
    from valuedyn.fitting.judge._trust import SAMPLER_FAILED, classify_fit

    candidates = [o for o in outcomes if o.fitted and not o.diagnostics.get("trustworthy")]
    planned = []
    for outcome in progress_bar(candidates, desc="remedies", unit="fit", disable=not show_progress):
        verdict = classify_fit(outcome.path, name=outcome.job.model)
        remedy = verdict.remedy
        if remedy is None:
            continue
        attrs = fit_attrs(load_fit(outcome.path))
        config, key = _refit_config(outcome, verdict, remedy)
        failure = "; ".join(f"{c.kind}: {c.summary}" for c in verdict.causes if c.kind == SAMPLER_FAILED)
        first = {"file": f"{FIRST_ATTEMPTS}/{outcome.path.name}", "key": outcome.key, "config": attrs.get("config"),
                 "diagnostics": attrs.get("diagnostics"), "verdict": verdict.to_dict(), "label": verdict.label,
                 "failure": failure, "remedy": remedy.to_dict()}
        summary = {"file": first["file"], "key": outcome.key, "verdict": verdict.label, "failure": failure,
                   "remedy": remedy.to_dict(), "refit_key": key}
        name = outcome.job.file_name().rsplit("__", 1)[0] + f"__refit__{key[:12]}.nc"
        planned.append((outcome, config, key, fits_dir / name, first, summary))
    if not planned:
        return
    todo, by_id = [], {}
    for job_id, (outcome, config, key, path, first, summary) in enumerate(planned):
        by_id[job_id] = planned[job_id]
        hit = index.lookup(key, outcome.job.trajectory_sha256)
        if hit is not None:
            _record_first_attempt(hit, first)
            _retire_first_attempt(outcome, outcome.path, fits_dir, index)
            outcome.first_attempt = {**summary, "refit": "cached"}
            outcome.path, outcome.status = hit, "cached"
        else:
            todo.append((job_id, dataclasses.replace(config, out=str(path))))
    log(f"remedies: {len(planned)} fits failed the sampler with a remedy; {len(planned) - len(todo)} refits cached, "
        f"{len(todo)} to run")
    refitted = [p[0] for p in planned if p[0].first_attempt is not None]

    def on_result(result) -> None:
        job_id, status, payload, seconds = result
        outcome, config, key, _, first, summary = by_id[job_id]
        if status == "done":
            path = Path(payload)
            _record_first_attempt(path, first)
            index.record(key, path, outcome.job, seconds)
            _retire_first_attempt(outcome, outcome.path, fits_dir, index)
            outcome.path, outcome.status = path, "done"
            outcome.seconds += seconds
            outcome.first_attempt = {**summary, "refit": "done"}
            refitted.append(outcome)
        else:  # the first attempt stays; the report says why there is no refit
            outcome.first_attempt = {**summary, "refit": "skipped (time budget)" if status == "skipped" else f"failed: {payload}"}
            log(f"refit of {outcome.job.model} to {outcome.job.behaviour} {status} ({payload}); the first attempt is kept")

    if todo:
        groups = _groups(todo, 0)
        client, owned = _dask_client(scheduler) if scheduler is not None else (None, False)
        try:
            deadline = None if time_left is None else time.time() + time_left
            _run_groups(groups, deadline, workers=default_workers(workers, len(groups)), scheduler=client,
                        on_result=on_result)
        finally:
            if owned:
                client.close()
    _read_diagnostics_and_checks(refitted, show_progress)


def _choose_observations(jobs: Sequence[FitJob], fits_dir: Path, *, scheduler, workers: int, time_budget: float,
                         show_progress: bool) -> tuple[list[FitJob], dict, dict[str, float]]:
    """The observation model of every unlock / action behaviour (jobs saying ``auto``),
    from fits of its probe model (the most flexible closed-form one) with each candidate. Returns the jobs with their
    observation set, the decisions per :attr:`FitJob.data`, and cache key -> seconds of
    the fits made here (so the plan reports them as run, not cached)."""
    from valuedyn.fitting.inference._observation import observation_for
    from valuedyn.fitting.judge._overdispersion import choose_observation
    from valuedyn.fitting.pipeline._plan import OBSERVATION_CHOICES, probe_model

    by_data: dict[tuple, list[FitJob]] = {}
    for job in jobs:
        if job.observation == "auto" and job.family in OBSERVATION_CHOICES:
            by_data.setdefault(job.data, []).append(job)
    if not by_data:
        return list(jobs), {}, {}
    probes: dict[tuple, list[FitJob]] = {}
    for data, members in by_data.items():
        model = probe_model(list(dict.fromkeys(j.model for j in members)))
        base = next(j for j in members if j.model == model)
        probes[data] = [dataclasses.replace(base, observation=name) for name in OBSERVATION_CHOICES[base.family]]
    log(f"observation models: {len(probes)} unlock / action behaviours, each fitted with "
        f"{' and '.join(OBSERVATION_CHOICES['binomial'])} by its most flexible closed-form model first")
    first = run_plan([p for pair in probes.values() for p in pair], fits_dir, scheduler=scheduler, workers=workers,
                     time_budget=time_budget, compare=False, show_progress=show_progress, choose_observations=False)
    by_key = {o.key: o for o in first.outcomes}
    choices: dict[tuple, dict] = {}
    for data, pair in probes.items():
        outcomes = [by_key[p.cache_key()] for p in pair]
        default, model = observation_for(pair[0].family, "auto").name, pair[0].model
        fits = {p.observation: str(o.path) if o.path else None for p, o in zip(pair, outcomes)}
        if all(o.fitted for o in outcomes):
            try:
                choice = choose_observation([o.path for o in outcomes]).to_dict()
                choices[data] = {**choice, "probe_model": model, "fits": fits, "decided": True}
                continue
            except Exception as err:  # LOO or checks that raise must not stop the plan; the reason names it
                why = f"the choice raised ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        else:
            why = "; ".join(f"the {model} fit with {p.observation} {o.status}" + (f" ({o.error})" if o.error else "")
                            for p, o in zip(pair, outcomes) if not o.fitted)
        choices[data] = {"chosen": default, "reason": f"not decided, {why}; the default {default} is used",
                         "probe_model": model, "fits": fits, "decided": False}
    for data, choice in choices.items():
        log(f"  {data[0].name} {data[1]}: {choice['chosen']} ({choice['reason']})")
    chosen = [dataclasses.replace(job, observation=choices[job.data]["chosen"]) if job.data in choices else job
              for job in jobs]
    fitted_now = {o.key: o.seconds for o in first.outcomes if o.status == "done"}
    return chosen, choices, fitted_now


def _choose_deviations(outcomes: list[FitOutcome], fits_dir: Path, index: FitIndex, *, scheduler, workers: int,
                       time_left: float | None, show_progress: bool) -> tuple[list[FitOutcome], dict]:
    """The structured deviation of every behaviour (:mod:`valuedyn.fitting.judge._deviation_choice`):
    behaviours whose fitted jobs (deviation ``none``) all fitted and some fail predictive
    checks get every model fitted with ``ou`` (cached like any fit); where the rule chooses
    ``ou`` those outcomes replace the smooth ones, and the choice is stored in every fit
    file of the behaviour (attribute ``deviation_choice``). Returns the outcomes and the
    decisions per :attr:`FitJob.data` (behaviours with nothing to decide are left out)."""
    from valuedyn.fitting.judge._deviation_choice import choose_deviation, needs_deviation

    by_data: dict[tuple, list[int]] = {}
    for i, outcome in enumerate(outcomes):
        if outcome.job.deviation == "none":
            by_data.setdefault(outcome.job.data, []).append(i)
    flagged = {}
    for data, members in by_data.items():
        if all(outcomes[i].fitted for i in members) and needs_deviation({outcomes[i].job.model: outcomes[i].checks
                                                                          for i in members}):
            flagged[data] = members
    if not flagged:
        return outcomes, {}
    deviated = [FitOutcome(job=dataclasses.replace(outcomes[i].job, deviation="ou"), key="", status="pending")
                for members in flagged.values() for i in members]
    todo = []
    for job_id, outcome in enumerate(deviated):
        outcome.key = outcome.job.cache_key()
        hit = index.lookup(outcome.key, outcome.job.trajectory_sha256)
        if hit is not None:
            outcome.status, outcome.path = "cached", hit
        else:
            todo.append((job_id, outcome.job.fit_config(fits_dir / outcome.job.file_name())))
    log(f"deviations: {len(flagged)} behaviours fail predictive checks without one; their {len(deviated)} fits "
        f"with the OU deviation: {len(deviated) - len(todo)} cached, {len(todo)} to run")
    if todo:
        client, owned = _dask_client(scheduler) if scheduler is not None else (None, False)
        try:
            groups = _groups(todo, len(client.scheduler_info().get("workers", {})) if client is not None else 0)
            _fit_todo(groups, deviated, index, fits_dir, time_left or 0, default_workers(workers, len(groups)),
                      client, show_progress)
        finally:
            if owned:
                client.close()
    for outcome in deviated:
        if outcome.status == "pending":
            outcome.status, outcome.error = "failed", "no result came back from the worker"
    _read_diagnostics_and_checks([o for o in deviated if o.fitted], show_progress)
    by_job = {(o.job.data, o.job.model): o for o in deviated}
    choices = {}
    result = list(outcomes)
    for data, members in flagged.items():
        smooth = {outcomes[i].job.model: outcomes[i].checks for i in members}
        with_ou = {outcomes[i].job.model: (by_job[(data, outcomes[i].job.model)].checks
                                           if by_job[(data, outcomes[i].job.model)].fitted else None) for i in members}
        choice = choose_deviation(smooth, with_ou)
        choice["fits"] = {"none": {outcomes[i].job.model: str(outcomes[i].path) for i in members},
                          "ou": {m: str(by_job[(data, m)].path) if by_job[(data, m)].path else None for m in with_ou}}
        choices[data] = choice
        log(f"  {data[0].name} {data[1]}: deviation {choice['chosen']} ({choice['reason']})")
        if choice["chosen"] == "ou":
            for i in members:
                result[i] = by_job[(data, outcomes[i].job.model)]
        for i in members:
            kept, other = result[i], (by_job[(data, outcomes[i].job.model)] if result[i] is outcomes[i] else outcomes[i])
            if kept.fitted:
                _record_deviation_choice(kept.path, choice)
                if kept.path.parent == fits_dir / NOT_CHOSEN:  # an earlier run chose the other set
                    _move_fit(kept, fits_dir, index)
            if other.fitted and other.path.parent == fits_dir:  # still cached, out of the way of a folder
                _move_fit(other, fits_dir / NOT_CHOSEN, index)   # that holds one file per fit
        choice["fits"] = {name: {m: (str(_moved(p, fits_dir)) if p else None) for m, p in files.items()}
                          for name, files in choice["fits"].items()}
    return result, choices


#: subfolder of a fits folder that keeps the fits of the deviation a behaviour was not given
#: (still cached there), so the folder holds one file per fit, as ``valuedyn figures`` expects
NOT_CHOSEN = "deviation_not_chosen"


def _moved(path: str, fits_dir: Path) -> Path:
    """Where a fit file of a deviation choice lies now (in the folder or in :data:`NOT_CHOSEN`)."""
    path = Path(path)
    for candidate in (fits_dir / path.name, fits_dir / NOT_CHOSEN / path.name):
        if candidate.is_file():
            return candidate
    return path


def _move_fit(outcome: FitOutcome, folder: Path, index: FitIndex) -> Path:
    """Move ``outcome``'s fit file into ``folder`` (the index follows); returns its path."""
    target = folder / outcome.path.name
    if outcome.path != target and outcome.path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(outcome.path, target)
        index.record(outcome.key, target, outcome.job, index.entries.get(outcome.key, {}).get("seconds"))
        outcome.path = target
    return outcome.path


def _record_deviation_choice(path: Path, choice: dict) -> None:
    """Store the behaviour's deviation decision in a fit file (attribute ``deviation_choice``;
    atomic rewrite), unless the same decision is there already."""
    from valuedyn.fitting.inference._store import fit_attrs, load_fit, save_fit

    idata = load_fit(path)
    stored = {k: choice[k] for k in ("chosen", "reason", "smooth", "ou")}
    before = fit_attrs(idata).get("deviation_choice")
    if isinstance(before, str):  # an attribute the store does not decode
        try:
            before = json.loads(before)
        except ValueError:
            before = None
    if before == json.loads(json.dumps(stored)):
        return
    idata.attrs["deviation_choice"] = json.dumps(stored)
    save_fit(idata, path)


def _fit_todo(groups, outcomes: list[FitOutcome], index: FitIndex, fits_dir: Path, time_budget: float,
              workers: int, client, show_progress: bool) -> None:
    """Run the groups; record each finished fit in the index as soon as it is known."""
    fits_dir.mkdir(parents=True, exist_ok=True)
    bar = progress_bar(total=sum(map(len, groups)), desc="fit", unit="fit", disable=not show_progress)

    def on_result(result) -> None:
        job_id, status, payload, seconds = result
        outcome = outcomes[job_id]
        outcome.status, outcome.seconds = status, seconds
        if status == "done":
            outcome.path = Path(payload)
            index.record(outcome.key, outcome.path, outcome.job, seconds)  # at once: a kill later keeps this fit
            _read_ahead(outcome.path)
        elif status == "failed":
            outcome.error = payload
            log(f"fit of {outcome.job.model} to {outcome.job.behaviour} failed ({payload}); listed as failed")
        bar.set_postfix_str(f"{outcome.job.model} on {outcome.job.behaviour}")
        bar.update(1)

    deadline = time.time() + time_budget if time_budget else None
    try:
        _run_groups(groups, deadline, workers=workers, scheduler=client, on_result=on_result)
    finally:
        bar.close()


def _read_ahead(path: Path) -> None:
    """Read a fit file the moment its worker reports it, while the other fits run: the
    checks, comparisons, verdicts and figures then take it from :func:`load_fit`'s memory
    instead of reading 20 files (0.6-1 s each) one after another once fitting ends. A file
    that does not read is left for those steps to report."""
    from valuedyn.fitting.inference._store import load_fit

    try:
        load_fit(path)
    except ValuedynError:
        pass


def _read_diagnostics_and_checks(outcomes: list[FitOutcome], show_progress: bool) -> None:
    """Diagnostics and checks from each fit file; checks run here for a cached fit that
    has none stored (one made before checks were stored by the runner)."""
    from valuedyn.fitting.inference._store import fit_attrs, load_fit
    from valuedyn.fitting.judge._check import check_fit

    for outcome in progress_bar(outcomes, desc="checks", unit="fit", disable=not show_progress):
        attrs = fit_attrs(load_fit(outcome.path))
        if not isinstance(attrs.get("checks"), dict):
            check_fit(outcome.path)
            attrs = fit_attrs(load_fit(outcome.path))
        diagnostics = attrs.get("diagnostics") if isinstance(attrs.get("diagnostics"), dict) else {}
        diagnostics["trustworthy"] = bool(int(attrs.get("trustworthy", 0)))
        diagnostics.setdefault("reasons", [])
        outcome.diagnostics, outcome.checks = diagnostics, attrs["checks"]


def compare_outcomes(outcomes: Sequence[FitOutcome], fits_dir: Path, *, lfo: bool = False,
                     show_progress: bool = True) -> list[Comparison]:
    """Compare the fitted models of each (trajectory, behaviour, seeds, settings) with two
    or more of them.

    A comparison is cached beside the fits as JSON, keyed by the fits' cache keys and file
    times (a redone fit invalidates it) and the LFO switch.
    """
    import pandas as pd

    from valuedyn.fitting.judge._compare import compare_fits

    groups: dict[tuple, list[FitOutcome]] = {}
    for outcome in outcomes:
        if outcome.fitted:  # only fits of the same data and settings compare
            job = outcome.job
            groups.setdefault((job.trajectory, job.behaviour, job.seeds, job.settings), []).append(outcome)
    comparisons = []
    for (trajectory, behaviour, _, _), members in progress_bar(
            [item for item in groups.items() if len(item[1]) > 1], desc="compare", unit="behaviour",
            disable=not show_progress):
        identity = [(o.job.model, o.key, o.path.stat().st_mtime_ns) for o in members]
        key = hashlib.sha256(json.dumps({"fits": identity, "lfo": lfo}).encode()).hexdigest()
        stored = fits_dir / f"compare__{slug(trajectory.stem)}__{slug(behaviour)}__{key[:12]}.json"
        if stored.exists():
            saved = json.loads(stored.read_text())
            table, warnings = pd.read_json(io.StringIO(saved["table"]), orient="split"), saved["warnings"]
        else:
            # lfo=True refits every model on the early updates (NUTS): only when asked for
            result = compare_fits([o.path for o in members], lfo=lfo, progress=lfo)
            table, warnings = result.table, list(result.warnings)
            write_text_atomic(stored, json.dumps({"table": table.to_json(orient="split"), "warnings": warnings}))
        comparisons.append(Comparison(trajectory, behaviour, [o.job.model for o in members], table, warnings, stored))
    return comparisons
