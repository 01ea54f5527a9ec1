"""JAX set-up of a fresh fitting process (a command, or a batch runner's worker): one CPU
device per core and the persistent compilation cache. Imports no JAX at import time."""

from __future__ import annotations

import os


def prepare_jax(chains: int | None = None) -> None:
    """In a fresh process (the command line), before JAX initialises: one CPU device per
    core (so chains run in parallel) and the persistent compilation cache
    (``VALUEDYN_JAX_CACHE``, default ~/.cache/valuedyn/jax; 0 turns it off), so a second
    ``valuedyn fit`` of the same shapes skips compilation. Inside a process where JAX is
    already running (tests, the report) it changes nothing."""
    import jax

    try:
        devices = max(1, min(os.cpu_count() or 1, chains or (os.cpu_count() or 1)))
        jax.config.update("jax_num_cpu_devices", devices)
    except Exception:  # backends already initialised: chains share the existing devices
        return
    enable_compilation_cache()


#: write every compiled kernel to the persistent cache, however fast it compiled. JAX's
#: default (1 s) kept only the four largest of a core-case fit's ~45 kernels (the MAP's
#: gradient, the NUTS chunk, its init, the outputs): the NUTS init at optimisation level 0,
#: the warmup's finish, Adam's init, the PRNG and the host's eager conversions (20-800 ms
#: each on a loaded 2-core machine) were compiled again in every process. Reading an entry
#: back costs about a millisecond.
CACHE_MIN_COMPILE_SECONDS = 0.0
#: the cache folder's size limit (bytes; least recently used entries go first). A finite limit
#: is what makes JAX guard every read and write of the folder with a file lock (``filelock``):
#: without one it writes an entry in place, unlocked, so another process sharing the folder (a
#: report or batch worker, a Dask worker, a pytest-xdist worker) can read it half-written. (The
#: segfault that led here came from loading executables on a thread, which
#: ``valuedyn.fitting.inference._nuts._CompiledOnce`` no longer does with the cache on.)
CACHE_MAX_BYTES = 8 * 2**30


def compilation_cache_dir() -> str | None:
    """The persistent compilation cache folder (``VALUEDYN_JAX_CACHE``, default
    ~/.cache/valuedyn/jax), or None when it is turned off (``0``, ``off`` or empty)."""
    cache = os.environ.get("VALUEDYN_JAX_CACHE", os.path.expanduser("~/.cache/valuedyn/jax"))
    return None if cache in ("0", "", "off") else cache


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache in :func:`compilation_cache_dir` for every
    kernel (:data:`CACHE_MIN_COMPILE_SECONDS`, no minimum entry size), so a second process
    of the same shapes (a command, a batch runner's worker, a Dask worker on this machine)
    compiles nothing a first one compiled. Kernels with a host callback (the failed-solve
    counter of an ODE model's NUTS kernel) cannot enter it: JAX refuses to write them."""
    import jax

    cache = compilation_cache_dir()
    if cache is None:
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)  # locked reads and writes
    except Exception:
        pass
