"""The fitting room's vocabulary, declared once and JAX-free: every sampler / fit option,
its defaults per use side by side with the reason for each difference, and every
command's config.

Each option is declared once in :data:`OPTIONS` (the help text of its flag, its choices);
a command's config takes its fields from there with :func:`declared`, so ``valuedyn fit``,
``check``, ``compare``, ``sbc``, ``fit-batch``, ``conditions`` and ``report`` spell an option
the same way, and the sampler options' defaults come from the row of the command's use
(:data:`FIT`, :data:`REPORT`, :data:`CONDITIONS`, :data:`SBC`):

{DEFAULTS_TABLE}

Why a use differs from a single fit (and why a single fit's target is what it is):

{DEFAULTS_REASONS}

This module sits below the sub-rooms: any of them may import it and it imports nothing of
the fitting room (``valuedyn.models`` only inside :meth:`FitSettings.tree_depth`), so the
command-line modules (``pipeline/*_cli.py``) hold only what runs a command, and library
code that needs a config (leave-future-out reads a fit's stored :class:`FitConfig`, the
report's conditions fit builds a :class:`ConditionsConfig`) finds it here without an
upward import. An option added to any command (issues beside 34 add structured
deviations, timing records, importers) is declared here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from valuedyn._config import option
from valuedyn._errors import ValuedynError

# ---------------------------------------------------------------- the vocabulary

#: observation models a fit can name (``auto``: the behaviour family's default); the keys of
#: :data:`valuedyn.fitting.inference._observation.OBSERVATION_MODELS`, in their order
OBSERVATION_MODEL_NAMES = ("binomial", "betabinomial", "poisson", "negbin", "lognormal")
OBSERVATIONS = ("auto",) + OBSERVATION_MODEL_NAMES
#: pooling of parameters across seeds (see :mod:`valuedyn.fitting.inference._model`)
POOLINGS = ("hierarchical", "complete", "none")
#: coordinates of hierarchical pooling: ``auto`` chooses the centring weight per parameter
#: and seed from the MAP (see :mod:`valuedyn.fitting.inference._model`); the others fix it at 0 or 1.
PARAMETERIZATIONS = ("auto", "noncentred", "centred")
#: behaviour kinds (``valuedyn.models.BEHAVIOUR_KINDS``, which imports JAX; a test keeps them equal)
BEHAVIOUR_KINDS = ("unlock", "event", "action", "diversity", "memory")
#: the other face of the project's question, fast diversification and slow minimisation: the
#: diversity of what the agent achieves and of what it does, fitted in this order for every
#: trajectory by default (on top of --max-behaviours, which caps the plant motif plus learned
#: achievements)
DIVERSITY_BEHAVIOURS = ("diversity:events", "diversity:actions")
#: behaviours per trajectory by default (--max-behaviours): the plant motif's two
#: (event:place_plant, unlock:place_plant), learned achievements after them. 2 and not 4: on the
#: campaign's 400-update runs nearly every behaviour's smooth fits fail their predictive checks,
#: so each behaviour costs its models twice (smooth, then with the OU deviation), and a default
#: report on two conditions with 4 behaviours each ran 40 smooth fits before its deviation stage
MAX_BEHAVIOURS = 2
#: structured deviations of each seed's curve from the mechanism (see
#: :mod:`valuedyn.fitting.inference._deviation`): none, or an Ornstein-Uhlenbeck process on the link scale
DEVIATIONS = ("none", "ou")


# ---------------------------------------------------------------- options, declared once
@dataclasses.dataclass(frozen=True)
class Option:
    """How one option reads on every command that has it. ``static``: it fixes shapes
    (changing it recompiles); documentation, as in :func:`valuedyn._config.option`."""

    help: str
    choices: tuple | None = None
    metavar: str | None = None
    static: bool = False
    aliases: tuple[str, ...] = ()


OPTIONS: dict[str, Option] = {
    # the data a fit sees
    "model": Option("registered model name (valuedyn models lists them)"),
    "behaviour": Option("KIND:NAME with KIND unlock, event, action or diversity (e.g. event:place_plant)",
                        aliases=("--behavior",)),
    "behaviours": Option("behaviours KIND:NAME to fit (default: plant motif + learned achievements)"),
    "models": Option("models to fit (default: every registered model that applies)"),
    "learned_threshold": Option("unlock rate that counts as learned (default behaviours)"),
    "seeds": Option("seed labels to fit in every trajectory file (default: all)"),
    "max_seeds": Option("without --seeds, fit the first this many seeds of each trajectory file (0 = all)"),
    "updates": Option("FIRST:LAST inclusive update window (default: all)", metavar="FIRST:LAST"),
    "blocks": Option("aggregate consecutive updates into blocks (counts and exposures summed, each block's likelihood "
                     "integrating the level over its span), 1 update wide at the start and growing geometrically: "
                     "auto = at most 64 blocks, only for a run of more updates; none = every update its own cell; "
                     "N = at most N blocks", metavar="auto|none|N"),
    # the likelihood and its coordinates
    "observation": Option("observation model (auto: betabinomial / negbin / lognormal by behaviour kind: the "
                          "overdispersed models nest the plain ones at dispersion 0, so the fitted dispersion says how "
                          "far the data scatter beyond Binomial / Poisson noise; binomial or poisson fix it at 0)",
                          choices=OBSERVATIONS),
    "pooling": Option("pooling of parameters across seeds", choices=POOLINGS),
    "parameterization": Option("coordinates of the hierarchical pooling: auto centres each parameter and seed as far "
                               "as its data pin it down (chosen at the MAP); noncentred / centred fix that for all",
                               choices=PARAMETERIZATIONS, static=True),
    "deviation": Option("structured deviation of each seed's curve from the model's mechanism, on the observation's "
                        "link scale (logit / log): none, or ou (an Ornstein-Uhlenbeck process whose size and timescale "
                        "are fitted; its timescale lies between 3 updates and the shorter of a quarter of the window "
                        "and 32 updates, so it takes neither the update-to-update noise nor the trend). Fits of one "
                        "behaviour are compared only "
                        "under the same deviation", choices=DEVIATIONS, static=True),
    # the sampler
    "chains": Option("NUTS chains (run in parallel on the CPU cores)", static=True),
    "warmup": Option("warmup (adaptation) iterations per chain", static=True),
    "draws": Option("posterior draws per chain (the most, where --min-draws stops sampling early)", static=True),
    "min_draws": Option("stop sampling once this many draws per chain (then every half of it) pass the diagnostics "
                        "gate with a margin: R-hat <= 1.01, bulk and tail ESS >= 500, no divergence; the fit file then "
                        "holds fewer than --draws (0 = always run --draws)", static=True),
    "saturated_draws": Option("draws per chain when at least 90 percent of the transitions of the warmup's last stage, "
                              "or of a window of 100+ iterations (the warmup then stops there), hit --max-tree-depth "
                              "(NUTS then crawls along a ridge of parameters the data do not pin and more draws would "
                              "not pass the gate; the fit is marked untrustworthy and says so); 0 = never cut",
                              static=True),
    "max_tree_depth": Option("NUTS maximum tree depth (1..15; hits are reported in each fit's diagnostics)",
                             static=True),
    "ode_max_tree_depth": Option("NUTS maximum tree depth of the models without a closed form (1..15; at most "
                                 "--max-tree-depth)", static=True),
    "target_accept": Option("NUTS target acceptance probability", static=True),
    "dense_mass": Option("adapt a dense mass matrix (started from the Laplace approximation at the MAP)", static=True),
    "seed": Option("random seed of the sampler"),
    # many fits at once
    "workers": Option("local fit processes (0: one per core, at most 4; 1: fit in this process)"),
    "scheduler": Option("address of a Dask distributed scheduler (tcp://HOST:PORT): run the fits on its workers "
                        "instead of local processes"),
    "lfo": Option("also score leave-future-out: refit every model on the early updates and score the held-out "
                  "future (doubles the fit time)"),
    "choose_deviation": Option("for each behaviour whose fits fail their predictive checks, fit every model again with the "
                               "Ornstein-Uhlenbeck deviation (--deviation ou) and keep, for all its models, the set that "
                               "fails fewer checks (the choice and its evidence are recorded in the fit files and the report)"),
    "refit_remedy": Option("refit once, automatically, every fit whose verdict is 'sampler failed' and names a "
                           "remedy (a higher target acceptance, a deeper tree, more draws and warmup, or all chains "
                           "restarted from the best mode); both attempts are recorded in the fit file "
                           "(--no-refit-remedy: keep the first attempt)"),
    "initial_points": Option("JSON object: posterior variable -> one value per chain (a list per seed for a per-seed "
                             "parameter), in the parameter's units: the MAP search and every chain start there "
                             "instead of around the prior median (the automatic refit of a fit whose chains are stuck "
                             "in modes of lower density writes it, from draws of the best mode)"),
    # how a command writes and shows
    "force": Option("replace an existing --out"),
    "progress": Option("progress bar on stderr"),
    "verbose": Option("also print where the fit's time went (imports and reading, compiling, MAP and Laplace, warmup, "
                      "sampling, outputs, diagnostics, writing; stored in the fit file's 'timings' either way)"),
}


# ---------------------------------------------------------------- blocks of updates
#: ``--blocks`` values besides an integer cap
BLOCK_CHOICES = ("auto", "none")
#: the cap ``--blocks auto`` uses: a run of more updates is fitted in at most this many blocks
#: (the measurement behind the number: :mod:`valuedyn.fitting.inference._select`, ``aggregate_blocks``)
BLOCKS_AUTO_CAP = 64


def blocks_cap(value) -> int | None:
    """The largest number of blocks ``--blocks`` allows (None: no aggregation). ``auto`` ->
    :data:`BLOCKS_AUTO_CAP`, ``none`` -> None, an integer >= 2 -> itself; anything else is a
    one-line :class:`ValuedynError`."""
    text = str(value).strip().lower()
    if text == "none":
        return None
    if text == "auto":
        return BLOCKS_AUTO_CAP
    try:
        cap = int(text)
    except ValueError:
        cap = 0
    if cap < 2:
        raise ValuedynError(f"--blocks must be auto, none or an integer >= 2 (the most blocks); received {value!r}")
    return cap


# ---------------------------------------------------------------- the remedy ladder
#: target acceptance rungs a "sampler failed" remedy climbs (divergences): each remedy takes the
#: next rung above the fit's own value; at the top there is no such remedy left
TARGET_ACCEPT_LADDER = (0.95, 0.99, 0.995, 0.999)
#: tree-depth increase of a remedy for transitions cut at the cap (each +1 doubles the leapfrog steps per draw)
TREE_DEPTH_STEP = 2
#: the deepest tree a remedy asks for (validate_sampler_config allows up to 15)
TREE_DEPTH_CAP = 12
#: the bulk / tail ESS the gate asks for (valuedyn.fitting.inference._diagnostics.ESS_MIN; a test keeps them equal)
REMEDY_ESS_TARGET = 400
#: draws and warmup a remedy scales by at least this factor (a smaller step rarely crosses the gate)
REMEDY_MIN_FACTOR = 1.5
#: and by at most this factor: a fit that needs more is far from the gate (one refit of 4x the
#: draws costs 4x the time; a second remedy is never run automatically)
REMEDY_MAX_FACTOR = 4.0
#: the most draws / warmup iterations per chain a remedy asks for
REMEDY_DRAWS_CAP = 4000
REMEDY_WARMUP_CAP = 2000


# ---------------------------------------------------------------- defaults per use
@dataclasses.dataclass(frozen=True)
class Defaults:
    """The sampler options' defaults of one use. ``why``: option -> the reason for its
    value, for every value that differs from a single fit's (:data:`FIT`) and wherever a
    single fit's own value was measured."""

    use: str
    chains: int
    warmup: int
    draws: int
    min_draws: int
    saturated_draws: int
    max_tree_depth: int
    #: the cap of the models without a closed form (at most ``max_tree_depth``; equal: no separate cap)
    ode_max_tree_depth: int
    target_accept: float
    dense_mass: bool
    pooling: str
    observation: str
    parameterization: str
    seed: int
    deviation: str = "none"
    why: Mapping[str, str] = dataclasses.field(default_factory=dict)


