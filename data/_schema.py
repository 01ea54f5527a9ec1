"""The trajectory file contract: names every other room relies on, stated once here.

The trainer (``_train.py``: which metrics a run accumulates), the recorder
(``_record.py``: their dtypes in the file), the validator (:func:`validate_trajectory`)
and the simulator of the fitting tests (``valuedyn.fitting.simulate_trajectory``) all
read :data:`TRAJECTORY_VARIABLES`.

A trajectory file is netCDF4 written with xarray's h5netcdf engine.

Dims: ``seed``, ``update``, ``achievement``, ``event``, ``action``, and for the
per-episode placement histogram ``placement`` and ``count_bin``.
Coord ``env_step[update]``: env steps per seed completed at the end of each update.

Counts, never ratios. An update in which no episode finished has 0 in
``episodes_finished``; nothing is divided by it and no NaN is stored for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from valuedyn._errors import ValuedynError

TRAJECTORY_DIMS = ("seed", "update", "achievement", "event", "action")

#: variable -> (dims, kind). kind "count": non-negative integers; "real": finite floats.
TRAJECTORY_VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "episodes_finished": (("seed", "update"), "count"),
    "achievement_unlocks": (("seed", "update", "achievement"), "count"),
    "event_total": (("seed", "update", "event"), "count"),
    "action_count": (("seed", "update", "action"), "count"),
    "return_sum": (("seed", "update"), "real"),
    "length_sum": (("seed", "update"), "count"),
    "placement_histogram": (("seed", "update", "placement", "count_bin"), "count"),
    "policy_loss": (("seed", "update"), "real"),
    "value_loss": (("seed", "update"), "real"),
    "entropy": (("seed", "update"), "real"),
    "approx_kl": (("seed", "update"), "real"),
    "clip_fraction": (("seed", "update"), "real"),
}

#: variable -> its dims after (seed, update): the shape of one seed's metric per update.
METRIC_TRAILING_DIMS: dict[str, tuple[str, ...]] = {name: dims[2:] for name, (dims, _) in TRAJECTORY_VARIABLES.items()}

#: variables holding counts (stored as integers; never ratios).
COUNT_VARIABLES: frozenset[str] = frozenset(name for name, (_, kind) in TRAJECTORY_VARIABLES.items() if kind == "count")

REQUIRED_ATTRS = (
    "config",
    "valuedyn_version",
    "git_commit",
    "craftax_version",
    "jax_version",
    "device",
    "wall_time_s",
    "steps_per_second",
)


def validate_trajectory(ds, source: str = "trajectory") -> None:
    """Check ``ds`` against the contract; raise :class:`ValuedynError` naming the first breach."""
    for dim in TRAJECTORY_DIMS:
        if dim not in ds.dims:
            raise ValuedynError(f"{source}: dimension {dim!r} is missing; a trajectory needs dims {TRAJECTORY_DIMS}")
    if "env_step" not in ds.coords or ds["env_step"].dims != ("update",):
        raise ValuedynError(f"{source}: coordinate 'env_step' on 'update' is missing")
    for name, (dims, kind) in TRAJECTORY_VARIABLES.items():
        if name not in ds:
            raise ValuedynError(f"{source}: variable {name!r} is missing; is this a valuedyn trajectory file?")
        if tuple(ds[name].dims) != dims:
            raise ValuedynError(f"{source}: variable {name!r} has dims {tuple(ds[name].dims)}, expected {dims}")
        values = np.asarray(ds[name].values)
        if kind == "count":
            if values.dtype.kind not in "iu":
                raise ValuedynError(f"{source}: {name!r} must hold integer counts, found dtype {values.dtype}")
            if values.size and values.min() < 0:
                raise ValuedynError(f"{source}: {name!r} holds negative counts (min {values.min()}); counts are >= 0")
        elif values.size and not np.all(np.isfinite(values)):
            raise ValuedynError(f"{source}: {name!r} holds NaN or infinite values; the run diverged or the file is corrupt")
    episodes = ds["episodes_finished"].values
    unlocks = ds["achievement_unlocks"].values
    if unlocks.size and np.any(unlocks > episodes[..., None]):
        raise ValuedynError(f"{source}: achievement_unlocks exceeds episodes_finished somewhere; counts are inconsistent")
    histogram_total = ds["placement_histogram"].values.sum(axis=-1)
    if histogram_total.size and np.any(histogram_total != episodes[..., None]):
        raise ValuedynError(f"{source}: placement_histogram does not sum to episodes_finished; counts are inconsistent")
    env_step = ds["env_step"].values
    if env_step.size > 1 and np.any(np.diff(env_step) <= 0):
        raise ValuedynError(f"{source}: env_step must increase strictly along 'update'")
    missing = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        raise ValuedynError(f"{source}: attributes {missing} are missing; provenance is required")
    try:
        json.loads(ds.attrs["config"])
    except (TypeError, json.JSONDecodeError):
        raise ValuedynError(f"{source}: attribute 'config' is not valid JSON") from None


def open_trajectory(path: str | Path):
    """Load a trajectory file fully into memory (the file is closed again) and validate it."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise ValuedynError(f"trajectory file {path} does not exist; check the path or run `valuedyn train`")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as err:  # h5py/h5netcdf raise many types for a corrupt file
        raise ValuedynError(f"cannot read {path} as netCDF4 ({type(err).__name__}: {err}); the file is corrupt or not a trajectory") from None
    validate_trajectory(ds, source=str(path))
    return ds
