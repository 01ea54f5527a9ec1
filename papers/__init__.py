"""valuedyn.papers: figures and reports built only from saved trajectory and fit files.

- ``valuedyn report [TRAJECTORY ...] --out DIR``: :func:`run_report` (asks
  :func:`valuedyn.fitting.run_plan` for the fits, checks and comparisons, then reads the
  files and writes figures, tables and ``report.md``)
- ``valuedyn figures papers/<name>``: :func:`build_paper` rebuilds what a paper folder's
  ``paper.toml`` declares
- the six figure kinds, each ``loaded data -> matplotlib Figure``:
  :func:`plot_behaviour_fits`, :func:`plot_model_comparison`, :func:`plot_timescales`,
  :func:`plot_placement_histogram`, :func:`plot_sbc_ranks`, :func:`plot_model_analysis`;
  :func:`render_figure` / :func:`write_rendered` turn them into deterministic PNG + PDF.
"""

from valuedyn.papers._cli import FiguresConfig, ReportConfig, run_figures
from valuedyn.papers._figures import (
    FIGURE_KINDS,
    plot_behaviour_fits,
    plot_model_analysis,
    plot_model_comparison,
    plot_placement_histogram,
    plot_sbc_ranks,
    plot_timescales,
)
from valuedyn.papers._paper import FigureInputs, FigureSpec, build_paper, load_paper, render_figures
from valuedyn.papers._report import run_report
from valuedyn.papers._report_results import verdict
from valuedyn.papers._style import render_figure, style, write_rendered

__all__ = [
    "FIGURE_KINDS",
    "FigureInputs",
    "FigureSpec",
    "FiguresConfig",
    "ReportConfig",
    "build_paper",
    "load_paper",
    "plot_behaviour_fits",
    "plot_model_analysis",
    "plot_model_comparison",
    "plot_placement_histogram",
    "plot_sbc_ranks",
    "plot_timescales",
    "render_figure",
    "render_figures",
    "run_figures",
    "run_report",
    "style",
    "verdict",
    "write_rendered",
]
