"""Leave-future-out under a structured deviation (issue 30 point 3): mechanisms compared by
how they extrapolate, not by a one-step-ahead score the deviation's state carries.

A curve that rises, peaks and decays (overshoot) plus an OU deviation on the logit scale; the
models are fitted on the first 60 % of the window and score the rest. Before, the refit's
outputs were recomputed with every cell unmasked, so the deviation's mode saw the future it
was asked to predict (and the score of a monotone logistic_onset came within a few units of
the overshoot's); now each future cell is predicted from the fitted updates alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from valuedyn.fitting.inference._deviation import deviation_attrs, with_deviation
from valuedyn.fitting.inference._observation import OBSERVATION_MODELS
from valuedyn.fitting.judge._compare import forecast_scores

#: rises to ~0.75 by tau 0.15 and decays to ~0.2 at the end (unlock rate)
TRUTH = {"t0": 0.05, "alpha": 30.0, "ratio": 0.1, "floor": 0.02, "optimum": 0.15, "excess": 0.8}
FRACTION = 0.6


@pytest.fixture(scope="module")
def scores():
    from valuedyn.fitting.inference._fit import get_model, infer, settings_from
    from valuedyn.fitting.inference._simulate import simulate_deviated_selection
    from valuedyn.fitting.settings import FitConfig

    selection, _ = simulate_deviated_selection(get_model("overshoot"), TRUTH, n_seeds=3, n_updates=40, episodes=200,
                                               deviation_sd=0.4, deviation_time=0.08, seed=3)
    train = selection.mask & (selection.tau[None, :] <= FRACTION)
    heldout = selection.mask & ~train
    observation = with_deviation(OBSERVATION_MODELS["binomial"], "ou")
    last_tau = np.where(train, selection.tau[None, :], -np.inf).max(axis=1)
    out = {}
    for name in ("overshoot", "logistic_onset"):
        config = FitConfig(trajectory="-", model=name, behaviour="unlock:place_table", out="-", chains=2, warmup=300,
                           draws=300, min_draws=0)
        inference = infer(get_model(name), observation, "complete", selection.with_mask(train), settings_from(config),
                          seed=0, progress=False)
        full = inference.data._replace(mask=jnp.asarray(selection.mask))
        constrained, _, _ = inference.compiled.outputs(inference.data, inference.flat_z, jax.random.PRNGKey(2),
                                                       replicate=False)
        log_lik = forecast_scores(observation, constrained, full, last_tau)  # [N, S, U]
        # the same draws' deviation modes with the future counts changed: they must not move
        changed = inference.data._replace(y=jnp.where(jnp.asarray(heldout), 0, inference.data.y))
        moved, _, _ = inference.compiled.outputs(changed, inference.flat_z, jax.random.PRNGKey(2), replicate=False)
        cells = log_lik[:, heldout]
        inference.idata.attrs.update(deviation_attrs(inference.idata, observation))  # as a fit file stores them
        out[name] = {"pointwise": logsumexp(cells, axis=0) - np.log(cells.shape[0]), "constrained": constrained,
                     "moved": moved, "log_lik": log_lik, "heldout": heldout, "idata": inference.idata}
    return out


def test_the_forecast_does_not_see_the_future(scores):
    for score in scores.values():
        np.testing.assert_array_equal(score["constrained"]["deviation"], score["moved"]["deviation"])
        assert np.all(np.isfinite(score["log_lik"][:, score["heldout"]]))


def test_the_mechanism_that_decays_predicts_the_decay_clearly_better(scores):
    difference = scores["overshoot"]["pointwise"] - scores["logistic_onset"]["pointwise"]
    total, se = difference.sum(), np.sqrt(difference.size) * difference.std()
    print(f"elpd_lfo overshoot - logistic_onset: {total:.1f} (se {se:.1f}) over {difference.size} future cells")
    assert total > 4 * se and total > 10


def test_deviation_fits_are_ranked_by_leave_future_out_when_it_was_scored(scores):
    from types import SimpleNamespace

    from valuedyn.fitting.judge._trust import ONE_STEP_NOTE, rank_fits

    fits = {name: score["idata"] for name, score in scores.items()}
    verdicts = {name: SimpleNamespace(comparable=True, label="trustworthy", causes=[],
                                      modes=SimpleNamespace(multimodal=False)) for name in fits}
    ranked = rank_fits(fits, verdicts, lfo={name: score["pointwise"] for name, score in scores.items()})
    assert ranked.winner == "overshoot" and ranked.clearly
    assert "leave-future-out" in ranked.text and list(ranked.table.index) == ["overshoot", "logistic_onset"]
    expected = scores["overshoot"]["pointwise"].sum() - scores["logistic_onset"]["pointwise"].sum()
    assert ranked.table.loc["logistic_onset", "d_elpd"] == pytest.approx(expected)
    # without the scores: ranked by PSIS-LOO, and the text says what that one-step score cannot tell
    by_loo = rank_fits(fits, verdicts)
    assert by_loo.text.endswith(ONE_STEP_NOTE) and "elpd_loo" in by_loo.table.columns
