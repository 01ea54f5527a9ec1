"""Whether a behaviour's fits need a structured deviation: the rule that chooses it from data.

Over hundreds of updates, consecutive updates of one run deviate from any smooth curve
together (the policy drifts and recovers), while a smooth model's likelihood treats them as
independent given the curve; its posterior predictive checks then fail (LOO-PIT far from
uniform, development statistics off in several seeds) although its intervals cover the
observations. The Ornstein-Uhlenbeck deviation (:mod:`valuedyn.fitting.inference._deviation`)
adds that slow drift on the link scale. It is chosen per behaviour, as the observation model
is, so that every model of one behaviour is fitted, judged and compared under the same
deviation:

- **off** (``none``) when no smooth fit of the behaviour fails a misspecification check
  (:func:`~valuedyn.fitting.judge._trust.misspecification`): nothing is added that the data
  do not ask for;
- **on** (``ou``) when smooth fits fail those checks and the fits with the deviation fail
  fewer of them (counted over the behaviour's models: fits that fail any check, then the
  checks failed in all);
- **off** otherwise (the deviation did not help; the smooth fits' verdicts stand and name
  the misfit).

The decision and its evidence (per model: the failed checks with and without the
deviation) are returned as a dict, which the plan records and the report prints.
"""

from __future__ import annotations

from collections.abc import Mapping

#: the deviation a behaviour's fits may be given, in the order tried
DEVIATION_CHOICES = ("none", "ou")


def failed_checks(checks: Mapping | None) -> list[str]:
    """The misspecification findings of one fit's stored checks (one line each); a fit
    without checks counts as failing them all (it cannot be shown to fit)."""
    from valuedyn.fitting.judge._trust import misspecification

    if not checks:
        return ["no checks stored"]
    try:
        return misspecification(dict(checks))[0]
    except (KeyError, TypeError, ValueError):
        return ["checks unreadable"]


def needs_deviation(smooth: Mapping[str, Mapping | None]) -> bool:
    """True when any smooth fit (model -> stored checks) fails a misspecification check."""
    return any(failed_checks(c) for c in smooth.values())


def choose_deviation(smooth: Mapping[str, Mapping | None], deviated: Mapping[str, Mapping | None]) -> dict:
    """The rule of the module docstring. ``smooth`` / ``deviated``: model -> the stored
    checks of its fit without / with the deviation (None: the fit failed). Returns
    ``{"chosen", "reason", "smooth": {model: [findings]}, "ou": {model: [findings]}}``."""
    before = {m: failed_checks(c) for m, c in smooth.items()}
    after = {m: failed_checks(c) if c is not None else ["the fit failed"] for m, c in deviated.items()}

    def score(findings: dict) -> tuple[int, int]:
        return sum(bool(f) for f in findings.values()), sum(len(f) for f in findings.values())

    n = len(before)
    s_fail, s_checks = score(before)
    if s_fail == 0:
        return {"chosen": "none", "reason": f"all {n} smooth fits pass their predictive checks", "smooth": before, "ou": after}
    o_fail, o_checks = score(after) if after else (n + 1, 0)
    said = (f"smooth: {s_fail} of {n} fits fail predictive checks ({s_checks} findings); "
            f"with the OU deviation: {o_fail} of {len(after)} ({o_checks} findings)")
    if after and (o_fail, o_checks) < (s_fail, s_checks):
        return {"chosen": "ou", "reason": said, "smooth": before, "ou": after}
    return {"chosen": "none", "reason": said + "; the deviation did not help, so the smooth fits stand",
            "smooth": before, "ou": after}
