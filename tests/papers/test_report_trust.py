"""The report's trust step: how a trust-aware ranking becomes the report's verdict, and the
motif headline's fallback. (The verdicts and rankings themselves are tested in
tests/fitting/test_trust.py; the report end to end in test_papers_report.py.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from valuedyn.fitting.judge._trust import Ranking
from valuedyn.papers._report_results import Section
from valuedyn.papers._report_trust import motif_headlines, ranking_verdict


def test_a_ranked_comparison_names_winner_runner_up_and_weights():
    table = pd.DataFrame({"d_elpd": [0.0, -7.5, -9.0], "dse": [0.0, 2.0, 3.0], "weight": [0.8, 0.15, 0.05]},
                         index=["stagewise", "logistic_onset", "overshoot"])
    verdict = ranking_verdict(Ranking("stagewise", True, "stagewise predicts best ...", table, {"x": "misspecified"}))
    assert verdict["winner"] == "stagewise" and verdict["runner_up"] == "logistic_onset"
    assert verdict["d_elpd"] == 7.5 and verdict["dse"] == 2.0 and verdict["clearly"] is True
    assert verdict["weights"] == {"stagewise": 0.8, "logistic_onset": 0.15, "overshoot": 0.05}
    assert verdict["excluded"] == {"x": "misspecified"}


def test_undecided_and_single_trustworthy_fits_name_no_comparison():
    undecided = ranking_verdict(Ranking(None, False, "The comparison is undecided: ...", None, {"a": "sampler failed"}))
    assert undecided["winner"] is None and undecided["clearly"] is None and undecided["weights"] == {}
    single = ranking_verdict(Ranking("a", False, "a is the only trustworthy fit ...", None, {}))
    assert single["winner"] == "a" and single["clearly"] is None and single["weights"] == {"a": 1.0}


def test_without_an_overshoot_fit_the_headline_says_how_to_get_one():
    path = Path("run.nc")
    section = Section(path, "event:place_plant", ["logistic_onset"], ())
    texts = motif_headlines([section], {path: None})
    assert "No overshoot fit of event:place_plant" in texts[path] and "--models overshoot" in texts[path]
