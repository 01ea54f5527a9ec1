"""Which observation model the data demand: the plain one (Binomial, Poisson) or an
overdispersed one (beta-binomial, negative binomial), decided from fits of both.

Rule (:func:`choose_observation`), for fits of the same model and data that differ only in
the observation model: keep the model with fewer observation parameters unless

1. its 90% posterior predictive interval covers less than
   :data:`valuedyn.fitting.judge._trust.COVERAGE_90_MIN` (0.85) of the observations while the
   overdispersed one covers at least that much (the predictive check), or
2. the overdispersed one's PSIS-LOO elpd is higher by more than 2 standard errors of the
   difference (LOO; :func:`valuedyn.fitting.judge._compare.elpd_clearly_ahead`).

The plain model is the default because it is the more constrained claim; the
overdispersed one has to earn its extra parameter. The decision and its numbers are
written to every compared fit file's ``observation_choice`` attribute (JSON, atomic
rewrite), so a report reads it without refitting; when both files already carry the same
decision it is returned as recorded (the files are not rewritten, so caches keyed by their
modification time stay valid).

:func:`valuedyn.fitting.run_plan` (``valuedyn report``, ``valuedyn fit-batch``) applies
this rule to every unlock and action behaviour before fitting its models.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from valuedyn._errors import ValuedynError
from valuedyn.fitting.inference._diagnostics import PARETO_K_MAX, pareto_k_counted
from valuedyn.fitting.inference._store import fit_attrs, load_fit, save_fit
from valuedyn.fitting.judge._compare import CLEAR_DSE_MULTIPLE, elpd_clearly_ahead


@dataclasses.dataclass
class ObservationChoice:
    """``chosen``: observation model name; ``reason``: one line; ``coverage_90``,
    ``elpd_loo``: per observation model; ``d_elpd`` / ``dse``: the overdispersed model's
    elpd minus the plain one's, and its standard error."""

    chosen: str
    reason: str
    coverage_90: dict[str, float]
    elpd_loo: dict[str, float]
    d_elpd: float
    dse: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> "ObservationChoice":
        return cls(**{field.name: stored[field.name] for field in dataclasses.fields(cls)})


def choose_observation(paths, *, record: bool = True) -> ObservationChoice:
    """Apply the rule of the module docstring to two fit files (any order) and, with
    ``record``, store the decision in both."""
    import arviz as az

    from valuedyn.fitting.judge._check import compute_checks
    from valuedyn.fitting.judge._trust import COVERAGE_90_MIN

    paths = [Path(p) for p in paths]
    if len(paths) != 2:
        raise ValuedynError(f"choose_observation compares two fits (plain and overdispersed); received {len(paths)}")
    fits = [load_fit(p) for p in paths]
    attrs = [fit_attrs(f) for f in fits]
    for key in ("model", "behaviour", "trajectory_sha256", "selection"):
        if attrs[0].get(key) != attrs[1].get(key):
            raise ValuedynError(
                f"choose_observation needs fits of the same model and data; {paths[0]} and {paths[1]} differ in {key}; "
                "fit one model to one behaviour with two --observation choices"
            )
    names = [a["observation_model"] for a in attrs]
    n_params = [len(a.get("observation_parameters", [])) for a in attrs]
    if names[0] == names[1] or n_params[0] == n_params[1]:
        raise ValuedynError(
            f"choose_observation needs one plain and one overdispersed observation model; received {names[0]} and {names[1]}"
        )
    recorded = [a.get("observation_choice") for a in attrs]
    if record and recorded[0] and recorded[0] == recorded[1]:
        return ObservationChoice.from_dict(recorded[0])
    plain, wide = (0, 1) if n_params[0] < n_params[1] else (1, 0)
    coverage = {}
    for name, idata, a in zip(names, fits, attrs):
        checks = a.get("checks") or compute_checks(idata)
        coverage[name] = float(checks["coverage"]["90"])
    with pareto_k_counted():  # counted below and named in the reason when LOO decides
        loo = [az.loo(f, pointwise=True) for f in fits]
    high_k = sum(int((np.asarray(l.pareto_k) > PARETO_K_MAX).sum()) for l in loo)
    unreliable = f"; PSIS-LOO is unreliable for {high_k} observations (Pareto k > {PARETO_K_MAX})" if high_k else ""
    pointwise = [np.asarray(l.loo_i) for l in loo]
    difference = pointwise[wide] - pointwise[plain]
    d_elpd = float(difference.sum())
    dse = float(np.sqrt(difference.size) * difference.std())
    plain_name, wide_name = names[plain], names[wide]
    if coverage[plain_name] < COVERAGE_90_MIN <= coverage[wide_name]:
        chosen = wide_name
        reason = (f"{plain_name}'s 90% interval covers {coverage[plain_name]:.2f} of the observations, {wide_name}'s "
                  f"{coverage[wide_name]:.2f}")
    elif elpd_clearly_ahead(d_elpd, dse):
        chosen = wide_name
        reason = f"{wide_name} predicts better: d_elpd {d_elpd:.1f} > {CLEAR_DSE_MULTIPLE} x dse {dse:.1f}{unreliable}"
    else:
        chosen = plain_name
        reason = (f"{wide_name} does not earn its extra parameter (d_elpd {d_elpd:.1f}, dse {dse:.1f}; 90% coverage "
                  f"{coverage[plain_name]:.2f} vs {coverage[wide_name]:.2f}){unreliable}")
    choice = ObservationChoice(chosen, reason, coverage, {n: float(l.elpd_loo) for n, l in zip(names, loo)}, d_elpd, dse)
    if record:
        for path, idata in zip(paths, fits):
            idata.attrs["observation_choice"] = json.dumps(choice.to_dict())
            save_fit(idata, path)
    return choice