#: ``valuedyn fit``: one fit, whatever it costs
FIT = Defaults(
    use="fit", chains=4, warmup=1000, draws=1000, min_draws=500, saturated_draws=0, max_tree_depth=10,
    ode_max_tree_depth=10, target_accept=0.97, dense_mass=True, pooling="hierarchical", observation="auto",
    parameterization="auto", seed=0,
    why={
        "target_accept": "on the core overshoot case, 4 chains x (1000 + 1000), 0.9 left 48 divergences; 0.95 left 1 "
                         "in 4 of 5 sampler seeds, each in a tail of a population scale; 0.97 none in 5 seeds, at 31-58 "
                         "leapfrog steps per iteration instead of 30",
    },
)

#: ``valuedyn report`` and ``fit-batch`` (:class:`FitSettings`): tens of fits in minutes
REPORT = dataclasses.replace(
    FIT, use="report", warmup=500, max_tree_depth=8, ode_max_tree_depth=6, target_accept=0.99, saturated_draws=100,
    why={
        "warmup": "4 x (500 + up to 1000) passes the gate on all 14 closed-form fits of the shipped run, and the "
                  "whole report keeps under 10 minutes on 2 cores",
        "max_tree_depth": "at 6 none of the report's 14 closed-form fits of the shipped run passed the gate, 8 serves "
                          "them; a fit that saturates even 10 is cut instead (--saturated-draws)",
        "ode_max_tree_depth": "at most 63 leapfrog steps per draw, each an ODE solve and its adjoint",
        "target_accept": "at 0.95 stagewise3 on unlock:collect_wood had 30 divergences; at 0.99 (and depth 8) all 14 "
                         "closed-form fits of the shipped run pass the gate",
        "saturated_draws": "such a fit cannot pass the gate and each of its draws costs the whole cap (at 200 the "
                           "report's five cut overshoot fits took 300 of its 940 fit-seconds)",
    },
)

