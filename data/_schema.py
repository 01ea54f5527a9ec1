"""The trajectory file contract: names every other room relies on, stated once here.

The trainer (``_train.py``: which metrics a run accumulates), the recorder
(``_record.py``: their dtypes in the file), the importer (``_import.py``: what another
trainer's logs can fill), the validator (:func:`validate_trajectory`) and the simulator of
the fitting tests (``valuedyn.fitting.simulate_trajectory``) all read
:data:`TRAJECTORY_VARIABLES`.

A trajectory file is netCDF4 written with xarray's h5netcdf engine.

**Core** (every file): dims ``seed`` and ``update``; coord ``env_step[update]``, env
steps per seed completed at the end of each update (strictly increasing);
``episodes_finished[seed, update]``; provenance attributes.

**Optional parts** (:data:`TRAJECTORY_PARTS`), each validated when present and never
filled with made-up zeros when absent: ``unlocks`` (``achievement_unlocks``, dim
``achievement``), ``events`` (``event_total``, dim ``event``), ``actions``
(``action_count``, dim ``action``), ``placements`` (``placement_histogram``, dims
``placement`` and ``count_bin``), ``returns`` (``return_sum``, ``length_sum``) and
``ppo`` (the PPO statistics). A file written by ``valuedyn train`` holds every part and
the trainer's provenance (:data:`REQUIRED_ATTRS`), and is held to that. A file written
by ``valuedyn import`` (attribute ``source_format`` set) holds the parts its log holds
and the import's provenance (:data:`IMPORT_REQUIRED_ATTRS`).

Counts, never ratios. An update in which no episode finished has 0 in
``episodes_finished``; nothing is divided by it and no NaN is stored for it.

**Values missing for one behaviour only** (an imported log's NaN or absent cell):
no NaN is stored and nothing is filled in. Beside the variable ``V`` stands a boolean
variable ``V_observed`` with ``V``'s dims (:data:`OBSERVED_SUFFIX`); ``False`` marks a
cell the log did not hold, and ``V`` holds 0 there (a NaN-free placeholder, checked by
the validator, that carries no information). A consumer that reads a cell of ``V``
must also read :func:`observed_mask` (all ``True`` where ``V_observed`` is absent, as in
every trainer file) and treat a ``False`` cell as missing: left out of the likelihood,
of sums and of rates, never counted as 0. ``episodes_finished_observed`` ``False``
(a row the run did not log, or whose episode count could not be had) comes with
``episodes_finished = 0``, so the update is masked even by a reader of the
denominators alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from valuedyn._errors import ValuedynError

TRAJECTORY_DIMS = ("seed", "update", "achievement", "event", "action")

#: the dims every trajectory has; the others come with the optional parts that use them.
CORE_DIMS = ("seed", "update")

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

#: the variables every trajectory holds.
CORE_VARIABLES = ("episodes_finished",)

#: optional part -> its variables (a part is present when any of them is).
TRAJECTORY_PARTS: dict[str, tuple[str, ...]] = {
    "unlocks": ("achievement_unlocks",),
    "events": ("event_total",),
    "actions": ("action_count",),
    "placements": ("placement_histogram",),
    "returns": ("return_sum", "length_sum"),
    "ppo": ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"),
}

#: ``V + OBSERVED_SUFFIX``: the boolean mask of the cells of ``V`` a log held (see the module doc).
OBSERVED_SUFFIX = "_observed"

#: variable -> its dims after (seed, update): the shape of one seed's metric per update.
METRIC_TRAILING_DIMS: dict[str, tuple[str, ...]] = {name: dims[2:] for name, (dims, _) in TRAJECTORY_VARIABLES.items()}

#: variables holding counts (stored as integers; never ratios).
COUNT_VARIABLES: frozenset[str] = frozenset(name for name, (_, kind) in TRAJECTORY_VARIABLES.items() if kind == "count")

#: provenance of a file written by ``valuedyn train``.
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

#: provenance of a file written by ``valuedyn import``: its config, the source format, the
#: source files (JSON list, one per seed) and their SHA-256 (JSON list; a folder's is a hash
#: over its files, see ``valuedyn._io.path_sha256``), and the column mapping used (JSON).
IMPORT_REQUIRED_ATTRS = (
    "config",
    "valuedyn_version",
    "git_commit",
    "source_format",
    "source_files",
    "source_sha256",
    "column_mapping",
)


def is_imported(ds) -> bool:
    """Whether ``ds`` was written by ``valuedyn import`` (its attribute ``source_format`` is set)."""
    return "source_format" in ds.attrs


def present_parts(ds) -> tuple[str, ...]:
    """The optional parts (:data:`TRAJECTORY_PARTS` names) of which ``ds`` holds a variable."""
    return tuple(part for part, names in TRAJECTORY_PARTS.items() if any(n in ds for n in names))


def absent_parts(ds) -> tuple[str, ...]:
    """The optional parts of which ``ds`` holds no variable (say so; never fill them in)."""
    return tuple(part for part in TRAJECTORY_PARTS if part not in present_parts(ds))


def observed_mask(ds, name: str) -> np.ndarray:
    """Boolean array shaped like ``ds[name]``: True where the cell holds a logged value.

    ``ds[name + "_observed"]`` where the file has it, else all True (a trainer file
    observes every cell). A False cell is missing: leave it out, never count it as 0.
    """
    if name not in ds:
        raise ValuedynError(f"variable {name!r} is not in this trajectory; its parts are {', '.join(present_parts(ds)) or 'none'}")
    mask_name = name + OBSERVED_SUFFIX
    if mask_name in ds:
        return np.asarray(ds[mask_name].values, dtype=bool)
    return np.ones(ds[name].shape, dtype=bool)


def _check_variable(ds, name: str, dims: tuple[str, ...], kind: str, source: str) -> None:
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


def _check_masks(ds, source: str) -> None:
    for mask_name in [str(v) for v in ds.data_vars if str(v).endswith(OBSERVED_SUFFIX)]:
        name = mask_name[: -len(OBSERVED_SUFFIX)]
        if name not in TRAJECTORY_VARIABLES or name not in ds:
            raise ValuedynError(f"{source}: mask {mask_name!r} stands beside no variable {name!r} of the contract")
        if tuple(ds[mask_name].dims) != tuple(ds[name].dims):
            raise ValuedynError(f"{source}: mask {mask_name!r} has dims {tuple(ds[mask_name].dims)}, expected {tuple(ds[name].dims)}")
        mask = np.asarray(ds[mask_name].values)
        if mask.dtype.kind != "b":
            raise ValuedynError(f"{source}: mask {mask_name!r} must be boolean, found dtype {mask.dtype}")
        if np.any(np.asarray(ds[name].values)[~mask] != 0):
            raise ValuedynError(f"{source}: {name!r} holds a value in a cell {mask_name!r} marks unobserved; such cells hold 0")


def validate_trajectory(ds, source: str = "trajectory") -> None:
    """Check ``ds`` against the contract; raise :class:`ValuedynError` naming the first breach.

    A trainer file must hold every variable and the trainer's provenance; an imported file
    (:func:`is_imported`) the core, its optional parts whole, and the import's provenance.
    """
    imported = is_imported(ds)
    needed = CORE_DIMS if imported else TRAJECTORY_DIMS
    for dim in needed:
        if dim not in ds.dims:
            raise ValuedynError(f"{source}: dimension {dim!r} is missing; a trajectory needs dims {needed}")
    if "env_step" not in ds.coords or ds["env_step"].dims != ("update",):
        raise ValuedynError(f"{source}: coordinate 'env_step' on 'update' is missing")
    for name, (dims, kind) in TRAJECTORY_VARIABLES.items():
        if name not in ds:
            if imported and name not in CORE_VARIABLES:
                continue  # an optional part the log did not hold
            raise ValuedynError(f"{source}: variable {name!r} is missing; is this a valuedyn trajectory file?")
        _check_variable(ds, name, dims, kind, source)
    _check_masks(ds, source)
    episodes = ds["episodes_finished"].values
    if "achievement_unlocks" in ds:
        unlocks = ds["achievement_unlocks"].values
        if unlocks.size and np.any(unlocks > episodes[..., None]):
            raise ValuedynError(f"{source}: achievement_unlocks exceeds episodes_finished somewhere; counts are inconsistent")
    if "placement_histogram" in ds:
        histogram_total = ds["placement_histogram"].values.sum(axis=-1)
        if histogram_total.size and np.any(histogram_total != episodes[..., None]):
            raise ValuedynError(f"{source}: placement_histogram does not sum to episodes_finished; counts are inconsistent")
    env_step = ds["env_step"].values
    if env_step.size > 1 and np.any(np.diff(env_step) <= 0):
        raise ValuedynError(f"{source}: env_step must increase strictly along 'update'")
    required = IMPORT_REQUIRED_ATTRS if imported else REQUIRED_ATTRS
    missing = [a for a in required if a not in ds.attrs]
    if missing:
        raise ValuedynError(f"{source}: attributes {missing} are missing; provenance is required")
    try:
        json.loads(ds.attrs["config"])
    except (TypeError, json.JSONDecodeError):
        raise ValuedynError(f"{source}: attribute 'config' is not valid JSON") from None
    if imported:
        _check_import_provenance(ds, source)


def _check_import_provenance(ds, source: str) -> None:
    lists = {}
    for key in ("source_files", "source_sha256", "column_mapping"):
        try:
            lists[key] = json.loads(ds.attrs[key])
        except (TypeError, json.JSONDecodeError):
            raise ValuedynError(f"{source}: attribute {key!r} is not valid JSON") from None
    seeds = ds.sizes["seed"]
    for key in ("source_files", "source_sha256"):
        if not isinstance(lists[key], list) or len(lists[key]) != seeds:
            raise ValuedynError(f"{source}: attribute {key!r} must list one entry per seed ({seeds}); the file is corrupt")


def open_trajectory(path: str | Path):
    """Load a trajectory file fully into memory (the file is closed again) and validate it."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise ValuedynError(
            f"trajectory file {path} does not exist; check the path, or make one with `valuedyn train` or `valuedyn import`"
        )
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as err:  # h5py/h5netcdf raise many types for a corrupt file
        raise ValuedynError(f"cannot read {path} as netCDF4 ({type(err).__name__}: {err}); the file is corrupt or not a trajectory") from None
    validate_trajectory(ds, source=str(path))
    return ds
