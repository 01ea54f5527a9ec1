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


def enable_compilation_cache() -> None:
    import jax

    cache = os.environ.get("VALUEDYN_JAX_CACHE", os.path.expanduser("~/.cache/valuedyn/jax"))
    if cache in ("0", "", "off"):
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    except Exception:
        pass