#: ``valuedyn conditions``: one hierarchical fit across conditions of training. The report's
#: conditions fits take chains, warmup, draws, seed and max_tree_depth from :data:`REPORT`
#: (:func:`valuedyn.fitting.pipeline._cache.fit_conditions_cached`) and the rest from here.
CONDITIONS = dataclasses.replace(
    FIT, use="conditions", target_accept=0.95, min_draws=0, saturated_draws=0,
    why={
        "target_accept": "on simulated 2-condition overshoot data 0.9 gave 1, 7 and 11 divergences per 2000 draws, "
                         "0.95 gave 0, 0, 1 and 5 per 2000-4000 draws",
        "min_draws": "not an option of a conditions fit: its sampling runs every draw",
        "saturated_draws": "not an option of a conditions fit: its draws are never cut",
        "pooling": "seeds pool hierarchically within each condition, with one between-seed scale shared by all",
    },
)

#: ``valuedyn sbc``: simulation-based calibration of the sampler the fits run
SBC = dataclasses.replace(
    REPORT, use="sbc",
    why={name: "the report's: SBC calibrates the sampler at the settings the fits use"
         for name in ("chains", "warmup", "draws", "min_draws", "saturated_draws", "max_tree_depth", "ode_max_tree_depth",
                      "target_accept", "pooling")},
)

