"""``valuedyn report``: fit, check and compare the candidate models on trajectories and
write a report a paper can use.

Steps (each shows progress on stderr):

1. inputs: every trajectory is opened and validated, every behaviour and model name
   checked, before anything is fitted or written;
2. fit (cached): one fit per (trajectory, behaviour, model) through
   :func:`valuedyn.fitting.fit_trajectory`; the cache key is the trajectory's sha256 plus
   the FitConfig (without its output path), kept in ``DIR/fits/index.json``; a fit whose
   key is unchanged and whose file still loads is not redone;
3. diagnostics: read from each fit file (R-hat, ESS, divergences, trustworthy flag);
4. checks: :func:`valuedyn.fitting.check_fit` on fits that have none stored yet;
5. compare: :func:`valuedyn.fitting.compare_fits` per behaviour (two or more models);
6. figures and report: every figure is rendered in memory first, then figures, tables,
   ``report.md`` and ``report.json`` are written atomically.

Nothing here trains or samples itself; fitting is valuedyn.fitting's job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from valuedyn._config import config_to_dict, config_to_json
from valuedyn._errors import ValuedynError
from valuedyn._io import file_sha256, provenance, write_text_atomic

#: The developmental motif that started the project: always fitted when present.
PLANT_MOTIF = ("event:place_plant", "unlock:place_plant")



def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **kwargs)


# ---------------------------------------------------------------- inputs


def default_trajectories() -> list[Path]:
    """The trajectory files shipped in the package's data folder (``data/*.nc``)."""
    import valuedyn.data

    return sorted(Path(valuedyn.data.__file__).parent.glob("*.nc"))


def resolve_trajectories(paths: Sequence[str]) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    found = default_trajectories()
    if not found:
        import valuedyn.data

        raise ValuedynError(
            f"no trajectory given and none shipped in {Path(valuedyn.data.__file__).parent}; "
            "pass TRAJECTORY files, or run `valuedyn train` first"
        )
    return found


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


def applicable_models(behaviour: str, requested: Sequence[str]) -> list[str]:
    """Models whose ``applies_to`` holds the behaviour's kind (``requested`` narrows them)."""
    from valuedyn.models import get_model, list_models

    kind = behaviour.partition(":")[0]
    names = list(requested) if requested else list(list_models())
    return [name for name in names if kind in get_model(name).applies_to]


# ---------------------------------------------------------------- fit cache


def fit_settings(config) -> dict:
    """FitConfig fields the report sets (besides trajectory, behaviour, model and out)."""
    return {
        "chains": config.chains,
        "draws": config.draws,
        "warmup": config.warmup,
        "seeds": tuple(config.seeds),
        "rng_seed": config.rng_seed,
        "max_tree_depth": config.max_tree_depth,
    }


def make_fit_config(trajectory: Path, behaviour: str, model: str, out: Path, settings: dict):
    """A :class:`valuedyn.fitting.FitConfig` for one fit; the report's settings are
    mapped onto the fields FitConfig has (names checked, never guessed silently)."""
    from valuedyn.fitting import FitConfig

    fields = {f.name for f in dataclasses.fields(FitConfig)}
    values = {"trajectory": str(trajectory), "behavior": behaviour, "model": model, "out": str(out)}
    aliases = {
        "chains": ("chains", "num_chains"),
        "draws": ("draws", "num_samples", "samples"),
        "warmup": ("warmup", "num_warmup", "tune"),
        "seeds": ("seeds",),
        "rng_seed": ("rng_seed", "seed", "random_seed"),
        "max_tree_depth": ("max_tree_depth",),
    }
    for key, value in settings.items():
        target = next((name for name in aliases[key] if name in fields), None)
        if target is None:
            raise RuntimeError(f"FitConfig has no field for the report's {key!r}; fields: {sorted(fields)}")
        values[target] = value
    if "force" in fields:
        values["force"] = True  # a stale file under a cache name is replaced, never trusted
    if "progress" in fields:
        values["progress"] = True  # NUTS bars on stderr: a fit is the long step
    unknown = set(values) - fields
    if unknown:
        raise RuntimeError(f"FitConfig lacks fields {sorted(unknown)}")
    return FitConfig(**values)


