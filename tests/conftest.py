"""Shared test set-up: headless matplotlib, quiet JAX, CPU only, one compilation cache.

The suite compiles Craftax and NUTS programs many times over; JAX's persistent
compilation cache lets a program compiled by one test file (or one xdist worker) be
reused by another. It lives outside the repository and only speeds things up.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ.get("VALUEDYN_TEST_JAX_CACHE", "/tmp/valuedyn-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
# the xdist workers share the folder: a size limit makes JAX lock every read and write of it (see
# valuedyn.fitting.pipeline._jax_setup.CACHE_MAX_BYTES; unlocked, JAX writes entries in place)
from valuedyn.fitting.pipeline._jax_setup import CACHE_MAX_BYTES  # noqa: E402

jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