#: the uses side by side, in the order of the table
USES = (FIT, REPORT, CONDITIONS, SBC)
#: the sampler options a use's defaults hold, in the order of the table
SAMPLER_OPTIONS = tuple(f.name for f in dataclasses.fields(Defaults) if f.name not in ("use", "why"))


def defaults_table() -> str:
    """The defaults of every use side by side (the module docstring shows it)."""
    width = max(map(len, SAMPLER_OPTIONS)) + 2
    header = "    " + "option".ljust(width) + "".join(u.use.ljust(14) for u in USES)
    rows = [header, "    " + "-" * (len(header) - 4)]
    for name in SAMPLER_OPTIONS:
        rows.append("    " + name.ljust(width) + "".join(str(getattr(u, name)).ljust(14) for u in USES))
    return "\n".join(row.rstrip() for row in rows)


def defaults_reasons() -> str:
    """Every use's reasons, one line per option (the module docstring shows them)."""
    lines = []
    for use in USES:
        by_reason: dict[str, list[str]] = {}
        for name, reason in use.why.items():
            by_reason.setdefault(reason, []).append(f"{name} = {getattr(use, name)}")
        lines += [f"- {use.use} {', '.join(values)}: {reason}" for reason, values in by_reason.items()]
    return "\n".join(lines)


__doc__ = __doc__.replace("{DEFAULTS_TABLE}", defaults_table()).replace("{DEFAULTS_REASONS}", defaults_reasons())


_FROM_USE = object()


def declared(name: str, default: Any = _FROM_USE, *, use: Defaults | None = None, option_name: str | None = None,
             help: str | None = None, positional: bool = False, nargs: str | None = None) -> Any:
    """The config field of option ``option_name`` (default: ``name``) as :data:`OPTIONS`
    declares it: its help text (plus ``help``, a command's own note), choices and flag
    spellings. The default is ``default``, or ``use``'s for a sampler option (with the
    reason for it appended to the help text)."""
    spec = OPTIONS[option_name or name]
    text = spec.help + (f"; {help}" if help else "")
    if default is _FROM_USE:
        if use is None:
            raise TypeError(f"option {name!r} needs a default or a use")
        default = getattr(use, option_name or name)
        reason = use.why.get(option_name or name)
        if reason:
            text += f" ({default}: {reason})"
    return option(default, text, choices=spec.choices, metavar=spec.metavar, static=spec.static,
                  aliases=spec.aliases, positional=positional, nargs=nargs)