def cache_key(trajectory_sha256: str, fit_config) -> str:
    """Hash of what determines a fit: the trajectory's bytes and the FitConfig (minus paths)."""
    stored = config_to_dict(fit_config)
    for volatile in ("out", "trajectory", "force", "progress"):
        stored.pop(volatile, None)
    text = json.dumps({"trajectory_sha256": trajectory_sha256, "fit_config": stored}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


class FitCache:
    """``DIR/fits/``: fit files named by their key, and ``index.json`` listing them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index_path = folder / "index.json"
        self.index: dict[str, dict] = {}
        if self.index_path.exists():
            try:
                self.index = json.loads(self.index_path.read_text())
            except (json.JSONDecodeError, OSError):
                log(f"fit cache index {self.index_path} is unreadable; fits will be redone")
                self.index = {}

    def path_for(self, key: str, trajectory: Path, behaviour: str, model: str) -> Path:
        return self.folder / f"{_slug(trajectory.stem)}__{_slug(behaviour)}__{_slug(model)}__{key[:12]}.nc"

    def lookup(self, key: str, trajectory_sha256: str) -> Path | None:
        """The cached fit for ``key`` if its file still loads and names the same data."""
        from valuedyn.fitting import load_fit

        entry = self.index.get(key)
        if entry is None:
            return None
        path = self.folder / entry["file"]
        if not path.exists():
            return None
        try:
            idata = load_fit(path)
        except ValuedynError:
            return None
        from valuedyn.papers._figures import fit_attr

        if str(fit_attr(idata, "trajectory_sha256", "")) != trajectory_sha256:
            return None
        return path

    def record(self, key: str, path: Path, **info) -> None:
        self.index[key] = {"file": path.name, **info}
        write_text_atomic(self.index_path, json.dumps(self.index, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- reading fit results


def fit_diagnostics(idata) -> dict:
    """The diagnostics JSON the fitting step stored, with the trustworthy flag."""
    from valuedyn.papers._figures import fit_attr

    try:
        diagnostics = json.loads(fit_attr(idata, "diagnostics", "{}"))
    except (TypeError, json.JSONDecodeError):
        diagnostics = {}
    trust = fit_attr(idata, "trustworthy", diagnostics.get("trustworthy", 0))
    diagnostics["trustworthy"] = bool(int(trust))
    diagnostics.setdefault("reasons", [])
    return diagnostics


def stored_checks(idata) -> dict | None:
    from valuedyn.papers._figures import fit_attr

    text = fit_attr(idata, "checks", "")
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return None


def check_failures(checks: dict | None) -> list[str]:
    """Where a fit fails its posterior predictive checks, in words: the flags that
    :func:`valuedyn.fitting.check_fit` recorded (Bayesian p-values of the development
    statistics outside [0.05, 0.95], 50% / 90% interval coverage outside [0.4, 0.6] /
    [0.85, 0.95], a non-uniform LOO-PIT)."""
    if not checks:
        return ["no checks stored"]
    return [str(flag) for flag in checks.get("flags", [])]


def compare_table(paths: Sequence[Path], *, lfo: bool = False):
    """:func:`valuedyn.fitting.compare_fits` as ``(table, warnings)``: a DataFrame indexed
    by model, best first, with columns ``elpd_loo``, ``se``, ``d_elpd``, ``dse``, ``weight``
    (stacking) and whatever else the fitting side returns (``pareto_k_bad``, ``elpd_lfo``,
    ...); warnings name unreliable PSIS-LOO and untrustworthy fits."""
    from valuedyn.fitting import compare_fits

    # lfo=True refits every model on the early updates (NUTS): only when asked for
    result = compare_fits([Path(p) for p in paths], lfo=lfo, progress=lfo)
    return normalise_table(getattr(result, "table", result)), list(getattr(result, "warnings", []))


def normalise_table(table):
    """A comparison table as a DataFrame indexed by model, best (highest elpd_loo) first."""
    import pandas as pd

    if isinstance(table, dict):
        table = pd.DataFrame(table)
    if not isinstance(table, pd.DataFrame):
        table = table.to_dataframe() if hasattr(table, "to_dataframe") else pd.DataFrame(table)
    table = table.copy()
    if "model" in table.columns:
        table = table.set_index("model")
    table.index = [str(i) for i in table.index]
    table = table.rename(columns={"elpd_diff": "d_elpd", "elpd": "elpd_loo"})
    for column in ("elpd_loo", "se", "d_elpd", "dse", "weight"):
        if column not in table.columns:
            raise RuntimeError(f"compare_fits result lacks {column!r}; columns: {list(table.columns)}")
    return table.sort_values("elpd_loo", ascending=False)


def verdict(table) -> dict:
    """Winner of a comparison and how clearly: the ELPD difference of the runner-up and
    its SE; "clearly" when d_elpd > 2 * dse."""
    if table is None or len(table) == 0:
        return {"winner": None, "runner_up": None, "d_elpd": None, "dse": None, "clearly": None, "weights": {}}
    winner = str(table.index[0])
    weights = {str(m): float(w) for m, w in zip(table.index, table["weight"])}
    if len(table) < 2:
        return {"winner": winner, "runner_up": None, "d_elpd": None, "dse": None, "clearly": None, "weights": weights}
    runner = table.iloc[1]
    d_elpd = abs(float(runner["d_elpd"]))
    dse = float(runner["dse"])
    return {
        "winner": winner,
        "runner_up": str(table.index[1]),
        "d_elpd": d_elpd,
        "dse": dse,
        "clearly": bool(d_elpd > 2 * dse),
        "weights": weights,
    }


# ---------------------------------------------------------------- the report


@dataclasses.dataclass
class Task:
    """One behaviour of one trajectory and the models to fit to it."""

    trajectory: Path
    sha256: str
    behaviour: str
    models: list[str]
    seeds: tuple[int, ...]
    fits: dict[str, Path] = dataclasses.field(default_factory=dict)
    cached: dict[str, bool] = dataclasses.field(default_factory=dict)
    diagnostics: dict[str, dict] = dataclasses.field(default_factory=dict)
    failures: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    keys: dict[str, str] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    left_out: list[str] = dataclasses.field(default_factory=list)  # models not fitted for time
    table: object = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def fitted(self) -> list[str]:
        """Models with a fit file (a fit that raised is listed in ``errors`` instead)."""
        return [m for m in self.models if m in self.fits]
    verdict: dict = dataclasses.field(default_factory=dict)


def _check_config(config) -> None:
    for name in ("chains", "draws", "warmup", "max_behaviours"):
        if getattr(config, name) < 1:
            raise ValuedynError(f"--{name.replace('_', '-')} must be >= 1; received {getattr(config, name)}")
    for name in ("max_seeds", "time_budget"):
        if getattr(config, name) < 0:
            raise ValuedynError(f"--{name.replace('_', '-')} must be >= 0 (0 = all); received {getattr(config, name)}")
    if not 0.0 < config.learned_threshold < 1.0:
        raise ValuedynError(f"--learned-threshold must lie in (0, 1); received {config.learned_threshold}")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValuedynError(f"--out {out} is a file; pass a folder for the report")


def plan_report(config) -> tuple[list[Task], dict[Path, object], list[str]]:
    """Step 1: open and validate every input; decide behaviours, models and seeds.

    Returns the tasks, the loaded trajectories and notes for the report (skipped
    behaviours and why). Raises ValuedynError before anything is fitted or written.
    """
    from valuedyn.data import open_trajectory
    from valuedyn.fitting._select import select_behavior
    from valuedyn.models import get_model

    for name in config.models:
        get_model(name)  # unknown name -> ValuedynError listing the known ones
    tasks: list[Task] = []
    loaded: dict[Path, object] = {}
    notes: list[str] = []
    for path in resolve_trajectories(config.trajectories):
        ds = open_trajectory(path)  # missing / corrupt / off-contract -> ValuedynError
        loaded[path] = ds
        sha = file_sha256(path)
        seed_labels = [int(s) for s in ds["seed"].values]
        if config.seeds:
            seeds = tuple(config.seeds)
        elif config.max_seeds and len(seed_labels) > config.max_seeds:
            seeds = tuple(seed_labels[: config.max_seeds])
        else:
            seeds = ()
        behaviours = list(config.behaviours) or default_behaviours(ds, config.learned_threshold)
        if len(behaviours) > config.max_behaviours:
            notes.append(
                f"{path.name}: {len(behaviours) - config.max_behaviours} further behaviours left out by "
                f"--max-behaviours {config.max_behaviours}: {', '.join(behaviours[config.max_behaviours:])}"
            )
            behaviours = behaviours[: config.max_behaviours]
        for behaviour in behaviours:
            select_behavior(ds, behaviour, seeds=seeds or None)  # bad name / empty data -> ValuedynError
            models = applicable_models(behaviour, config.models)
            if not models:
                notes.append(f"{path.name}: {behaviour}: no requested model applies to its kind; skipped")
                continue
            tasks.append(Task(trajectory=path, sha256=sha, behaviour=behaviour, models=models, seeds=seeds))
    if not tasks:
        raise ValuedynError(
            "nothing to fit: no behaviour with an applicable model "
            f"(behaviours {list(config.behaviours) or 'default'}, models {list(config.models) or 'all'}); "
            "pass --behaviours KIND:NAME or other --models"
        )
    return tasks, loaded, notes


def _run_fit_jobs(jobs: list, deadline: float | None, queue, in_worker: bool) -> None:
    """Run fits one after another (one model's fits share its compiled sampler); report
    each on ``queue`` as (job id, status, payload, seconds). Status: "done" (payload the
    written path), "failed" (a crash inside the fit), "user" (a ValuedynError: the user
    can fix it), "skipped" (it would end past ``deadline``, a ``time.time()`` value)."""
    if in_worker:
        from valuedyn.fitting._cli import prepare_jax

        prepare_jax(jobs[0][1].chains)
    from valuedyn.fitting import fit_trajectory

    durations: list[float] = []
    for job_id, fit_config in jobs:
        if deadline is not None and durations and time.time() + float(np.mean(durations)) > deadline:
            queue.put((job_id, "skipped", None, 0.0))
            continue
        if in_worker:  # one progress bar (the report's) instead of several interleaved NUTS bars
            fit_config = dataclasses.replace(fit_config, progress=False)
        mark = time.perf_counter()
        try:
            written = str(fit_trajectory(fit_config))
            status, payload = "done", written
        except ValuedynError as err:
            status, payload = "user", str(err)
        except Exception as err:  # a crash inside one fit must not lose the others; the report names it
            status, payload = "failed", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        seconds = time.perf_counter() - mark
        durations.append(seconds)
        queue.put((job_id, status, payload, seconds))
        if status == "user":
            return


def _fit_groups(jobs: list) -> list[list]:
    """Jobs grouped by model (a group reuses one compiled sampler per data shape), the
    groups with ODE models (slow to compile) and the most fits first."""
    from valuedyn.models import get_model

    groups: dict[str, list] = {}
    for job in jobs:
        groups.setdefault(job[1].model, []).append(job)

    def cost(item):
        name, members = item
        try:
            ode = not get_model(name).closed_form
        except Exception:
            ode = False
        return (not ode, -len(members), name)

    return [members for _, members in sorted(groups.items(), key=cost)]


def fit_workers(config, n_groups: int) -> int:
    import os

    if config.workers:
        return max(1, min(config.workers, n_groups))
    return max(1, min(os.cpu_count() or 1, 4, n_groups))


def run_fits(tasks: list[Task], config, cache: FitCache) -> list[Task]:
    """Step 2: fit every (behaviour, model), reusing cached fits.

    Fits run in ``fit_workers`` processes (default: one per core, at most 4), each taking
    all fits of one model at a time, so compilation, which dominates small fits and uses
    one core, runs on every core. With one worker they run in this process.

    With ``config.time_budget`` > 0 (seconds for this step), a fit that would, at the mean
    time of its worker's fits so far, end past the budget is not started (a worker's first
    fit always runs); a behaviour none of whose missing fits ran is returned as skipped,
    one with some missing lists the rest as left out (the report says so; a later run
    with a larger budget reuses every fit made here).
    """
    jobs, where = [], {}
    n_pairs = 0
    for index, task in enumerate(tasks):
        for model in task.models:
            n_pairs += 1
            settings = dict(fit_settings(config), seeds=task.seeds)
            probe = make_fit_config(task.trajectory, task.behaviour, model, Path("unused.nc"), settings)
            key = cache_key(task.sha256, probe)
            hit = cache.lookup(key, task.sha256)
            task.keys[model] = key
            if hit is not None:
                task.fits[model], task.cached[model] = hit, True
                continue
            path = cache.path_for(key, task.trajectory, task.behaviour, model)
            fit_config = make_fit_config(task.trajectory, task.behaviour, model, path, settings)
            where[len(jobs)] = (index, model, key)
            jobs.append((len(jobs), fit_config))
    groups = _fit_groups(jobs) if jobs else []
    workers = fit_workers(config, len(groups))
    log(f"[2/6] fit: {n_pairs} fits, {n_pairs - len(jobs)} cached, {len(jobs)} to run"
        + (f" in {workers} processes" if workers > 1 else "")
        + (f" (time budget {config.time_budget} s)" if config.time_budget else ""))
    deadline = time.time() + config.time_budget if config.time_budget else None
    outcome: dict[int, tuple] = {}
    bar = progress(total=len(jobs), desc="fit", unit="fit")

    def receive(message) -> None:
        job_id, status, payload, seconds = message
        outcome[job_id] = (status, payload, seconds)
        index, model, _ = where[job_id]
        if status == "failed":
            log(f"fit of {model} to {tasks[index].behaviour} failed ({payload}); the report lists it as failed")
        bar.set_postfix_str(f"{model} on {tasks[index].behaviour}")
        bar.update(1)

    try:
        if workers <= 1:
            import queue as queue_module

            local = queue_module.SimpleQueue()
            for group in groups:
                _run_fit_jobs(group, deadline, local, in_worker=False)
                while not local.empty():
                    receive(local.get())
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")  # JAX must not be forked
            with context.Manager() as manager:
                channel = manager.Queue()
                with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                    futures = [pool.submit(_run_fit_jobs, group, deadline, channel, True) for group in groups]
                    while len(outcome) < len(jobs):
                        if all(f.done() for f in futures) and channel.empty():
                            for f in futures:
                                f.result()  # a worker that died says why here
                            break
                        try:
                            receive(channel.get(timeout=0.5))
                        except Exception:  # queue.Empty through the manager proxy
                            pass
    finally:
        bar.close()

    user_errors = [payload for status, payload, _ in outcome.values() if status == "user"]
    if user_errors:
        raise ValuedynError(user_errors[0])
    skipped_jobs: dict[int, list[str]] = {}
    for job_id, (index, model, key) in where.items():
        status, payload, _ = outcome.get(job_id, ("skipped", None, 0.0))
        task = tasks[index]
        if status == "done":
            written = Path(payload)
            cache.record(key, written, trajectory=str(task.trajectory), behaviour=task.behaviour, model=model)
            task.fits[model], task.cached[model] = written, False
        elif status == "failed":
            task.errors[model] = payload
        else:
            skipped_jobs.setdefault(index, []).append(model)
    skipped = []
    for index, models in skipped_jobs.items():
        task = tasks[index]
        if not task.fits and not task.errors:
            skipped.append(task)
        else:
            task.left_out = [m for m in task.models if m in models]
    return skipped


def run_checks(tasks: list[Task]) -> None:
    """Steps 3-4: read diagnostics; run posterior predictive checks where none are stored."""
    from valuedyn.fitting import check_fit, load_fit

    pairs = [(task, model) for task in tasks for model in task.fitted]
    log(f"[3/6] diagnostics and [4/6] checks: {len(pairs)} fits")
    for task, model in progress(pairs, desc="checks", unit="fit"):
        path = task.fits[model]
        idata = load_fit(path)
        checks = stored_checks(idata)
        if checks is None:
            check_fit(path)  # stores the checks in the fit file
            idata = load_fit(path)
            checks = stored_checks(idata)
        task.diagnostics[model] = fit_diagnostics(idata)
        task.failures[model] = check_failures(checks)


def run_comparisons(tasks: list[Task], cache: FitCache, lfo: bool) -> None:
    """Step 5: compare the models of each behaviour (PSIS-LOO, stacking; LFO if asked).

    A comparison is cached beside the fits, keyed by the fits' cache keys and file
    times (a redone fit invalidates it) and the LFO switch.
    """
    import io

    import pandas as pd

    log(f"[5/6] compare: {sum(len(t.fitted) > 1 for t in tasks)} behaviours with two or more models")
    for task in progress(tasks, desc="compare", unit="behaviour"):
        if len(task.fitted) > 1:
            identity = [(m, task.keys[m], task.fits[m].stat().st_mtime_ns) for m in task.fitted]
            key = hashlib.sha256(json.dumps({"fits": identity, "lfo": lfo}).encode()).hexdigest()
            stored = cache.folder / f"compare__{_slug(task.trajectory.stem)}__{_slug(task.behaviour)}__{key[:12]}.json"
            if stored.exists():
                saved = json.loads(stored.read_text())
                task.table = normalise_table(pd.read_json(io.StringIO(saved["table"]), orient="split"))
                task.warnings = saved["warnings"]
            else:
                task.table, task.warnings = compare_table([task.fits[m] for m in task.fitted], lfo=lfo)
                write_text_atomic(stored, json.dumps({"table": task.table.to_json(orient="split"),
                                                      "warnings": task.warnings}))
        only = task.fitted[0] if task.fitted else None
        task.verdict = verdict(task.table) if task.table is not None else {
            "winner": only, "runner_up": None, "d_elpd": None, "dse": None, "clearly": None,
            "weights": {only: 1.0} if only else {},
        }


def figure_plan(tasks: list[Task], loaded: dict[Path, object]):
    """Step 6 (plan): the figures of the report, per trajectory."""
    from valuedyn.papers._paper import FigureInputs, FigureSpec

    plans = []
    for path, ds in loaded.items():
        mine = [t for t in tasks if t.trajectory == path and t.fitted]
        if not mine:
            continue
        stem = _slug(path.stem)
        from valuedyn.fitting import load_fit

        inputs = FigureInputs(
            trajectory=ds,
            fit_paths={t.behaviour: dict(t.fits) for t in mine},
            fits={t.behaviour: {m: load_fit(p) for m, p in t.fits.items()} for t in mine},
            comparisons={t.behaviour: t.table for t in mine},
        )
        specs = [FigureSpec(f"{stem}_fig1_{_slug(t.behaviour)}", "trajectories", {"behaviour": t.behaviour}) for t in mine]
        compared = [t.behaviour for t in mine if t.table is not None]
        if compared:
            specs.append(FigureSpec(f"{stem}_fig2_comparison", "comparison", {"behaviours": compared}))
        specs.append(FigureSpec(f"{stem}_fig3_timescales", "timescales", {"behaviours": [t.behaviour for t in mine]}))
        placements = [str(p) for p in ds["placement"].values] if "placement" in ds.coords else []
        if any(p in ("place_plant", "plant") for p in placements):
            specs.append(FigureSpec(f"{stem}_fig4_plant_histogram", "placement_histogram", {"placement": "plant"}))
        specs += [FigureSpec(f"{stem}_fig6_analysis_{_slug(t.behaviour)}", "analysis",
                             {"behaviour": t.behaviour, "model": t.verdict["winner"]}) for t in mine]
        plans.append((path, specs, inputs))
    return plans


FIGURE_CAPTIONS = {
    "trajectories": "Data per seed (dots) with each model's posterior median mean (line) and 90% posterior predictive band.",
    "comparison": "ELPD difference to the best model (PSIS-LOO, ± 2 SE) and stacking weights.",
    "timescales": "Posterior onset times and relaxation timescales of the winning models (median, 50% and 90% intervals), behaviours in order of learning.",
    "placement_histogram": "Plants placed per episode over training: share of finished episodes per count (pooled over seeds), and the mean.",
    "analysis": "Winning model at its posterior median: states over training with fixed points and timescales, and its phase plane or phase line.",
}


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(tasks: list[Task], figures: dict[Path, list], notes: list[str], report: dict) -> str:
    """report.md: summary table, per-behaviour sections with figures and tables, flags."""
    lines = ["# valuedyn report", ""]
    prov = report["provenance"]
    lines += [
        f"valuedyn {prov.get('valuedyn_version')} (commit {prov.get('git_commit')}), created {prov.get('created')}, "
        f"device {prov.get('device')}. Fit settings: {report['fit_settings_text']}. "
        f"Run time {report['timing_s']['total']:.0f} s ({report['n_fits_run']} fits run, {report['n_fits_cached']} reused from the cache).",
        "",
        "## Data",
        "",
        "| trajectory | sha256 | seeds fitted | updates | env steps per seed |",
        "|---|---|---|---|---|",
    ]
    for t in report["trajectories"]:
        lines.append(f"| `{t['path']}` | `{t['sha256'][:12]}` | {t['seeds_fitted']} | {t['n_updates']} | {t['env_steps']:.3g} |")
    lines += ["", f"Behaviours: {report['behaviour_rule']}", ""]
    lines += [f"- {n}" for n in notes]
    lines += [
        "",
        "## Which model wins",
        "",
        "Winner = best expected log predictive density (PSIS-LOO). *Clearly* when the runner-up's "
        "ELPD difference exceeds twice its standard error (d_elpd > 2 dse), otherwise *not clearly*. "
        "Weights are stacking weights.",
        "",
        "| trajectory | behaviour | winner | how clearly | d_elpd ± dse (vs runner-up) | stacking weights | untrustworthy fits | failed checks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        v = task.verdict
        how = "only model" if v["clearly"] is None else ("clearly" if v["clearly"] else "not clearly")
        diff = "-" if v["d_elpd"] is None else f"{v['d_elpd']:.1f} ± {v['dse']:.1f} ({v['runner_up']})"
        weights = ", ".join(f"{m} {w:.2f}" for m, w in v["weights"].items())
        bad = [m for m in task.fitted if not task.diagnostics[m]["trustworthy"]]
        bad += [f"{m} (fit failed)" for m in task.errors]
        failing = [f"{m} ({len(task.failures[m])})" for m in task.fitted if task.failures[m]]
        lines.append(
            f"| {task.trajectory.name} | {task.behaviour} | **{v['winner']}** | {how} | {diff} | {weights} | "
            f"{', '.join(bad) or 'none'} | {', '.join(failing) or 'none'} |"
        )
    for path, rendered_specs in figures.items():
        lines += ["", f"## {path.name}", ""]
        for task in [t for t in tasks if t.trajectory == path]:
            lines += [f"### {task.behaviour}", ""]
            v = task.verdict
            if v["winner"] is None:
                lines.append("No fit of this behaviour succeeded; nothing to compare.")
            elif v["clearly"] is None:
                lines.append(f"Only {v['winner']} was fitted to this behaviour; nothing to compare.")
            else:
                lines.append(
                    f"**{v['winner']}** wins {'clearly' if v['clearly'] else 'not clearly'} over {v['runner_up']}: "
                    f"d_elpd = {v['d_elpd']:.1f} ± {v['dse']:.1f}; stacking weight of {v['winner']} "
                    f"{v['weights'].get(v['winner'], 0):.2f}."
                )
            if v["winner"] is not None and not task.diagnostics[v["winner"]]["trustworthy"]:
                lines[-1] += " Caution: the winning fit is untrustworthy (see below); do not rely on this ranking."
            lines += ["", "| model | elpd_loo | se | d_elpd | dse | weight | trustworthy | diagnostics | fails checks at |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for model, error in task.errors.items():
                lines.append(f"| {model} | - | - | - | - | - | **fit failed**: {error} | - | - |")
            for model in task.fitted:
                row = task.table.loc[model] if task.table is not None else None
                d = task.diagnostics[model]
                diag = ", ".join(f"{k} {_fmt(d.get(k), 3)}" for k in ("rhat_max", "ess_bulk_min", "divergences") if k in d)
                trust = "yes" if d["trustworthy"] else "**no**: " + "; ".join(map(str, d.get("reasons", []))) or "no"
                lines.append(
                    f"| {model} | {_fmt(None if row is None else float(row['elpd_loo']))} | {_fmt(None if row is None else float(row['se']))} | "
                    f"{_fmt(None if row is None else float(row['d_elpd']))} | {_fmt(None if row is None else float(row['dse']))} | "
                    f"{_fmt(None if row is None else float(row['weight']), 2)} | {trust} | {diag} | "
                    f"{'; '.join(task.failures[model]) or 'passes'} |"
                )
            lines.append("")
            lines += [f"- warning: {w}" for w in task.warnings] + ([""] if task.warnings else [])
            for spec in rendered_specs:
                if spec.options.get("behaviour") == task.behaviour:
                    lines += [f"![{spec.name}](figures/{spec.name}.png)", "", f"*{FIGURE_CAPTIONS[spec.kind]}* "
                              f"([PDF](figures/{spec.name}.pdf))", ""]
        lines += ["### Across behaviours", ""]
        for spec in rendered_specs:
            if "behaviour" not in spec.options:
                lines += [f"![{spec.name}](figures/{spec.name}.png)", "", f"*{FIGURE_CAPTIONS[spec.kind]}* "
                          f"([PDF](figures/{spec.name}.pdf))", ""]
    untrustworthy = [(t, m) for t in tasks for m in t.fitted if not t.diagnostics[m]["trustworthy"]]
    failed = [(t, m, e) for t in tasks for m, e in t.errors.items()]
    lines += ["## Untrustworthy fits", ""]
    if untrustworthy:
        lines.append("Do not read these fits' posteriors or comparisons at face value:")
        lines += [f"- {t.trajectory.name} {t.behaviour} {m}: {'; '.join(map(str, t.diagnostics[m].get('reasons', []))) or 'flagged by the sampler diagnostics'}"
                  for t, m in untrustworthy]
    else:
        lines.append("None: every fit passed the sampler diagnostics.")
    if failed:
        lines += ["", "These fits raised an error and are missing from the comparison:"]
        lines += [f"- {t.trajectory.name} {t.behaviour} {m}: {e}" for t, m, e in failed]
    lines += ["", "## Files", "", "- `report.json`: this report's config, provenance and every claim above, machine readable",
              "- `tables/`: the tables above as CSV", "- `figures/`: every figure as PNG and PDF",
              "- `fits/`: the fit files (ArviZ InferenceData netCDF) and `index.json`, the fit cache", ""]
    return "\n".join(lines)


BEHAVIOUR_RULE = (
    "the plant motif (event:place_plant, unlock:place_plant) plus every achievement learned within the run: "
    "pooled over seeds, its unlock rate over the first tenth of the updates is below {threshold} and over the "
    "last tenth at or above it; in the order they are learned (the env step at which the pooled rate, "
    "smoothed over a tenth of the run, first reaches {threshold}); at most {max_behaviours} per trajectory."
)


def run_report(config) -> dict:
    """Run every step and write the report; returns the report.json content."""
    import pandas as pd

    _check_config(config)
    from valuedyn.fitting._cli import prepare_jax

    prepare_jax(config.chains)  # one CPU device per core for the chains, if JAX is not yet running
    timing: dict[str, float] = {}
    started = time.perf_counter()
    out = Path(config.out)

    log("[1/6] inputs: reading trajectories and choosing behaviours and models")
    tasks, loaded, notes = plan_report(config)
    for task in tasks:
        log(f"  {task.trajectory.name}: {task.behaviour}: models {', '.join(task.models)}")
    timing["inputs"] = time.perf_counter() - started

    mark = time.perf_counter()
    cache = FitCache(Path(config.fits_dir) if config.fits_dir else out / "fits")
    skipped = run_fits(tasks, config, cache)
    if skipped:
        notes.append(
            f"left out for time (--time-budget {config.time_budget} s; rerun with a larger budget or 0, fits made "
            f"so far are reused): {', '.join(f'{t.trajectory.name} {t.behaviour}' for t in skipped)}"
        )
        log(notes[-1])
        tasks = [t for t in tasks if t not in skipped]
    for task in tasks:
        if task.left_out:
            notes.append(f"{task.trajectory.name} {task.behaviour}: models {', '.join(task.left_out)} left out for time "
                         f"(--time-budget {config.time_budget} s); rerun to add them, fits made so far are reused")
            log(notes[-1])
    timing["fit"] = time.perf_counter() - mark

    mark = time.perf_counter()
    run_checks(tasks)
    timing["checks"] = time.perf_counter() - mark

    mark = time.perf_counter()
    run_comparisons(tasks, cache, config.lfo)
    timing["compare"] = time.perf_counter() - mark

    mark = time.perf_counter()
    log("[6/6] figures and report")
    from valuedyn.papers._paper import render_figures, write_figures

    rendered: dict[str, dict[str, bytes]] = {}
    figures: dict[Path, list] = {}
    for path, specs, inputs in figure_plan(tasks, loaded):
        rendered.update(render_figures(specs, inputs, progress=progress))
        figures[path] = specs

    tables: dict[str, str] = {}
    summary_rows, model_rows = [], []
    for task in tasks:
        v = task.verdict
        summary_rows.append({
            "trajectory": task.trajectory.name, "behaviour": task.behaviour, "winner": v["winner"],
            "runner_up": v["runner_up"], "d_elpd": v["d_elpd"], "dse": v["dse"], "clearly": v["clearly"],
            "winner_weight": v["weights"].get(v["winner"]), "n_models": len(task.fitted),
            "untrustworthy": ";".join(m for m in task.fitted if not task.diagnostics[m]["trustworthy"]),
            "failed_fits": ";".join(task.errors),
        })
        for model in task.fitted:
            row = task.table.loc[model] if task.table is not None else None
            d = task.diagnostics[model]
            model_rows.append({
                "trajectory": task.trajectory.name, "behaviour": task.behaviour, "model": model,
                "fit_file": str(task.fits[model].relative_to(out) if task.fits[model].is_relative_to(out) else task.fits[model]),
                "cached": task.cached[model],
                **{k: (None if row is None else float(row[k])) for k in ("elpd_loo", "se", "d_elpd", "dse", "weight")},
                "trustworthy": d["trustworthy"], "reasons": "; ".join(map(str, d.get("reasons", []))),
                **{k: d.get(k) for k in ("rhat_max", "ess_bulk_min", "ess_tail_min", "divergences")},
                "check_failures": "; ".join(task.failures[model]),
            })
    tables["tables/summary.csv"] = pd.DataFrame(summary_rows).to_csv(index=False)
    tables["tables/models.csv"] = pd.DataFrame(model_rows).to_csv(index=False)

    trajectories = []
    for path, ds in loaded.items():
        mine = [t for t in tasks if t.trajectory == path]
        seeds = mine[0].seeds if mine else ()
        trajectories.append({
            "path": str(path), "sha256": file_sha256(path), "n_seeds": int(ds.sizes["seed"]),
            "seeds_fitted": list(seeds) if seeds else [int(s) for s in ds["seed"].values],
            "n_updates": int(ds.sizes["update"]), "env_steps": float(ds["env_step"].values[-1]),
        })
    settings = fit_settings(config)
    timing["figures"] = time.perf_counter() - mark
    timing["total"] = time.perf_counter() - started
    n_run = sum(not c for t in tasks for c in t.cached.values())
    n_failed = sum(len(t.errors) for t in tasks)
    report = {
        "config": config_to_dict(config),
        "config_json": config_to_json(config),
        "provenance": provenance(),
        "fit_settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "fit_settings_text": f"{config.chains} chains x {config.draws} draws after {config.warmup} warmup",
        "behaviour_rule": BEHAVIOUR_RULE.format(threshold=config.learned_threshold, max_behaviours=config.max_behaviours),
        "notes": notes,
        "trajectories": trajectories,
        "results": [
            {
                "trajectory": str(task.trajectory), "behaviour": task.behaviour, **task.verdict,
                "comparison_warnings": task.warnings,
                "fits": {
                    m: {
                        "file": str(task.fits[m]), "cached": task.cached[m],
                        "trustworthy": task.diagnostics[m]["trustworthy"], "diagnostics": task.diagnostics[m],
                        "check_failures": task.failures[m],
                    }
                    for m in task.fitted
                },
                "failed_fits": task.errors,
            }
            for task in tasks
        ],
        "figures": sorted(f"figures/{name}.{fmt}" for name, r in rendered.items() for fmt in r),
        "tables": sorted(tables),
        "n_fits_run": n_run,
        "n_fits_cached": sum(len(t.fitted) for t in tasks) - n_run,
        "n_fits_failed": n_failed,
        "timing_s": timing,
    }
    markdown = render_markdown(tasks, figures, notes, report)
    # everything is rendered: now write (each file atomically)
    write_figures(rendered, out / "figures")
    for name, text in tables.items():
        write_text_atomic(out / name, text)
    write_text_atomic(out / "report.md", markdown)
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    log(f"report written to {out / 'report.md'} in {timing['total']:.0f} s")
    return report
