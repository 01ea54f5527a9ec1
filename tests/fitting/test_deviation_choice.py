"""The rule that gives a behaviour's fits a structured deviation (judge/_deviation_choice.py).

The rule reads stored predictive checks; here they are built the way compute_checks stores
them, with values on either side of the thresholds the trust module declares, so each test
fails if the rule or a threshold it relies on changes meaning."""

from __future__ import annotations

import pytest

from valuedyn.fitting.judge._deviation_choice import choose_deviation, failed_checks, needs_deviation
from valuedyn.fitting.judge._trust import COVERAGE_90_MAX, COVERAGE_90_MIN, P_EXTREME, PIT_P_MIN


def checks(*, coverage=None, pit_p=None, extreme_seeds=0, n_seeds=4):
    """Stored checks of one fit: passing everything unless told otherwise."""
    coverage = 0.5 * (COVERAGE_90_MIN + COVERAGE_90_MAX) if coverage is None else coverage
    pit_p = 0.5 if pit_p is None else pit_p
    per_seed = {str(s): (P_EXTREME / 10 if s < extreme_seeds else 0.5) for s in range(n_seeds)}
    return {"coverage": {"90": coverage, "50": 0.5}, "loo_pit": {"ks_p_value": pit_p},
            "p_values": {"peak height": per_seed, "final level": {str(s): 0.5 for s in range(n_seeds)}}}


def test_a_passing_fit_has_no_findings_and_each_failure_is_named():
    assert failed_checks(checks()) == []
    assert len(failed_checks(checks(pit_p=PIT_P_MIN / 10))) == 1
    assert len(failed_checks(checks(coverage=COVERAGE_90_MIN - 0.05))) == 1
    assert len(failed_checks(checks(extreme_seeds=2))) == 1  # two of four seeds off: a finding
    assert failed_checks(checks(extreme_seeds=1)) == []  # one of four: not
    assert failed_checks(None) == ["no checks stored"]


def test_smooth_fits_that_pass_keep_no_deviation():
    smooth = {"logistic_onset": checks(), "overshoot": checks()}
    assert not needs_deviation(smooth)
    choice = choose_deviation(smooth, {})
    assert choice["chosen"] == "none" and "pass" in choice["reason"]


def test_the_deviation_is_chosen_where_it_removes_the_misfit():
    smooth = {"logistic_onset": checks(pit_p=1e-6, extreme_seeds=2), "overshoot": checks(pit_p=1e-4)}
    deviated = {"logistic_onset": checks(), "overshoot": checks()}
    assert needs_deviation(smooth)
    choice = choose_deviation(smooth, deviated)
    assert choice["chosen"] == "ou"
    assert "2 of 2" in choice["reason"] and "0 of 2" in choice["reason"]
    assert choice["smooth"]["logistic_onset"] and not choice["ou"]["overshoot"]


def test_fewer_findings_decide_a_tie_in_failing_fits():
    smooth = {"a": checks(pit_p=1e-6, extreme_seeds=2), "b": checks(pit_p=1e-6)}
    fewer = {"a": checks(pit_p=1e-6), "b": checks(pit_p=1e-6)}
    assert choose_deviation(smooth, fewer)["chosen"] == "ou"
    same = {"a": checks(pit_p=1e-6, extreme_seeds=2), "b": checks(pit_p=1e-6)}
    assert choose_deviation(smooth, same)["chosen"] == "none"


@pytest.mark.parametrize("deviated", [None, "worse"])
def test_a_deviation_that_does_not_help_or_failed_is_not_kept(deviated):
    smooth = {"a": checks(pit_p=1e-6)}
    with_ou = {"a": None} if deviated is None else {"a": checks(pit_p=1e-6, coverage=0.5)}
    choice = choose_deviation(smooth, with_ou)
    assert choice["chosen"] == "none" and "did not help" in choice["reason"]
