"""The fitting room's vocabulary: every command's config and the sampler settings of a
plan, declared once, JAX-free.

Every sub-room imports from here and this module imports nothing of the fitting room
(``valuedyn.models`` only inside :meth:`FitSettings.tree_depth`), so a setting is named
in one place and no import flows upward to reach it: the command-line modules
(``pipeline/_cli.py`` and siblings) hold only what runs a command, and library code that
needs a config class (leave-future-out reads a fit's stored :class:`FitConfig`, the
report's conditions fit builds a :class:`ConditionsConfig`) finds it here.
"""

from __future__ import annotations

import dataclasses

from valuedyn._config import option
from valuedyn._errors import ValuedynError

#: observation models a fit can name (``auto``: the behaviour family's default)
OBSERVATION_MODEL_NAMES = ("binomial", "betabinomial", "poisson", "negbin", "lognormal")
OBSERVATIONS = ("auto",) + OBSERVATION_MODEL_NAMES
#: pooling of parameters across seeds
POOLINGS = ("hierarchical", "complete", "none")
#: coordinates of hierarchical pooling: ``auto`` chooses the centring weight per parameter
#: and seed from the MAP (see :mod:`valuedyn.fitting.inference._model`); the others fix it at 0 or 1.
PARAMETERIZATIONS = ("auto", "noncentred", "centred")


