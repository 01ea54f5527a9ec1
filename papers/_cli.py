"""``valuedyn figures`` and ``valuedyn report``: configs and entry points."""

from __future__ import annotations

from dataclasses import dataclass

from valuedyn._config import option
from valuedyn._errors import ValuedynError
from valuedyn.fitting.settings import MAX_BEHAVIOURS, PlanOptions, declared


@dataclass(frozen=True)
class FiguresConfig:
    """Rebuild every figure a paper folder declares (papers/<name>/paper.toml), from saved
    trajectory and fit files only. Writes NAME.png and NAME.pdf for each declared figure
    into the paper's `out` folder (or --out). Nothing is written unless every figure builds."""

    paper: str = option(help="paper folder (papers/<name>) or the name of a shipped one", positional=True,
                        metavar="PAPER")
    out: str | None = option(None, "output folder (default: the paper's declared out, e.g. papers/<name>/figures)")


def run_figures(config: FiguresConfig) -> int:
    import sys
    from pathlib import Path

    from valuedyn.fitting import progress_bar
    from valuedyn.papers._paper import build_paper, load_paper

    paper = load_paper(config.paper)
    out = Path(config.out) if config.out else paper.out
    if out.exists() and not out.is_dir():
        raise ValuedynError(f"--out {out} is a file; pass a folder")
    written = build_paper(paper, out, progress=progress_bar)
    print(f"{paper.title}: wrote {len(written)} files to {out}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


@dataclass(frozen=True)
class ReportConfig(PlanOptions):
    """Fit the candidate models to the behaviours that matter, check and compare them, and
    write a report: DIR/report.md (Markdown with the PNG figures), DIR/figures/*.png|pdf,
    DIR/tables/*.csv, DIR/report.json (this config, provenance, every claim), DIR/fits/
    (the fit files; a fit whose trajectory and settings are unchanged is reused). The fits
    are `valuedyn fit-batch`'s: the same plan runs without the report.

    Default behaviours: the plant motif (event:place_plant, unlock:place_plant) plus every
    achievement learned within the run (pooled unlock rate below --learned-threshold over
    the first tenth of updates and at or above it over the last tenth), in the order they
    are learned, at most --max-behaviours per trajectory. Default models: every registered
    model that applies to the behaviour's kind. Observation models: unlocks and actions use
    the beta-binomial (it nests the binomial), event totals the negative binomial (it nests
    the Poisson); the fitted dispersion says how far the data scatter beyond the plain
    model (stated next to each behaviour). The default
    fit settings keep the whole run under 10 minutes on a 2-core CPU.

    Trajectories trained with different settings (read from their stored configs; seeds
    and run-only settings aside) are conditions: the motif is then also fitted across them
    (overshoot on each plant-motif behaviour the report fits, one fit per behaviour, cached
    in the fits folder) and a section compares them; with one condition one line says so."""

    trajectories: tuple[str, ...] = option((), "trajectory files (default: the CPU campaign shipped in data/campaign/, both conditions)",
                                           positional=True, metavar="TRAJECTORY")
    out: str = option("report", "output folder")
    fits_dir: str | None = option(None, "folder of the fit cache (default: OUT/fits); share it between reports to reuse fits")
    max_behaviours: int = option(MAX_BEHAVIOURS, "at most this many behaviours per trajectory (the plant motif's two; "
                                                  "more add the learned achievements, in the order they are learned)")
    diversity: bool = option(True, "without --behaviours, also fit the diversity of actions and of events "
                                   "(--no-diversity: leave them out)")
    ode_models: bool = option(False, "without --models, also fit the models without a closed form "
                                     "(replicator_mutator, diversify_then_minimize: ODE solves; one such fit "
                                     "took 133 s on the shipped run, 2 cores: replicator_mutator on diversity:events, whose "
                                     "warmup saturates the tree depth)")
    time_budget: int = option(0, "seconds for the fit step: behaviours that would end past it are left out "
                              "and named in the report (0 = no limit: every planned fit runs, as the verdicts "
                              "and rankings need)")
    choose_deviation: bool = declared("choose_deviation", True)


def run_report(config: ReportConfig) -> int:
    from valuedyn.papers._report import run_report as _run

    report = _run(config)
    return 1 if report["n_fits_failed"] else 0  # the report is written, but not every fit is in it