def validate_sampler_config(config) -> None:
    """One-line :class:`ValuedynError` for a sampler option no fit can run with; checks
    the options ``config`` has (any command's config, or :class:`FitSettings`)."""
    has = lambda name: hasattr(config, name)  # noqa: E731
    if all(map(has, ("chains", "draws", "warmup"))) and (config.chains < 1 or config.draws < 1 or config.warmup < 1):
        raise ValuedynError(
            f"--chains, --draws and --warmup must be >= 1; received chains={config.chains}, draws={config.draws}, "
            f"warmup={config.warmup}"
        )
    if has("target_accept") and not 0.5 <= config.target_accept < 1.0:
        raise ValuedynError(f"--target-accept must lie in [0.5, 1); received {config.target_accept}")
    for name in ("max_tree_depth", "ode_max_tree_depth"):
        if has(name) and not 1 <= getattr(config, name) <= 15:
            raise ValuedynError(f"--{name.replace('_', '-')} must lie in 1..15; received {getattr(config, name)}")
    if has("min_draws") and config.min_draws < 0:
        raise ValuedynError(f"--min-draws must be >= 0 (0 = always run --draws); received {config.min_draws}")
    if has("saturated_draws") and config.saturated_draws < 0:
        raise ValuedynError(f"--saturated-draws must be >= 0 (0 = never cut); received {config.saturated_draws}")
    if has("blocks"):
        blocks_cap(config.blocks)
    if has("pooling") and config.pooling not in POOLINGS:
        raise ValuedynError(f"--pooling must be one of {', '.join(POOLINGS)}; received {config.pooling!r}")
    if has("parameterization") and config.parameterization not in PARAMETERIZATIONS:
        raise ValuedynError(
            f"--parameterization must be one of {', '.join(PARAMETERIZATIONS)}; received {config.parameterization!r}"
        )
    if has("deviation") and config.deviation not in DEVIATIONS:
        raise ValuedynError(f"--deviation must be one of {', '.join(DEVIATIONS)}; received {config.deviation!r}")
    if has("observation") and config.observation not in OBSERVATIONS:
        raise ValuedynError(
            f"--observation must be auto or one of {', '.join(OBSERVATION_MODEL_NAMES)}; received {config.observation!r}"
        )