def validate_sampler_config(config) -> None:
    if config.chains < 1 or config.draws < 1 or config.warmup < 1:
        raise ValuedynError(
            f"--chains, --draws and --warmup must be >= 1; received chains={config.chains}, draws={config.draws}, "
            f"warmup={config.warmup}"
        )
    if not 0.5 <= config.target_accept < 1.0:
        raise ValuedynError(f"--target-accept must lie in [0.5, 1); received {config.target_accept}")
    if not 1 <= config.max_tree_depth <= 15:
        raise ValuedynError(f"--max-tree-depth must lie in 1..15; received {config.max_tree_depth}")
    if getattr(config, "min_draws", 0) < 0:
        raise ValuedynError(f"--min-draws must be >= 0 (0 = always run --draws); received {config.min_draws}")
    if getattr(config, "saturated_draws", 0) < 0:
        raise ValuedynError(f"--saturated-draws must be >= 0 (0 = never cut); received {config.saturated_draws}")
    if config.pooling not in POOLINGS:
        raise ValuedynError(f"--pooling must be one of {', '.join(POOLINGS)}; received {config.pooling!r}")
    if config.parameterization not in PARAMETERIZATIONS:
        raise ValuedynError(
            f"--parameterization must be one of {', '.join(PARAMETERIZATIONS)}; received {config.parameterization!r}"
        )
    if config.observation not in ("auto",) + OBSERVATION_MODEL_NAMES:
        raise ValuedynError(
            f"--observation must be auto or one of {', '.join(OBSERVATION_MODEL_NAMES)}; received {config.observation!r}"
        )


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
    pooling: str = option("hierarchical", help="pooling of parameters across seeds", choices=POOLINGS)
    observation: str = option("auto", help="observation model (auto: betabinomial / negbin / lognormal by behaviour kind: "
                              "the overdispersed models nest the plain ones at dispersion 0, so the fitted dispersion "
                              "says how far the data scatter beyond Binomial / Poisson noise; binomial or poisson "
                              "fix it at 0)", choices=OBSERVATIONS)
    parameterization: str = option(
        "auto", help="coordinates of the hierarchical pooling: auto centres each parameter and seed as far as its "
        "data pin it down (chosen at the MAP); noncentred / centred fix that for all", choices=PARAMETERIZATIONS,
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
    pooling: str = option("complete", help="pooling across simulated seeds", choices=POOLINGS)
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


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The sampler settings every fit of a plan shares (FitConfig's other fields keep
    their defaults). ``rng_seed`` is FitConfig's ``seed`` (the sampler's random seed).

    The defaults are ``valuedyn report``'s and ``fit-batch``'s: 4 chains x (500 + up to 1000),
    tree depth 8, target acceptance 0.99, and a fit whose warmup saturates the tree depth
    runs 100 draws per chain instead of 1000 (``saturated_draws``: it cannot pass the gate,
    and each of its draws costs the whole cap; 200 until 2026-12-02, when the report's five
    cut overshoot fits were 300 of its 940 fit-seconds and the 10-minute target was met
    by 4 s). Measured on the shipped run (8 seeds x 16
    updates; beta-binomial for unlocks, negbin for event totals, lognormal for diversity):
    13 of the report's 14 logistic_onset / stagewise / stagewise3 fits passed the gate in
    each of two runs, at 31-213 leapfrog steps per iteration; the miss, at the gate's edge,
    changed between them (one divergence in 4000 draws; R-hat 1.010 with bulk ESS 402); at
    FIT_SEMANTICS 4 all 14 passed (R-hat <= 1.006, bulk ESS >= 498). The former defaults (2 x (300 + 300), depth 6, target
    0.95) passed none of them: NUTS needs trees deeper than 6 on these posteriors, and at
    target 0.95 stagewise3 on unlock:collect_wood had 30 divergences. overshoot on this
    rise-only run saturates even depth 10 (step size 0.001-0.002, 275 s per fit): its
    optimum and excess trade along a curved ridge the data do not cut, which is why such a
    fit's draws are cut. The cost: the report's fit step took 999-1014 s on 2 idle cores
    with cold caches, 841 s (whole report 887 s) since one gradient kernel serves the MAP,
    the Hessian and the chains' starts (the whole report at the former defaults 466-506 s);
    627 s (784 s) once NUTS walked a flat vector, 548 s (677 s) with ``min_draws`` 500: a
    fit stops after 500 draws per chain (then every 250) once they pass the gate with bulk
    and tail ESS >= 500; 13 of the 14 shape fits stopped at 500 or 750 and all 14 passed;
    491 s (547 s, from a fresh clone) once each fit file was read once per process and
    written once, uncompressed, and a saturated fit ran 100 draws per chain: all 14 passed."""

    chains: int = 4
    draws: int = 1000
    warmup: int = 500
    rng_seed: int = 0
    max_tree_depth: int = 8
    #: tree-depth cap of the models without a closed form (each leapfrog step is an ODE
    #: solve and its adjoint, so the cap bounds such a fit's time); at most max_tree_depth
    ode_max_tree_depth: int = 6
    target_accept: float = 0.99
    #: draws per chain when the warmup saturates the tree depth (FitConfig's saturated_draws; 0 = never cut)
    saturated_draws: int = 100
    #: draws per chain after which sampling stops once the gate passes with a margin
    #: (FitConfig's min_draws; 0 = always run ``draws``)
    min_draws: int = 500

    @classmethod
    def from_config(cls, config) -> "FitSettings":
        """The settings of a command's config (``valuedyn report`` / ``fit-batch``: the
        fields of the same names; ``rng_seed`` is FitConfig's ``seed``)."""
        return cls(**{field.name: getattr(config, field.name) for field in dataclasses.fields(cls)})

    def tree_depth(self, model: str) -> int:
        """The tree-depth cap of a fit of ``model``."""
        from valuedyn.models import get_model

        if get_model(model).closed_form:
            return self.max_tree_depth
        return min(self.max_tree_depth, self.ode_max_tree_depth)

    def validate(self) -> None:
        """One-line :class:`ValuedynError` for a setting no fit could run with (the
        checks of ``valuedyn fit`` itself, made before any fit starts)."""
        validate_sampler_config(self.fit_config(trajectory="-", behaviour="-", model="logistic_onset"))
        if not 1 <= self.ode_max_tree_depth <= 15:
            raise ValuedynError(f"--ode-max-tree-depth must lie in 1..15; received {self.ode_max_tree_depth}")

    def fit_config(self, *, trajectory, behaviour: str, model: str, out="unused.nc", observation: str = "auto",
                   seeds=()) -> FitConfig:
        """The :class:`FitConfig` of one fit at these settings (the tree depth is
        :meth:`tree_depth`'s for ``model``; other fields at FitConfig's defaults)."""
        return FitConfig(
            trajectory=str(trajectory), behaviour=behaviour, model=model, out=str(out),
            observation=observation,
            seeds=tuple(seeds), chains=self.chains, draws=self.draws, warmup=self.warmup, seed=self.rng_seed,
            max_tree_depth=self.tree_depth(model), target_accept=self.target_accept,
            saturated_draws=self.saturated_draws, min_draws=self.min_draws,
            force=True,  # a stale file under a cache name is replaced, never trusted
            progress=True,
        )


