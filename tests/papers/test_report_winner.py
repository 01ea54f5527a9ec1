"""The report's figures name the winner its text names: the trust-aware ranking's.

Two real tiny fits (NUTS through the notebook API) of one behaviour of the synthetic run,
compared by PSIS-LOO; a report section whose ranking named the comparison's runner-up (as
when the top of the table is untrustworthy) must put that model in the timescales figure,
and the comparison's first row only where the ranking named none.
"""

from __future__ import annotations

import pytest

from valuedyn.data import open_trajectory
from valuedyn.fitting import FitSettings, compare, fit, save_fit
from valuedyn.papers._report_figures import figure_plan
from valuedyn.papers._report_results import Section

BEHAVIOUR = "event:place_plant"
MODELS = ("logistic_onset", "stagewise")
TINY = FitSettings(chains=2, draws=40, warmup=40, min_draws=0)


@pytest.fixture(scope="module")
def fitted(synthetic_trajectory, tmp_path_factory):
    folder = tmp_path_factory.mktemp("winner_fits")
    fits = {m: fit(synthetic_trajectory, BEHAVIOUR, m, settings=TINY, seeds=(0, 1)) for m in MODELS}
    paths = {m: save_fit(idata, folder / f"{m}.nc") for m, idata in fits.items()}
    return paths, compare(fits).table


def _inputs(trajectory, paths, table, winner):
    section = Section(trajectory=trajectory, behaviour=BEHAVIOUR, models=list(MODELS), seeds=(0, 1), fits=dict(paths),
                      table=table, verdict={"winner": winner})
    [(path, specs, inputs)] = figure_plan([section], {trajectory: open_trajectory(trajectory)})
    return specs, inputs


def test_the_figures_take_the_rankings_winner_not_the_top_of_the_table(fitted, synthetic_trajectory):
    paths, table = fitted
    top, runner_up = (str(m) for m in table.index)
    specs, inputs = _inputs(synthetic_trajectory, paths, table, winner=runner_up)
    assert inputs.winner(BEHAVIOUR) == runner_up
    assert [s.options["model"] for s in specs if s.kind == "analysis"] == [runner_up]  # the same model in both figures


def test_an_undecided_ranking_leaves_the_top_of_the_table(fitted, synthetic_trajectory):
    paths, table = fitted
    specs, inputs = _inputs(synthetic_trajectory, paths, table, winner=None)
    assert inputs.winner(BEHAVIOUR) == str(table.index[0])
    assert not [s for s in specs if s.kind == "analysis"]  # no winner: no analysis figure