# ---------------------------------------------------------------- one fit and its judges
@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Fit a dynamical model to one behaviour of a trajectory file with NUTS.

    Example: valuedyn fit run.nc --model overshoot --behaviour event:place_plant --out fit.nc
    """

    trajectory: str = option(help="trajectory file (netCDF, from valuedyn train)", positional=True)
    model: str = declared("model", dataclasses.MISSING)
    behaviour: str = declared("behaviour", dataclasses.MISSING)
    out: str = option(help="fit file to write (ArviZ InferenceData netCDF)")
    seeds: tuple[int, ...] = declared("seeds", ())
    updates: str | None = declared("updates", None)
    blocks: str = declared("blocks", "auto")
    pooling: str = declared("pooling", use=FIT)
    observation: str = declared("observation", use=FIT)
    deviation: str = declared("deviation", use=FIT)
    parameterization: str = declared("parameterization", use=FIT)
    chains: int = declared("chains", use=FIT)
    draws: int = declared("draws", use=FIT)
    min_draws: int = declared("min_draws", use=FIT)
    warmup: int = declared("warmup", use=FIT)
    seed: int = declared("seed", use=FIT)
    max_tree_depth: int = declared("max_tree_depth", use=FIT)
    target_accept: float = declared("target_accept", use=FIT)
    dense_mass: bool = declared("dense_mass", use=FIT)
    saturated_draws: int = declared("saturated_draws", use=FIT)
    initial_points: str | None = declared("initial_points", None)
    strict: bool = option(False, help="exit 1 when the fit misses the diagnostic thresholds")
    force: bool = declared("force", False)
    progress: bool = declared("progress", True)
    verbose: bool = declared("verbose", False)


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    """Posterior predictive checks of a fit file; stores them in the file's 'checks' attribute."""

    fit: str = option(help="fit file (from valuedyn fit)", positional=True)
    seed: int = option(0, help="random seed of the randomised PIT")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Compare fits of the same data: PSIS-LOO, stacking weights, leave-future-out."""

    fits: tuple[str, ...] = option(help="two or more fit files of the same data", positional=True, nargs="+")
    lfo: bool = declared("lfo", True)
    lfo_fraction: float = option(0.75, help="share of the window the leave-future-out refit sees")
    out: str | None = option(None, help="write the comparison table as JSON here")
    force: bool = declared("force", False)
    progress: bool = declared("progress", True)


@dataclasses.dataclass(frozen=True)
class SBCConfig:
    """Simulation-based calibration: prior draw -> simulated data -> fit -> rank of the truth.

    Each simulated data set is fitted at the sampler settings of the report's fits (the sbc
    column of valuedyn.fitting.settings), so the calibration is of the sampler as the fits
    run it (until issue 34 sbc ran 2 x (200 + 200), target 0.8, complete pooling: a setting
    no fit used)."""

    model: str = declared("model", dataclasses.MISSING)
    out: str = option(help="netCDF file for the ranks and the uniformity test")
    kind: str = option("unlock", help="behaviour kind the data imitate", choices=BEHAVIOUR_KINDS)
    observation: str = declared("observation", use=SBC)
    pooling: str = declared("pooling", use=SBC)
    simulations: int = option(20, help="number of simulated data sets")
    n_seeds: int = option(4, help="simulated seeds per data set (several: the hierarchical pooling the fits use pools "
                                  "seeds; the shipped run has 8, the CPU campaign 4)", static=True)
    n_updates: int = option(40, help="updates per simulated seed", static=True)
    exposure: float = option(50.0, help="finished episodes (or steps) per update")
    chains: int = declared("chains", use=SBC)
    draws: int = declared("draws", use=SBC)
    min_draws: int = declared("min_draws", use=SBC)
    warmup: int = declared("warmup", use=SBC)
    thin_to: int = option(99, help="posterior draws kept for each rank (L; ranks take L+1 values)")
    bins: int = option(10, help="histogram bins of the chi-square uniformity test")
    seed: int = declared("seed", use=SBC, help="also of the prior draws")
    max_tree_depth: int = declared("max_tree_depth", use=SBC)
    ode_max_tree_depth: int = declared("ode_max_tree_depth", use=SBC)
    target_accept: float = declared("target_accept", use=SBC)
    dense_mass: bool = declared("dense_mass", use=SBC)
    saturated_draws: int = declared("saturated_draws", use=SBC)
    force: bool = declared("force", False)
    progress: bool = declared("progress", True)


# ---------------------------------------------------------------- many fits at once
@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The sampler settings every fit of a plan shares (FitConfig's other fields keep
    their defaults). ``rng_seed`` is FitConfig's ``seed`` (the sampler's random seed).

    >>> from valuedyn.fitting import FitSettings
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)  # a look at the shapes, no conclusions
    >>> config = quick.fit_config(trajectory="run.nc", behaviour="unlock:place_plant", model="logistic_onset")
    >>> config.chains, config.draws, config.max_tree_depth == FitSettings().max_tree_depth
    (2, 60, True)

    The defaults are :data:`REPORT`'s (``valuedyn report``'s and ``fit-batch``'s): 4 chains
    x (500 + up to 1000), tree depth 8 (6 for models without a closed form), target
    acceptance 0.99, and a fit whose warmup saturates the tree depth runs 100 draws per
    chain instead of 1000 (``saturated_draws``: it cannot pass the gate, and each of its
    draws costs the whole cap; 200 until 2026-12-02, when the report's five cut overshoot
    fits were 300 of its 940 fit-seconds and the 10-minute target was met by 4 s). Measured
    on the shipped run (8 seeds x 16 updates; beta-binomial for unlocks, negbin for event
    totals, lognormal for diversity): 13 of the report's 14 logistic_onset / stagewise /
    stagewise3 fits passed the gate in each of two runs, at 31-213 leapfrog steps per
    iteration; the miss, at the gate's edge, changed between them (one divergence in 4000
    draws; R-hat 1.010 with bulk ESS 402); at FIT_SEMANTICS 4 all 14 passed (R-hat <= 1.006,
    bulk ESS >= 498). The former defaults (2 x (300 + 300), depth 6, target 0.95) passed
    none of them: NUTS needs trees deeper than 6 on these posteriors, and at target 0.95
    stagewise3 on unlock:collect_wood had 30 divergences. overshoot on this rise-only run
    saturates even depth 10 (step size 0.001-0.002, 275 s per fit): its optimum and excess
    trade along a curved ridge the data do not cut, which is why such a fit's draws are
    cut. The cost: the report's fit step took 999-1014 s on 2 idle cores with cold caches,
    841 s (whole report 887 s) since one gradient kernel serves the MAP, the Hessian and the
    chains' starts (the whole report at the former defaults 466-506 s); 627 s (784 s) once
    NUTS walked a flat vector, 548 s (677 s) with ``min_draws`` 500: a fit stops after 500
    draws per chain (then every 250) once they pass the gate with bulk and tail ESS >= 500;
    13 of the 14 shape fits stopped at 500 or 750 and all 14 passed; 491 s (547 s, from a
    fresh clone) once each fit file was read once per process and written once,
    uncompressed, and a saturated fit ran 100 draws per chain: all 14 passed."""

    chains: int = REPORT.chains
    draws: int = REPORT.draws
    warmup: int = REPORT.warmup
    rng_seed: int = REPORT.seed
    max_tree_depth: int = REPORT.max_tree_depth
    #: tree-depth cap of the models without a closed form; at most max_tree_depth
    ode_max_tree_depth: int = REPORT.ode_max_tree_depth
    target_accept: float = REPORT.target_accept
    #: draws per chain when the warmup saturates the tree depth (FitConfig's saturated_draws; 0 = never cut)
    saturated_draws: int = REPORT.saturated_draws
    #: draws per chain after which sampling stops once the gate passes with a margin
    #: (FitConfig's min_draws; 0 = always run ``draws``)
    min_draws: int = REPORT.min_draws

    @classmethod
    def from_config(cls, config) -> "FitSettings":
        """The settings of a command's config (``valuedyn report`` / ``fit-batch``: the
        fields of the same names; ``rng_seed`` is FitConfig's ``seed``)."""
        return cls(**{field.name: getattr(config, field.name) for field in dataclasses.fields(cls)})

    def tree_depth(self, model: str) -> int:
        """The tree-depth cap of a fit of ``model``."""
        from valuedyn.models import get_model

        return tree_depth_for(get_model(model), self.max_tree_depth, self.ode_max_tree_depth)

    def validate(self) -> None:
        """One-line :class:`ValuedynError` for a setting no fit could run with (the
        checks of ``valuedyn fit`` itself, made before any fit starts)."""
        validate_sampler_config(self.fit_config(trajectory="-", behaviour="-", model="logistic_onset"))
        validate_sampler_config(self)  # and the ODE models' cap

    def fit_config(self, *, trajectory, behaviour: str, model: str, out="unused.nc", observation: str = "auto",
                   seeds=(), deviation: str = "none") -> FitConfig:
        """The :class:`FitConfig` of one fit at these settings (the tree depth is
        :meth:`tree_depth`'s for ``model``; ``deviation``: the behaviour's choice, the same
        for all its models; other fields at FitConfig's defaults)."""
        return FitConfig(
            trajectory=str(trajectory), behaviour=behaviour, model=model, out=str(out),
            observation=observation, deviation=deviation,
            seeds=tuple(seeds), chains=self.chains, draws=self.draws, warmup=self.warmup, seed=self.rng_seed,
            max_tree_depth=self.tree_depth(model), target_accept=self.target_accept,
            saturated_draws=self.saturated_draws, min_draws=self.min_draws,
            force=True,  # a stale file under a cache name is replaced, never trusted
            progress=True,
        )