_PLAN = FitSettings()  # the plan's defaults (valuedyn report, fit-batch)


@dataclasses.dataclass(frozen=True)
class FitBatchConfig:
    """Fit every (trajectory, behaviour, model) of a plan, check each fit and compare the
    models of each behaviour. Writes into --fits-dir: the fit files, compare__*.json,
    index.json (the fit cache: a fit whose trajectory bytes and settings are unchanged is
    reused) and batch.json (what became of every fit). Defaults match `valuedyn report`,
    so a report pointed at the same --fits-dir reuses these fits.

    Example (on a Dask cluster): valuedyn fit-batch run.nc --fits-dir fits --scheduler tcp://10.0.0.5:8786"""

    trajectories: tuple[str, ...] = option(help="trajectory files (from valuedyn train)", positional=True,
                                           metavar="TRAJECTORY", nargs="+")
    fits_dir: str = option("fits", "folder of the fit files and their index")
    behaviours: tuple[str, ...] = option((), "behaviours KIND:NAME to fit (default: plant motif + learned achievements)")
    models: tuple[str, ...] = option((), "models to fit (default: every registered model that applies)")
    max_behaviours: int = option(4, "at most this many behaviours per trajectory (0 = all)")
    learned_threshold: float = option(0.5, "unlock rate that counts as learned (default behaviours)")
    seeds: tuple[int, ...] = option((), "seed labels to fit (default: the first --max-seeds)")
    max_seeds: int = option(0, "without --seeds, fit the first this many seeds (0 = all)")
    chains: int = option(_PLAN.chains, "NUTS chains per fit")
    draws: int = option(_PLAN.draws, "NUTS draws per chain")
    warmup: int = option(_PLAN.warmup, "NUTS warmup steps per chain")
    rng_seed: int = option(_PLAN.rng_seed, "random seed of the fits")
    max_tree_depth: int = option(_PLAN.max_tree_depth, "NUTS maximum tree depth of the fits (1..15)")
    ode_max_tree_depth: int = option(_PLAN.ode_max_tree_depth, "NUTS maximum tree depth of the models without a closed form (1..15)")
    target_accept: float = option(_PLAN.target_accept, "NUTS target acceptance probability of the fits")
    min_draws: int = option(_PLAN.min_draws, "draws per chain after which a fit stops sampling once it passes the "
                            "diagnostics gate with a margin (0 = always run --draws; see valuedyn fit --help)")
    saturated_draws: int = option(_PLAN.saturated_draws, "draws per chain of a fit whose warmup saturated the tree depth "
                                  "(0 = never cut; see valuedyn fit --help)")
    workers: int = option(0, "local fit processes (0: one per core, at most 4; 1: fit in this process)")
    scheduler: str | None = option(None, "address of a Dask distributed scheduler (tcp://HOST:PORT): run the fits "
                                         "on its workers instead of local processes")
    time_budget: int = option(0, "seconds for the fits: fits that would end past it are not started (0 = no limit)")
    lfo: bool = option(False, "also score leave-future-out (refits every model on the early updates)")
    choose_observation: bool = option(False, "for each unlock / action behaviour, fit its most flexible closed-form model with "
                                             "the binomial and the beta-binomial first and fit every model with the one the "
                                             "data demand (coverage of the 90-percent interval or PSIS-LOO; recorded in the fit "
                                             "files and batch.json). Without it every unlock / action fit uses the "
                                             "beta-binomial (it nests the binomial), event totals the negative binomial (it "
                                             "nests the Poisson), diversity the lognormal")


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
        "it down (chosen at the MAP); noncentred / centred fix that for all", choices=PARAMETERIZATIONS,
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
