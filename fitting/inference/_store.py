"""The one module that reads and writes fit files (ArviZ InferenceData netCDF).

The fit-file contract: an ArviZ InferenceData netCDF (h5netcdf) with the groups
:data:`REQUIRED_GROUPS`; top-level attrs :data:`REQUIRED_FIT_ATTRS` name the model, the
behaviour, the observation model and pooling, the data file (and its sha256), the
selection and the FitConfig (JSON); ``diagnostics``, ``trustworthy`` and, once checked,
``checks`` follow. Writes are atomic.

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
    return idata


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