def tree_depth_for(model, max_tree_depth: int, ode_max_tree_depth: int) -> int:
    """The tree-depth cap of a fit of ``model`` (a registered Model): ``max_tree_depth``,
    or for a model without a closed form the smaller of it and ``ode_max_tree_depth``."""
    return max_tree_depth if model.closed_form else min(max_tree_depth, ode_max_tree_depth)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """The options of a plan of many fits, declared once for ``valuedyn fit-batch``
    (:class:`FitBatchConfig`) and ``valuedyn report`` (ReportConfig in ``papers/_cli.py``):
    which behaviours, models and seeds, the sampler settings at :data:`REPORT`'s defaults
    (so that a report reuses fit-batch's fits; :meth:`FitSettings.from_config` reads them),
    where the fits run, and what follows them (leave-future-out, the remedy refit). Each
    command adds its own options; keyword-only, so that its positional files come first."""

    behaviours: tuple[str, ...] = declared("behaviours", ())
    models: tuple[str, ...] = declared("models", ())
    learned_threshold: float = declared("learned_threshold", 0.5)
    seeds: tuple[int, ...] = declared("seeds", (), help="without them, the first --max-seeds")
    max_seeds: int = declared("max_seeds", 0)
    chains: int = declared("chains", use=REPORT)
    draws: int = declared("draws", use=REPORT)
    warmup: int = declared("warmup", use=REPORT)
    rng_seed: int = declared("rng_seed", use=REPORT, option_name="seed")
    max_tree_depth: int = declared("max_tree_depth", use=REPORT)
    ode_max_tree_depth: int = declared("ode_max_tree_depth", use=REPORT)
    target_accept: float = declared("target_accept", use=REPORT)
    min_draws: int = declared("min_draws", use=REPORT)
    saturated_draws: int = declared("saturated_draws", use=REPORT)
    workers: int = declared("workers", 0)
    scheduler: str | None = declared("scheduler", None)
    lfo: bool = declared("lfo", False)
    refit_remedy: bool = declared("refit_remedy", True)


