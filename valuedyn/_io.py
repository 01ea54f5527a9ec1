"""File helpers every room uses: atomic writes, overwrite guards, hashes, provenance.

A file valuedyn writes is never half-written: it is written to a temporary file in the
same folder and moved into place with :func:`os.replace` (atomic on POSIX), so a kill at
any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from valuedyn._errors import ValuedynError


#: Write failures the user fixes by freeing space or choosing another folder.
_STORAGE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


def _storage_error(path: Path, err: OSError) -> ValuedynError:
    return ValuedynError(
        f"cannot write {path} ({err.strerror or err}); free space or choose a writable folder for the output "
        "(nothing was replaced)"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is untouched. A full or
    read-only folder becomes a one-line :class:`ValuedynError`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if err.errno in _STORAGE_ERRORS:
            raise _storage_error(path, err) from None
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):  # others may come from reading an input
                raise
            raise _storage_error(path, err) from None
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_dataset_atomic(dataset, path: str | os.PathLike) -> None:
    """Write an xarray Dataset as netCDF4 (h5netcdf engine), atomically.

    Integer and float variables are compressed (zlib level 4).
    """
    encoding = {
        name: {"zlib": True, "complevel": 4}
        for name, var in dataset.data_vars.items()
        if var.dtype.kind in "iuf" and var.ndim > 0
    }
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)


def refuse_overwrite(path: str | os.PathLike, force: bool, *, flag: str = "--force") -> None:
    """Refuse, before any work, an output that exists (unless the user asked to replace it)
    or that cannot be written (its nearest existing folder is read-only or not ours)."""
    if Path(path).exists() and not force:
        raise ValuedynError(f"output {path} already exists; pass {flag} to replace it, or choose another --out")
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValuedynError(f"cannot write {path}: the folder {folder} is read-only or not writable; choose another --out")


def require_file(path: str | os.PathLike, what: str = "input file") -> Path:
    path = Path(path)
    if not path.exists():
        raise ValuedynError(f"{what} {path} does not exist; check the path")
    if not path.is_file():
        raise ValuedynError(f"{what} {path} is not a file")
    return path


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a folder: the hash of its files' relative paths and
    SHA-256s, in sorted order (a TensorBoard run is a folder of event files)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def git_commit() -> str:
    """The commit of the valuedyn checkout this code runs from, or 'unknown'.

    An installed copy outside a checkout (a wheel on a GPU machine) reads the commit
    from ``VALUEDYN_GIT_COMMIT``, which the launching script sets.
    """
    if os.environ.get("VALUEDYN_GIT_COMMIT"):
        return os.environ["VALUEDYN_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance() -> dict[str, str]:
    """Attributes every output file carries: versions, commit, device, time."""
    import jax

    import valuedyn

    device = jax.devices()[0]
    return {
        "valuedyn_version": valuedyn.__version__,
        "git_commit": git_commit(),
        "jax_version": jax.__version__,
        "craftax_version": _version("craftax"),
        "numpyro_version": _version("numpyro"),
        "python_version": platform.python_version(),
        "device": f"{device.platform}:{getattr(device, 'device_kind', 'unknown')} x{jax.device_count()}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
