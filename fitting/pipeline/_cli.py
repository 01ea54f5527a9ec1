"""``valuedyn fit``, ``check``, ``compare`` and ``sbc``: what runs each command (their
configs are declared in :mod:`valuedyn.fitting.settings`).

This module imports no JAX at import time: ``valuedyn fit`` first asks JAX for one CPU
device per core (so NUTS chains run in parallel on the cores) and turns on the
persistent compilation cache (:func:`~valuedyn.fitting.pipeline._jax_setup.prepare_jax`),
then imports the fitting code.
"""

from __future__ import annotations

import sys

from valuedyn.fitting.pipeline._jax_setup import prepare_jax
from valuedyn.fitting.settings import CheckConfig, CompareConfig, FitConfig, SBCConfig


def run_fit(config: FitConfig) -> int:
    from valuedyn._io import refuse_overwrite

    refuse_overwrite(config.out, config.force)  # before JAX starts (seconds): a mistyped --out fails at once
    prepare_jax(config.chains)
    from valuedyn.fitting.inference._fit import fit_trajectory
    from valuedyn.fitting.inference._store import fit_attrs, load_fit

    path = fit_trajectory(config)
    if config.strict and not fit_attrs(load_fit(path)).get("trustworthy", 0):
        print(f"valuedyn fit: {path} misses the diagnostic thresholds (--strict)", file=sys.stderr)
        return 1
    return 0


def run_check(config: CheckConfig) -> int:
    prepare_jax()
    from valuedyn.fitting.judge._check import check_fit, format_checks

    checks = check_fit(config.fit, seed=config.seed)
    print(format_checks(checks))
    return 0


def run_compare(config: CompareConfig) -> int:
    prepare_jax()
    from valuedyn.fitting.judge._compare import compare_fits

    result = compare_fits(
        list(config.fits), lfo=config.lfo, lfo_fraction=config.lfo_fraction, out=config.out,
        force=config.force, progress=config.progress,
    )
    print(result.format())
    return 0


def run_sbc(config: SBCConfig) -> int:
    prepare_jax(config.chains)
    from valuedyn.fitting.judge._sbc import format_sbc, run_sbc_config

    result = run_sbc_config(config)
    print(format_sbc(result))
    return 0


__all__ = ["CheckConfig", "CompareConfig", "FitConfig", "SBCConfig", "run_check", "run_compare", "run_fit", "run_sbc"]
