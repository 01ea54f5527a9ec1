"""Command-line configs of ``valuedyn fit``, ``check``, ``compare`` and ``sbc``.

This module imports no JAX at import time: ``valuedyn fit`` first asks JAX for one CPU
device per core (so NUTS chains run in parallel on the cores) and turns on the
persistent compilation cache, then imports the fitting code.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from valuedyn._config import option

OBSERVATIONS = ("auto", "binomial", "betabinomial", "poisson", "negbin", "lognormal")
POOLING_CHOICES = ("hierarchical", "complete", "none")


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


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Fit a dynamical model to one behaviour of a trajectory file with NUTS.

    Example: valuedyn fit run.nc --model overshoot --behaviour event:place_plant --out fit.nc
    """

    trajectory: str = option(help="trajectory file (netCDF, from valuedyn train)", positional=True)
    model: str = option(help="registered model name (valuedyn models lists them)")
    behaviour: str = option(help="KIND:NAME with KIND unlock, event, action or diversity (e.g. event:place_plant)",
                            aliases=("--behavior",))
    out: str = option(help="fit file to write (ArviZ InferenceData netCDF)")
    seeds: tuple[int, ...] = option((), help="seed labels to fit (default: all)")
    updates: str | None = option(None, help="FIRST:LAST inclusive update window (default: all)", metavar="FIRST:LAST")
    pooling: str = option("hierarchical", help="pooling of parameters across seeds", choices=POOLING_CHOICES)
    observation: str = option("auto", help="observation model (auto: betabinomial / negbin / lognormal by behaviour kind: "
                              "the overdispersed models nest the plain ones at dispersion 0, so the fitted dispersion "
                              "says how far the data scatter beyond Binomial / Poisson noise; binomial or poisson "
                              "fix it at 0)", choices=OBSERVATIONS)
    parameterization: str = option(
        "auto", help="coordinates of the hierarchical pooling: auto centres each parameter and seed as far as its "
        "data pin it down (chosen at the MAP); noncentred / centred fix that for all", choices=("auto", "noncentred", "centred"),
        static=True,
    )
    chains: int = option(4, help="NUTS chains (run in parallel on the CPU cores)", static=True)
    draws: int = option(1000, help="posterior draws per chain (the most, with --min-draws)", static=True)
    min_draws: int = option(
        500, help="stop sampling once this many draws per chain (then every half of it) pass the diagnostics gate with a "
        "margin: R-hat <= 1.01, bulk and tail ESS >= 500, no divergence; the fit file then holds fewer than --draws "
        "(0 = always run --draws)", static=True)
    warmup: int = option(1000, help="warmup (adaptation) iterations per chain", static=True)
    seed: int = option(0, help="random seed of the sampler")
    max_tree_depth: int = option(10, help="NUTS maximum tree depth", static=True)
    target_accept: float = option(
        0.97, help="NUTS target acceptance probability (0.97: on the core overshoot case, 4 chains x 1000 + 1000, "
        "0.9 left 48 divergences; 0.95 left 1 in 4 of 5 sampler seeds, each in a tail of a population scale; 0.97 "
        "none in 5 seeds, at 31-58 leapfrog steps per iteration instead of 30)", static=True
    )
    dense_mass: bool = option(True, help="adapt a dense mass matrix (started from the Laplace approximation at the MAP)", static=True)
    saturated_draws: int = option(
        0, help="draws per chain when at least 90 percent of the transitions of the warmup's last stage, or of a "
        "window of 100+ iterations (the warmup then stops there), hit --max-tree-depth (NUTS then crawls along a ridge of parameters the data do not pin and more draws would not pass the gate; the fit "
        "is marked untrustworthy and says so); 0 = never cut", static=True)
    strict: bool = option(False, help="exit 1 when the fit misses the diagnostic thresholds")
    force: bool = option(False, help="replace an existing --out")
    progress: bool = option(True, help="progress bar on stderr while sampling")


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    """Posterior predictive checks of a fit file; stores them in the file's 'checks' attribute."""

    fit: str = option(help="fit file (from valuedyn fit)", positional=True)
    seed: int = option(0, help="random seed of the randomised PIT")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Compare fits of the same data: PSIS-LOO, stacking weights, leave-future-out."""

    fits: tuple[str, ...] = option(help="two or more fit files of the same data", positional=True, nargs="+")
    lfo: bool = option(True, help="also refit each model on the early updates and score the held-out future")
    lfo_fraction: float = option(0.75, help="share of the window the leave-future-out refit sees")
    out: str | None = option(None, help="write the comparison table as JSON here")
    force: bool = option(False, help="replace an existing --out")
    progress: bool = option(True, help="progress bar on stderr while refitting")


@dataclasses.dataclass(frozen=True)
class SBCConfig:
    """Simulation-based calibration: prior draw -> simulated data -> fit -> rank of the truth."""

    model: str = option(help="registered model name")
    out: str = option(help="netCDF file for the ranks and the uniformity test")
    kind: str = option("unlock", help="behaviour kind the data imitate", choices=("unlock", "event", "action", "diversity"))
    observation: str = option("auto", help="observation model", choices=OBSERVATIONS)
    pooling: str = option("complete", help="pooling across simulated seeds", choices=POOLING_CHOICES)
    simulations: int = option(20, help="number of simulated data sets")
    n_seeds: int = option(1, help="simulated seeds per data set", static=True)
    n_updates: int = option(40, help="updates per simulated seed", static=True)
    exposure: float = option(50.0, help="finished episodes (or steps) per update")
    chains: int = option(2, help="NUTS chains per fit", static=True)
    draws: int = option(200, help="posterior draws per chain", static=True)
    warmup: int = option(200, help="warmup iterations per chain", static=True)
    thin_to: int = option(99, help="posterior draws kept for each rank (L; ranks take L+1 values)")
    bins: int = option(10, help="histogram bins of the chi-square uniformity test")
    seed: int = option(0, help="random seed")
    max_tree_depth: int = option(8, help="NUTS maximum tree depth", static=True)
    target_accept: float = option(0.8, help="NUTS target acceptance probability", static=True)
    dense_mass: bool = option(True, help="dense mass matrix", static=True)
    force: bool = option(False, help="replace an existing --out")
    progress: bool = option(True, help="progress bar on stderr")


def run_fit(config: FitConfig) -> int:
    from valuedyn._io import refuse_overwrite

    refuse_overwrite(config.out, config.force)  # before JAX starts (seconds): a mistyped --out fails at once
    prepare_jax(config.chains)
    from valuedyn.fitting._fit import fit_trajectory
    from valuedyn.fitting._store import fit_attrs, load_fit

    path = fit_trajectory(config)
    if config.strict and not fit_attrs(load_fit(path)).get("trustworthy", 0):
        print(f"valuedyn fit: {path} misses the diagnostic thresholds (--strict)", file=sys.stderr)
        return 1
    return 0


def run_check(config: CheckConfig) -> int:
    prepare_jax()
    from valuedyn.fitting._check import check_fit, format_checks

    checks = check_fit(config.fit, seed=config.seed)
    print(format_checks(checks))
    return 0


def run_compare(config: CompareConfig) -> int:
    prepare_jax()
    from valuedyn.fitting._compare import compare_fits

    result = compare_fits(
        list(config.fits), lfo=config.lfo, lfo_fraction=config.lfo_fraction, out=config.out,
        force=config.force, progress=config.progress,
    )
    print(result.format())
    return 0


def run_sbc(config: SBCConfig) -> int:
    prepare_jax(config.chains)
    from valuedyn.fitting._sbc import format_sbc, run_sbc_config

    result = run_sbc_config(config)
    print(format_sbc(result))
    return 0
