"""The one module that reads and writes fit files (ArviZ InferenceData netCDF).

The fit-file contract: an ArviZ InferenceData netCDF (h5netcdf) with the groups
:data:`REQUIRED_GROUPS`; top-level attrs :data:`REQUIRED_FIT_ATTRS` name the model, the
behaviour, the observation model and pooling, the data file (and its sha256), the
selection and the FitConfig (JSON); ``diagnostics``, ``trustworthy`` and, once checked,
``checks`` follow. Writes are atomic.

The data groups are ArviZ-native: ``observed_data``, ``posterior_predictive``,
``log_likelihood`` and (in a fit written since they exist) ``prior_predictive`` hold
``y`` on one dimension :data:`OBS_DIM` of the observed cells only, in the order of
``np.nonzero(constant_data.mask)``, with coordinates ``obs_seed`` and ``obs_update``; the
``prior`` group holds the posterior's variables with one chain. So ``az.loo``,
``az.compare``, ``az.loo_pit``, ``az.plot_loo_pit``, ``az.plot_ppc`` and ``az.summary``
run on ``az.from_netcdf(file)`` unaided (why this layout:
:func:`~valuedyn.fitting.inference._fit.inference_data`); :func:`on_grid` puts the cells
back on [..., seed, update]. A file written before (``y`` on [seed, update], masked cells
0) is converted on read (:func:`obs_layout`), so every reader sees one layout.

A fit file read once in a process is kept (:data:`LOADED_BYTES` at most, by file identity:
path, inode, modification and change times and size, so an atomic rewrite is read afresh) and later
reads get a deep copy of it: the report reads each fit for its checks, comparisons,
verdicts, headline and figures, and one read costs 0.6-1 s (h5netcdf's per-variable
metadata), a copy 5 ms.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from pathlib import Path

from valuedyn._errors import ValuedynError
from valuedyn._io import atomic_path

#: the dimension of the observed cells in the data groups (:data:`OBS_GROUPS`)
OBS_DIM = "obs"
#: the groups whose ``y`` lies on :data:`OBS_DIM`
OBS_GROUPS = ("observed_data", "posterior_predictive", "log_likelihood", "prior_predictive")
REQUIRED_GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data", "posterior_predictive")
REQUIRED_FIT_ATTRS = ("model", "behaviour", "observation_model", "pooling", "trajectory", "trajectory_sha256", "selection", "config")
#: attributes stored as JSON text (a single fit's; a conditions fit adds its own):
#: :func:`fit_attrs` decodes them all, so no module parses a fit's attributes by hand
JSON_ATTRS = ("selection", "config", "diagnostics", "checks", "verdict", "observation_choice", "first_attempt", "parameters",
              "parameter_transforms", "observation_parameters", "conditions", "differing_settings", "effects",
              "deviation_summary", "timings")
#: attributes that are JSON in a conditions fit (a list of files, file -> sha256) and plain
#: text in a single fit (one path, one sha256)
CONDITIONS_JSON_ATTRS = ("trajectory", "trajectory_sha256")


#: HDF5 storage settings a variable read from a (compressed) fit file carries in its
#: encoding; dropped before a write so every fit file is written the same way
_STORAGE_ENCODING = ("zlib", "complevel", "compression", "compression_opts", "shuffle", "fletcher32", "chunksizes",
                     "contiguous")


def save_fit(idata, path, final_attrs=None) -> Path:
    """Write ``idata`` to ``path`` atomically (a kill leaves the old file or the new one).

    Uncompressed: ArviZ's default gzip (in small auto-sized chunks) made the core case's
    44 MB of draws, log-likelihood and replicates a 26 MB file but took 4.2 s to write and
    1.6 s to read, against 0.8 and 1.0 s uncompressed; a report fit (8 seeds x 16 updates)
    6.2 MB in 1.5 s against 7.6 MB in 0.9 s.

    ``final_attrs``: called once the data are written (to the temporary file), its dict of
    top-level attributes is added before the file takes ``path`` (a fit's ``timings``, which
    include the write itself)."""
    path = Path(path)
    for group in idata.groups():
        for variable in getattr(idata, group).variables.values():
            for key in _STORAGE_ENCODING:
                variable.encoding.pop(key, None)
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp), engine="h5netcdf", compress=False)
        if final_attrs is not None:
            import h5netcdf

            with h5netcdf.File(str(tmp), "a") as f:
                f.attrs.update(final_attrs())
    return path


#: most bytes of fit data :func:`load_fit` keeps in memory (least recently read dropped first)
LOADED_BYTES = 1 << 29
_loaded: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
_loaded_lock = threading.Lock()


def _identity(path: Path) -> tuple:
    st = path.stat()
    return str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size


def load_fit(path):
    """Read a fit file fully into memory; :class:`ValuedynError` for a missing, corrupt or
    wrong file. A file read before in this process, unchanged since, is not read again:
    the caller gets its own deep copy (change it freely)."""
    path = Path(path)
    if not path.exists():
        raise ValuedynError(f"fit file {path} does not exist; check the path or run `valuedyn fit`")
    if not path.is_file():
        raise ValuedynError(f"fit file {path} is not a file")
    identity = _identity(path)
    with _loaded_lock:
        kept = _loaded.get(identity)
        if kept is not None:
            _loaded.move_to_end(identity)
            return copy.deepcopy(kept[0])
    idata = _read_fit(path)
    size = sum(int(getattr(idata, group).nbytes) for group in idata.groups())
    if size <= LOADED_BYTES:
        with _loaded_lock:
            _loaded[identity] = (copy.deepcopy(idata), size)
            while sum(n for _, n in _loaded.values()) > LOADED_BYTES:
                _loaded.popitem(last=False)
    return idata


def _read_fit(path: Path):
    import arviz as az

    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
        idata.load() if hasattr(idata, "load") else None
        for group in idata.groups():
            getattr(idata, group).load()
    except Exception as err:  # h5py / xarray raise many types for a corrupt file
        raise ValuedynError(
            f"cannot read {path} as a fit file ({type(err).__name__}: {err}); it is corrupt or not a fit file"
        ) from None
    missing_groups = [g for g in REQUIRED_GROUPS if g not in idata.groups()]
    if "behavior" in idata.attrs and "behaviour" not in idata.attrs:  # a fit file written before the rename
        idata.attrs["behaviour"] = idata.attrs.pop("behavior")
    _concentration_to_dispersion(idata)
    attrs = dict(getattr(idata, "attrs", {}) or {})
    missing_attrs = [a for a in REQUIRED_FIT_ATTRS if a not in attrs]
    if missing_groups or missing_attrs:
        raise ValuedynError(
            f"{path} is not a valuedyn fit file (missing groups {missing_groups}, attributes {missing_attrs}); "
            "pass a file written by `valuedyn fit`"
        )
    try:
        obs_layout(idata)
    except ValuedynError as err:
        raise ValuedynError(f"{path}: {err}") from None
    return idata


def observed_cells(idata) -> tuple:
    """(seed index, update index) of a fit's observed cells, the order of :data:`OBS_DIM`:
    ``np.nonzero`` of ``constant_data.mask`` [seed, update]."""
    import numpy as np

    mask = idata.constant_data["mask"].transpose("seed", "update")
    return np.nonzero(np.asarray(mask.values, bool))


def obs_layout(idata):
    """Put a fit written before the ArviZ-native layout on it, in place, and return it:
    ``observed_data.y`` [seed, update] (masked cells 0; integer for counts) and
    ``posterior_predictive.y`` [chain, draw, seed, update] become [obs] and
    [chain, draw, obs] of the observed cells (float; ``discrete`` as the stored dtype said),
    with the ``obs_seed`` / ``obs_update`` coordinates the log-likelihood already had. A fit
    on the layout already (or with no ``y`` on [seed, update]) is left as it is. A log-likelihood whose cells are not the
    observed cells in order is a :class:`ValuedynError` (the file is off-contract)."""
    import numpy as np
    import xarray as xr

    observed = idata.observed_data.get("y")
    if observed is None or OBS_DIM in observed.dims or not {"seed", "update"} <= set(observed.dims):
        return idata  # on the layout already, or no grid of observations to convert
    seed_index, update_index = observed_cells(idata)
    seeds = np.asarray(idata.constant_data["seed"].values)[seed_index]
    updates = np.asarray(idata.constant_data["update"].values)[update_index]
    coords = {OBS_DIM: np.arange(seed_index.size), "obs_seed": (OBS_DIM, seeds), "obs_update": (OBS_DIM, updates)}
    stored = idata.log_likelihood["y"]
    if stored.sizes.get(OBS_DIM) != seed_index.size or ("obs_seed" in stored.coords and not (
            np.array_equal(stored["obs_seed"].values, seeds) and np.array_equal(stored["obs_update"].values, updates))):
        raise ValuedynError("its log-likelihood cells are not its observed cells in order; the file is off-contract")
    discrete = int(np.issubdtype(observed.dtype, np.integer))
    y = np.asarray(observed.transpose("seed", "update").values, np.float64)[seed_index, update_index]
    idata.observed_data = xr.Dataset({"y": (OBS_DIM, y, {"discrete": discrete})}, coords=coords,
                                     attrs=idata.observed_data.attrs)
    replicated = idata.posterior_predictive
    y_rep = np.asarray(replicated["y"].transpose("chain", "draw", "seed", "update").values)[..., seed_index, update_index]
    idata.posterior_predictive = xr.Dataset(
        {"y": (("chain", "draw", OBS_DIM), y_rep.astype(np.float32))},
        coords={"chain": replicated["chain"].values, "draw": replicated["draw"].values, **coords}, attrs=replicated.attrs)
    idata.log_likelihood = idata.log_likelihood.assign_coords(coords)
    return idata


def on_grid(idata, group: str = "observed_data", name: str = "y"):
    """``group``'s ``name`` (on :data:`OBS_DIM`, last or not) back on the fit's grid:
    float64 [..., seed, update] with NaN in the masked cells; the leading dimensions
    (chain, draw) as stored."""
    import numpy as np

    seed_index, update_index = observed_cells(idata)
    shape = idata.constant_data["mask"].transpose("seed", "update").shape
    values = getattr(idata, group)[name]
    values = np.asarray(values.transpose(..., OBS_DIM).values, np.float64)
    out = np.full(values.shape[:-1] + tuple(shape), np.nan)
    out[..., seed_index, update_index] = values
    return out


def is_discrete(idata) -> bool:
    """Whether a fit's observations are counts (``observed_data.y``'s ``discrete`` attribute;
    an integer dtype in a fit written before it)."""
    import numpy as np

    observed = idata.observed_data["y"]
    return bool(int(observed.attrs.get("discrete", np.issubdtype(observed.dtype, np.integer))))


def _concentration_to_dispersion(idata) -> None:
    """A beta-binomial fit written before its parameter became ``dispersion`` (= 1 /
    concentration, as the negbin's) is read as if written now: ``dispersion`` in the
    posterior and in ``observation_parameters`` instead of ``concentration``."""
    if idata.attrs.get("observation_model") != "betabinomial" or "posterior" not in idata.groups():
        return
    posterior = idata.posterior
    if "concentration" not in posterior or "dispersion" in posterior:
        return
    idata.posterior = posterior.assign(dispersion=1.0 / posterior["concentration"]).drop_vars("concentration")
    names = idata.attrs.get("observation_parameters", "[]")
    names = json.loads(names) if isinstance(names, str) else list(names)
    idata.attrs["observation_parameters"] = json.dumps(["dispersion" if n == "concentration" else n for n in names])


def fit_attrs(idata) -> dict:
    """Top-level attributes of a fit with every JSON one decoded (:data:`JSON_ATTRS`, and
    :data:`CONDITIONS_JSON_ATTRS` in a conditions fit); a value that does not parse is
    left as stored."""
    return decoded_attrs(idata.attrs)


def decoded_attrs(attrs) -> dict:
    """:func:`fit_attrs` of an attribute mapping (a fit's ``attrs``, decoded or not)."""
    attrs = dict(attrs)
    keys = JSON_ATTRS + (CONDITIONS_JSON_ATTRS if attrs.get("pooling") == "conditions" else ())
    for key in keys:
        if key in attrs and isinstance(attrs[key], str):
            try:
                attrs[key] = json.loads(attrs[key])
            except json.JSONDecodeError:
                pass
    return attrs
