"""Command-line config of ``valuedyn conditions`` (no JAX at import time)."""

from __future__ import annotations

import dataclasses
import sys

from valuedyn._config import option
from valuedyn.fitting._cli import OBSERVATIONS, prepare_jax


@dataclasses.dataclass(frozen=True)
class ConditionsConfig:
    """Compare conditions of training: one hierarchical fit over trajectory files whose training
settings differ (e.g. --reward-every place_plant vs the default). The differing settings name
the conditions; files of one condition pool their seeds. Writes the posterior of every
parameter's effect (difference and ratio of the typical values, per pair of conditions).

Example: valuedyn conditions default.nc every_plant.nc --model overshoot --behaviour event:place_plant --out cond.nc"""

    trajectories: tuple[str, ...] = option(help="two or more trajectory files (one update grid)", positional=True, nargs="+")
    model: str = option(help="registered model name (valuedyn models lists them)")
    behaviour: str = option(help="KIND:NAME with KIND unlock, event, action or diversity (e.g. event:place_plant)",
                            aliases=("--behavior",))
    out: str = option(help="conditions fit file to write (ArviZ InferenceData netCDF)")
    seeds: tuple[int, ...] = option((), help="seed labels to fit in every file (default: all)")
    max_seeds: int = option(0, help="without --seeds, fit the first this many seeds of each file (0 = all)")
    updates: str | None = option(None, help="FIRST:LAST inclusive update window (default: all)", metavar="FIRST:LAST")
    observation: str = option("auto", help="observation model (auto: betabinomial / negbin / lognormal by behaviour kind)", choices=OBSERVATIONS)
    parameterization: str = option(
        "auto", help="coordinates of the seeds' hierarchy: auto centres each parameter and seed as far as its data pin "
        "it down (chosen at the MAP); noncentred / centred fix that for all", choices=("auto", "noncentred", "centred"),
        static=True,
    )
    chains: int = option(4, help="NUTS chains (run in parallel on the CPU cores)", static=True)
    draws: int = option(1000, help="posterior draws per chain", static=True)
    warmup: int = option(1000, help="warmup (adaptation) iterations per chain", static=True)
    seed: int = option(0, help="random seed of the sampler")
    max_tree_depth: int = option(10, help="NUTS maximum tree depth", static=True)
    target_accept: float = option(
        0.95, help="NUTS target acceptance probability (0.95: on simulated 2-condition overshoot data 0.9 gave 1, 7 and 11 divergences per 2000 draws, 0.95 gave 0, 0, 1 and 5 per 2000-4000 draws)", static=True
    )
    dense_mass: bool = option(True, help="adapt a dense mass matrix (started from the Laplace approximation at the MAP)", static=True)
    strict: bool = option(False, help="exit 1 when the fit is not trustworthy (diagnostic thresholds or a named cause)")
    force: bool = option(False, help="replace an existing --out")
    progress: bool = option(True, help="progress bar on stderr while sampling")

    # validate_sampler_config (shared with `valuedyn fit`) checks a pooling; a conditions fit
    # always pools seeds hierarchically within each condition
    @property
    def pooling(self) -> str:
        return "hierarchical"


def run_conditions(config: ConditionsConfig) -> int:
    prepare_jax(config.chains)
    from valuedyn.fitting._conditions import conditions_attrs, fit_conditions
    from valuedyn.fitting._store import load_fit

    path = fit_conditions(config)
    if config.strict and not conditions_attrs(load_fit(path))["trustworthy"]:
        print(f"valuedyn conditions: {path} is not trustworthy (--strict)", file=sys.stderr)
        return 1
    return 0
