"""Report step 1, inputs: which trajectories, behaviours, models and seeds the report fits.

The plan itself (validation, default behaviours, applicable models) is
:func:`valuedyn.fitting.plan_fits`; here only the report's defaults are added (the runs
shipped in ``data/``) and its options checked, all before any work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from valuedyn._errors import ValuedynError

BEHAVIOUR_RULE = (
    "the plant motif (event:place_plant, unlock:place_plant) plus every achievement learned within the run: "
    "pooled over seeds, its unlock rate over the first tenth of the updates is below {threshold} and over the "
    "last tenth at or above it; in the order they are learned (the env step at which the pooled rate, "
    "smoothed over a tenth of the run, first reaches {threshold}); at most {max_behaviours} per trajectory; "
    "and the diversity of actions and of events (Hill-1) of every trajectory."
)


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


def fit_settings(config):
    """The report's fit settings as the fitting room's :class:`~valuedyn.fitting.FitSettings`."""
    from valuedyn.fitting import FitSettings

    return FitSettings.from_config(config)


def check_options(config) -> None:
    """Refuse every bad option before any input is read or work done (one line each)."""
    if config.max_behaviours < 1:
        raise ValuedynError(f"--max-behaviours must be >= 1; received {config.max_behaviours}")
    for name in ("max_seeds", "time_budget", "workers"):
        if getattr(config, name) < 0:
            raise ValuedynError(f"--{name.replace('_', '-')} must be >= 0 (0 = the default); received {getattr(config, name)}")
    if not 0.0 < config.learned_threshold < 1.0:
        raise ValuedynError(f"--learned-threshold must lie in (0, 1); received {config.learned_threshold}")
    fit_settings(config).validate()  # chains, draws, warmup >= 1; max tree depth 1..15
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValuedynError(f"--out {out} is a file; pass a folder for the report")
    if config.fits_dir and Path(config.fits_dir).exists() and not Path(config.fits_dir).is_dir():
        raise ValuedynError(f"--fits-dir {config.fits_dir} is a file; pass a folder for the fit cache")


def plan_report(config):
    """Open and validate every input; returns ``(jobs, loaded trajectories, notes)``.

    Raises :class:`ValuedynError` before anything is fitted or written.
    """
    from valuedyn.data import open_trajectory
    from valuedyn.fitting import plan_fits

    jobs, loaded, notes = [], {}, []
    for path in resolve_trajectories(config.trajectories):
        ds = open_trajectory(path)  # missing / corrupt / off-contract -> ValuedynError
        loaded[path] = ds
        mine, more_notes = plan_fits(
            path, config.behaviours, config.models, seeds=config.seeds, max_seeds=config.max_seeds,
            settings=fit_settings(config), learned_threshold=config.learned_threshold,
            max_behaviours=config.max_behaviours, diversity=config.diversity,
            ode_models=config.ode_models, dataset=ds,
        )
        jobs += mine
        notes += more_notes
    if not jobs:
        raise ValuedynError(
            "nothing to fit: no behaviour with an applicable model "
            f"(behaviours {list(config.behaviours) or 'default'}, models {list(config.models) or 'all'}); "
            "pass --behaviours KIND:NAME or other --models"
        )
    return jobs, loaded, notes
