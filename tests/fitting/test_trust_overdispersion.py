"""Overdispersed unlock rates: the rule picks the beta-binomial over the Binomial when the
per-update rates scatter more than a Binomial allows, records the choice in the fit files,
and the well-specified fit covers about 90% of the observations with its 90% interval.
A ranking then names a winner only among trustworthy fits."""

import numpy as np
import pytest

from fitting_helpers import make_trajectory

from valuedyn.fitting import FitConfig, check_fit, fit_attrs, fit_trajectory, load_fit
from valuedyn.fitting.judge._overdispersion import choose_observation
from valuedyn.fitting.judge._trust import MISSPECIFIED, classify_fit, rank_fits

SETTINGS = dict(chains=4, warmup=500, draws=500, pooling="complete", progress=False, behaviour="unlock:place_table")
TRUTH = {name: np.full(3, value) for name, value in
         dict(t0=0.15, alpha=40.0, ratio=0.12, floor=0.04, optimum=0.25, excess=0.45).items()}


@pytest.fixture(scope="module")
def overdispersed_fits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overdispersed")
    # per-update probability ~ Beta(concentration 60): with ~150 episodes per update the
    # counts scatter about 3.4 times as much (in variance) as a Binomial's
    trajectory = make_trajectory("overshoot", TRUTH, folder / "overdispersed.nc", seed=21,
                                 observation="betabinomial", concentration=60.0)
    fits = {}
    for observation in ("binomial", "betabinomial"):
        fits[observation] = fit_trajectory(FitConfig(trajectory=str(trajectory), model="overshoot", observation=observation,
                                                     out=str(folder / f"{observation}.nc"), **SETTINGS))
        check_fit(fits[observation])
    return fits


def test_the_rule_chooses_the_beta_binomial_and_records_it(overdispersed_fits):
    choice = choose_observation([overdispersed_fits["betabinomial"], overdispersed_fits["binomial"]])
    assert choice.chosen == "betabinomial", choice.reason
    assert choice.coverage_90["binomial"] < 0.85
    assert 0.85 <= choice.coverage_90["betabinomial"] <= 0.97  # about 90%, as a well-specified model should
    assert choice.d_elpd > 2 * choice.dse
    for path in overdispersed_fits.values():
        import json

        recorded = json.loads(load_fit(path).attrs["observation_choice"])
        assert recorded["chosen"] == "betabinomial" and recorded["reason"] == choice.reason
    dispersion = load_fit(overdispersed_fits["betabinomial"]).posterior["dispersion"].values
    assert 1 / 150 < np.median(dispersion) < 1 / 25  # 1 / the simulated concentration 60, within a factor 2.5


def test_the_binomial_fit_is_misspecified_and_not_ranked(overdispersed_fits):
    verdicts = {name: classify_fit(path) for name, path in overdispersed_fits.items()}
    binomial = verdicts["binomial"]
    assert not binomial.trustworthy
    (cause,) = [c for c in binomial.causes if c.kind == MISSPECIFIED]
    assert "90% predictive interval covers" in cause.summary
    assert verdicts["betabinomial"].trustworthy, verdicts["betabinomial"].format()
    ranking = rank_fits(overdispersed_fits, verdicts)
    assert ranking.winner == "betabinomial" and not ranking.clearly
    # named as misspecified (a misspecified fit may also mix badly: "(misspecified, sampler failed)")
    assert "only trustworthy fit" in ranking.text and "binomial (misspecified" in ranking.text
    assert set(ranking.excluded) == {"binomial"}
    assert fit_attrs(load_fit(overdispersed_fits["binomial"]))["observation_model"] == "binomial"
