"""``valuedyn fit-batch``: run a plan of fits (trajectories x behaviours x models) without
the report, locally or on a Dask distributed cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from valuedyn._errors import ValuedynError
from valuedyn.fitting.pipeline._jax_setup import prepare_jax
from valuedyn.fitting.settings import FitBatchConfig, FitSettings


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

    validate_options(config)
    fits_dir = Path(config.fits_dir)
    if fits_dir.exists() and not fits_dir.is_dir():
        raise ValuedynError(f"--fits-dir {fits_dir} is a file; pass a folder")
    prepare_jax(config.chains)
    from valuedyn.fitting.pipeline._batch import log, run_plan
    from valuedyn.fitting.pipeline._plan import plan_fits

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
                      time_budget=config.time_budget, lfo=config.lfo, choose_observations=config.choose_observation,
                      refit_remedy=config.refit_remedy,
                      choose_deviations=config.choose_deviation)
    write_text_atomic(fits_dir / "batch.json", json.dumps(result.to_dict(), indent=1) + "\n")
    for outcome in result.outcomes:
        print(f"{outcome.status:8s} {outcome.job.trajectory.name} {outcome.job.behaviour} {outcome.job.model}: "
              f"{outcome.path or outcome.error or ''}")
    print(f"{len(result.failed)} of {len(result.outcomes)} fits failed; summary in {fits_dir / 'batch.json'}",
          file=sys.stderr)
    return 1 if result.failed else 0


__all__ = ["FitBatchConfig", "run_fit_batch", "validate_options"]