@dataclasses.dataclass(frozen=True)
class FitBatchConfig(PlanOptions):
    """Fit every (trajectory, behaviour, model) of a plan, check each fit and compare the
    models of each behaviour. Writes into --fits-dir: the fit files, compare__*.json,
    index.json (the fit cache: a fit whose trajectory bytes and settings are unchanged is
    reused) and batch.json (what became of every fit). Defaults match `valuedyn report`,
    so a report pointed at the same --fits-dir reuses these fits.

    Example (on a Dask cluster): valuedyn fit-batch run.nc --fits-dir fits --scheduler tcp://10.0.0.5:8786"""

    trajectories: tuple[str, ...] = option(help="trajectory files (from valuedyn train)", positional=True,
                                           metavar="TRAJECTORY", nargs="+")
    fits_dir: str = option("fits", "folder of the fit files and their index")
    max_behaviours: int = option(MAX_BEHAVIOURS, "at most this many behaviours per trajectory (0 = all)")
    time_budget: int = option(0, "seconds for the fits: fits that would end past it are not started (0 = no limit)")
    choose_deviation: bool = declared("choose_deviation", False)  # the report's default is True
    choose_observation: bool = option(False, "for each unlock / action behaviour, fit its most flexible closed-form model with "
                                             "the binomial and the beta-binomial first and fit every model with the one the "
                                             "data demand (coverage of the 90-percent interval or PSIS-LOO; recorded in the fit "
                                             "files and batch.json). Without it every unlock / action fit uses the "
                                             "beta-binomial (it nests the binomial), event totals the negative binomial (it "
                                             "nests the Poisson), diversity the lognormal")


# ---------------------------------------------------------------- conditions of training
@dataclasses.dataclass(frozen=True)
class ConditionsConfig:
    """Compare conditions of training: one hierarchical fit over trajectory files whose training
settings differ (e.g. --reward-every place_plant vs the default). The differing settings name
the conditions; files of one condition pool their seeds. Writes the posterior of every
parameter's effect (difference and ratio of the typical values, per pair of conditions).

Example: valuedyn conditions default.nc every_plant.nc --model overshoot --behaviour event:place_plant --out cond.nc"""

    trajectories: tuple[str, ...] = option(help="two or more trajectory files (one update grid)", positional=True, nargs="+")
    model: str = declared("model", dataclasses.MISSING)
    behaviour: str = declared("behaviour", dataclasses.MISSING)
    out: str = option(help="conditions fit file to write (ArviZ InferenceData netCDF)")
    seeds: tuple[int, ...] = declared("seeds", (), help="without them, the first --max-seeds")
    max_seeds: int = declared("max_seeds", 0)
    updates: str | None = declared("updates", None)
    observation: str = declared("observation", use=CONDITIONS)
    deviation: str = declared("deviation", use=CONDITIONS)
    parameterization: str = declared("parameterization", use=CONDITIONS)
    chains: int = declared("chains", use=CONDITIONS)
    draws: int = declared("draws", use=CONDITIONS)
    warmup: int = declared("warmup", use=CONDITIONS)
    seed: int = declared("seed", use=CONDITIONS)
    max_tree_depth: int = declared("max_tree_depth", use=CONDITIONS)
    target_accept: float = declared("target_accept", use=CONDITIONS)
    dense_mass: bool = declared("dense_mass", use=CONDITIONS)
    strict: bool = option(False, help="exit 1 when the fit is not trustworthy (diagnostic thresholds or a named cause)")
    force: bool = declared("force", False)
    progress: bool = declared("progress", True)

    @property
    def pooling(self) -> str:
        """A conditions fit pools seeds hierarchically within each condition (:data:`CONDITIONS`)."""
        return CONDITIONS.pooling
