"""``valuedyn conditions``: what runs the command (its config is
:class:`~valuedyn.fitting.settings.ConditionsConfig`; no JAX at import time)."""

from __future__ import annotations

import sys

from valuedyn.fitting.pipeline._jax_setup import prepare_jax
from valuedyn.fitting.settings import ConditionsConfig


def run_conditions(config: ConditionsConfig) -> int:
    prepare_jax(config.chains)
    from valuedyn.fitting.analyses._conditions import conditions_attrs, fit_conditions
    from valuedyn.fitting.inference._store import load_fit

    path = fit_conditions(config)
    if config.strict and not conditions_attrs(load_fit(path))["trustworthy"]:
        print(f"valuedyn conditions: {path} is not trustworthy (--strict)", file=sys.stderr)
        return 1
    return 0


__all__ = ["ConditionsConfig", "run_conditions"]
