"""``valuedyn fit-batch``: run a plan of fits (trajectories x behaviours x models) without
the report, locally or on a Dask distributed cluster."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from valuedyn._config import option
from valuedyn._errors import ValuedynError
from valuedyn.fitting._plan import FitSettings

_SETTINGS = FitSettings()  # the plan's defaults


@dataclasses.dataclass(frozen=True)
class FitBatchConfig:
    """Fit every (trajectory, behaviour, model) of a plan, check each fit and compare the
    models of each behaviour. Writes into --fits-dir: the fit files, compare__*.json,
    index.json (the fit cache: a fit whose trajectory bytes and settings are unchanged is
    reused) and batch.json (what became of every fit). Defaults match `valuedyn report`,
    so a report pointed at the same --fits-dir reuses these fits.

    Example (on a Dask cluster): valuedyn fit-batch run.nc --fits-dir fits --scheduler tcp://10.0.0.5:8786"""

    trajectories: tuple[str, ...] = option(help="trajectory files (from valuedyn train)", positional=True,
                                           metavar="TRAJECTORY", nargs="+")
    fits_dir: str = option("fits", "folder of the fit files and their index")
    behaviours: tuple[str, ...] = option((), "behaviours KIND:NAME to fit (default: plant motif + learned achievements)")
    models: tuple[str, ...] = option((), "models to fit (default: every registered model that applies)")
    max_behaviours: int = option(4, "at most this many behaviours per trajectory (0 = all)")
    learned_threshold: float = option(0.5, "unlock rate that counts as learned (default behaviours)")
    seeds: tuple[int, ...] = option((), "seed labels to fit (default: the first --max-seeds)")
    max_seeds: int = option(0, "without --seeds, fit the first this many seeds (0 = all)")
    chains: int = option(_SETTINGS.chains, "NUTS chains per fit")
    draws: int = option(_SETTINGS.draws, "NUTS draws per chain")
    warmup: int = option(_SETTINGS.warmup, "NUTS warmup steps per chain")
    rng_seed: int = option(_SETTINGS.rng_seed, "random seed of the fits")
    max_tree_depth: int = option(_SETTINGS.max_tree_depth, "NUTS maximum tree depth of the fits (1..15)")
    ode_max_tree_depth: int = option(_SETTINGS.ode_max_tree_depth, "NUTS maximum tree depth of the models without a closed form (1..15)")
    target_accept: float = option(_SETTINGS.target_accept, "NUTS target acceptance probability of the fits")
    min_draws: int = option(_SETTINGS.min_draws, "draws per chain after which a fit stops sampling once it passes the "
                            "diagnostics gate with a margin (0 = always run --draws; see valuedyn fit --help)")
    saturated_draws: int = option(_SETTINGS.saturated_draws, "draws per chain of a fit whose warmup saturated the tree depth "
                                  "(0 = never cut; see valuedyn fit --help)")
    workers: int = option(0, "local fit processes (0: one per core, at most 4; 1: fit in this process)")
    scheduler: str | None = option(None, "address of a Dask distributed scheduler (tcp://HOST:PORT): run the fits "
                                         "on its workers instead of local processes")
    time_budget: int = option(0, "seconds for the fits: fits that would end past it are not started (0 = no limit)")
    lfo: bool = option(False, "also score leave-future-out (refits every model on the early updates)")
    choose_observation: bool = option(False, "for each unlock / action behaviour, fit its most flexible closed-form model with "
                                             "the binomial and the beta-binomial first and fit every model with the one the "
                                             "data demand (coverage of the 90-percent interval or PSIS-LOO; recorded in the fit "
                                             "files and batch.json). Without it every unlock / action fit uses the "
                                             "beta-binomial (it nests the binomial), event totals the negative binomial (it "
                                             "nests the Poisson), diversity the lognormal")


def validate_options(config) -> None:
    """Refuse a bad option before any input is read or work done (one line each)."""
    for name in ("max_behaviours", "max_seeds", "time_budget", "workers"):
        if getattr(config, name) < 0:
            raise ValuedynError(f"--{name.replace('_', '-')} must be >= 0; received {getattr(config, name)}")
    if not 0.0 < config.learned_threshold < 1.0:
        raise ValuedynError(f"--learned-threshold must lie in (0, 1); received {config.learned_threshold}")
    FitSettings.from_config(config).validate()


def run_fit_batch(config: FitBatchConfig) -> int:
    from valuedyn._io import write_text_atomic
    from valuedyn.fitting._cli import prepare_jax

    validate_options(config)
    fits_dir = Path(config.fits_dir)
    if fits_dir.exists() and not fits_dir.is_dir():
        raise ValuedynError(f"--fits-dir {fits_dir} is a file; pass a folder")
    prepare_jax(config.chains)
    from valuedyn.fitting._batch import log, run_plan
    from valuedyn.fitting._plan import plan_fits

    jobs = []
    for trajectory in config.trajectories:
        mine, notes = plan_fits(
            trajectory, config.behaviours, config.models, seeds=config.seeds, max_seeds=config.max_seeds,
            settings=FitSettings.from_config(config), learned_threshold=config.learned_threshold,
            max_behaviours=config.max_behaviours,
        )
        jobs += mine
        for note in notes:
            log(note)
    result = run_plan(jobs, fits_dir, scheduler=config.scheduler, workers=config.workers,
                      time_budget=config.time_budget, lfo=config.lfo, choose_observations=config.choose_observation)
    write_text_atomic(fits_dir / "batch.json", json.dumps(result.to_dict(), indent=1) + "\n")
    for outcome in result.outcomes:
        print(f"{outcome.status:8s} {outcome.job.trajectory.name} {outcome.job.behaviour} {outcome.job.model}: "
              f"{outcome.path or outcome.error or ''}")
    print(f"{len(result.failed)} of {len(result.outcomes)} fits failed; summary in {fits_dir / 'batch.json'}",
          file=sys.stderr)
    return 1 if result.failed else 0
