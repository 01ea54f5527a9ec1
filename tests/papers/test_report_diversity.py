"""The report's diversity section on a tiny run: figure, headline, chosen fits, probe panel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from valuedyn.cli import main
from valuedyn.papers._report_diversity import chosen_fit
from valuedyn.papers._report_results import Section

TINY = ["--chains", "2", "--draws", "40", "--warmup", "40", "--max-seeds", "2"]


@pytest.fixture(scope="module")
def diversity_report(synthetic_trajectory, tmp_path_factory) -> Path:
    from test_diversity_figure import _probe

    from valuedyn._io import write_dataset_atomic

    folder = tmp_path_factory.mktemp("diversity_report")
    trajectory = folder / "run.nc"
    shutil.copy(synthetic_trajectory, trajectory)
    write_dataset_atomic(_probe(), folder / "run.probe.nc")  # what `valuedyn probe run.nc` would leave beside it
    out = folder / "report"
    status = main(["report", str(trajectory), "--out", str(out), "--behaviours", "diversity:events",
                   "diversity:actions", "--models", "logistic_onset", *TINY])
    assert status == 0
    return out


def test_report_has_a_diversity_section_with_figure_and_headline(diversity_report):
    report = json.loads((diversity_report / "report.json").read_text())
    [view] = report["diversity"]
    assert view["trajectory"] == "run.nc" and view["probe"] == "run.probe.nc"
    figure = "figures/run_fig7_diversity.png"
    assert figure in report["figures"]
    assert (diversity_report / figure).read_bytes().startswith(b"\x89PNG")
    markdown = (diversity_report / "report.md").read_text()
    assert "### Diversity of behaviour" in markdown and f"]({figure})" in markdown
    assert view["text"] in markdown
    # 2 chains x 40 draws cannot pass the gate: no timescale is stated, and the report says why
    for behaviour in ("diversity:events", "diversity:actions"):
        if behaviour not in view["chosen_fits"]:
            assert "trustworthy" in view["not_stated"][behaviour]
            assert view["not_stated"][behaviour] in view["text"]
    if not view["chosen_fits"]:
        assert view["fast"] is None and view["slow"] is None and view["p_separated"] is None


def _section(trusted: dict[str, bool], table_order: list[str] | None, winner: str | None) -> Section:
    import pandas as pd

    section = Section(Path("run.nc"), "diversity:events", list(trusted), ())
    for model, ok in trusted.items():
        section.fits[model] = Path(f"{model}.nc")
        section.diagnostics[model] = {"trustworthy": ok, "reasons": [] if ok else ["R-hat 1.05 > 1.01"]}
    section.table = None if table_order is None else pd.DataFrame(index=table_order)
    section.verdict = {"winner": winner}
    return section


def test_the_chosen_fit_is_the_best_trustworthy_one():
    assert chosen_fit(_section({"a": True, "b": True}, ["b", "a"], "b")) == ("b", "")
    # the winner is untrustworthy: the best-ranked trustworthy fit speaks instead
    assert chosen_fit(_section({"a": True, "b": False, "c": True}, ["b", "c", "a"], "b")) == ("c", "")
    model, why = chosen_fit(_section({"a": False, "b": False}, ["a", "b"], "a"))
    assert model is None and why.startswith("none of its 2 fits is trustworthy") and "R-hat 1.05" in why
