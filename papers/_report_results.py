"""Report step 2, results: the fitting room's batch result read as one section per
(trajectory, behaviour), with its verdict, and the report's tables.

Nothing here fits, checks or compares: :func:`valuedyn.fitting.run_plan` did that and
stored everything in the fit and comparison files; this only reads its result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class Section:
    """One behaviour of one trajectory and what became of its models' fits.

    ``fits``: model -> fit file (fitted now or reused); ``errors``: model -> why its fit
    failed; ``left_out``: models not fitted for time; ``table``: the comparison
    (DataFrame indexed by model, best first) or None with fewer than two fits;
    ``observation``: the observation model of every fit and why (:func:`observation_of`).
    """

    trajectory: Path
    behaviour: str
    models: list[str]
    seeds: tuple[int, ...]
    fits: dict[str, Path] = dataclasses.field(default_factory=dict)
    cached: dict[str, bool] = dataclasses.field(default_factory=dict)
    diagnostics: dict[str, dict] = dataclasses.field(default_factory=dict)
    failures: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    left_out: list[str] = dataclasses.field(default_factory=list)
    table: object = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    verdict: dict = dataclasses.field(default_factory=dict)
    verdicts: dict = dataclasses.field(default_factory=dict)  # model -> valuedyn.fitting Verdict
    ranking: object = None  # valuedyn.fitting Ranking (trust-aware), once judged
    observation: dict = dataclasses.field(default_factory=dict)
    #: the structured deviation of every fit of the behaviour and why (:func:`deviation_of`)
    deviation: dict = dataclasses.field(default_factory=dict)
    #: model -> its first attempt when the fit was refitted once with its remedy
    #: (:attr:`valuedyn.fitting.pipeline._batch.FitOutcome.first_attempt`)
    first_attempts: dict[str, dict] = dataclasses.field(default_factory=dict)

    def trustworthy(self, model: str) -> bool:
        """The fit's verdict when judged (gate and causes), else the sampler gate alone."""
        if model in self.verdicts:
            return bool(self.verdicts[model].trustworthy)
        return bool(self.diagnostics[model]["trustworthy"])

    def refit_line(self, model: str) -> str | None:
        """One line for a fit refitted once with its remedy (or whose refit did not happen):
        the first attempt's failure and the remedy applied; None for a fit made once."""
        first = self.first_attempts.get(model)
        if first is None:
            return None
        remedy = first["remedy"]["text"]
        if first["refit"] in ("done", "cached"):
            how = f"refitted once with {remedy}"
        else:
            how = f"the refit with {remedy} {first['refit']}, so this is the first attempt"
        return f"{model}: the first attempt failed ({first['failure']}); {how}."

    def why_not(self, model: str) -> str:
        """Why a fit is not trustworthy: its verdict's causes, else the gate's reasons."""
        if model in self.verdicts:
            v = self.verdicts[model]
            return "; ".join(f"{c.kind}: {c.summary}" for c in v.causes) or "; ".join(map(str, v.gate_reasons)) or v.label
        return "; ".join(map(str, self.diagnostics[model].get("reasons", []))) or "flagged by the sampler diagnostics"

    @property
    def fitted(self) -> list[str]:
        """Models with a fit file (a fit that raised is listed in ``errors`` instead)."""
        return [m for m in self.models if m in self.fits]


def verdict(table) -> dict:
    """Winner of a comparison and how clearly: the ELPD difference of the runner-up and
    its SE; "clearly" by the fitting room's rule (d_elpd > 2 dse,
    :func:`valuedyn.fitting.judge._compare.elpd_clearly_ahead`)."""
    from valuedyn.fitting import elpd_clearly_ahead

    if table is None or len(table) == 0:
        return {"winner": None, "runner_up": None, "d_elpd": None, "dse": None, "clearly": None, "weights": {}}
    winner = str(table.index[0])
    weights = {str(m): float(w) for m, w in zip(table.index, table["weight"])}
    if len(table) < 2:
        return {"winner": winner, "runner_up": None, "d_elpd": None, "dse": None, "clearly": None, "weights": weights}
    runner = table.iloc[1]
    d_elpd = abs(float(runner["d_elpd"]))
    dse = float(runner["dse"])
    return {
        "winner": winner,
        "runner_up": str(table.index[1]),
        "d_elpd": d_elpd,
        "dse": dse,
        "clearly": elpd_clearly_ahead(d_elpd, dse),
        "weights": weights,
    }


def observation_of(job, choice: dict | None) -> dict:
    """The observation model of a behaviour's fits and why: the run's decision from data
    (unlocks and actions: :func:`valuedyn.fitting.choose_observation` on the most flexible closed-form
    model's two fits) or the family's fixed default. Keys: ``model``, ``reason``,
    ``chosen_by`` (``data``, ``default`` when the choice could not be made, ``fixed``, or
    ``requested``) and, when chosen from data, the choice's numbers."""
    from valuedyn.fitting import FAMILY_OBSERVATIONS

    default = FAMILY_OBSERVATIONS[job.family][0] if job.family in FAMILY_OBSERVATIONS else job.observation
    if choice is not None:
        return {"model": choice["chosen"], "chosen_by": "data" if choice.get("decided", True) else "default",
                **{k: v for k, v in choice.items() if k != "chosen"}}
    if job.observation not in ("auto", default):
        return {"model": job.observation, "chosen_by": "requested", "reason": "named in the plan"}
    reasons = {
        "negbin": "event totals: the negative binomial nests the Poisson (dispersion 0), so it is used without a "
                  "choice fit; its dispersion says how far the counts scatter beyond Poisson noise",
        "lognormal": "diversity: the only observation model of this family",
        "betabinomial": "unlocks / actions: the beta-binomial nests the Binomial (dispersion 0), so it is used "
                        "without a choice fit; its dispersion says how far the rates scatter beyond Binomial noise",
    }
    return {"model": default, "chosen_by": "fixed", "reason": reasons.get(default, "the family's default")}


def deviation_of(job, choice: dict | None) -> dict:
    """The structured deviation of a behaviour's fits and why: ``model`` (``none`` / ``ou``),
    ``chosen_by`` (``data``: the run's choice, :func:`valuedyn.fitting.judge._deviation_choice.choose_deviation`;
    ``checks``: the smooth fits passed their checks, so none was tried; ``requested``) and the
    choice's ``reason`` and per-model findings."""
    if choice is not None:
        return {"model": choice["chosen"], "chosen_by": "data", **{k: v for k, v in choice.items() if k != "chosen"}}
    if job.deviation != "none":
        return {"model": job.deviation, "chosen_by": "requested", "reason": "named in the plan"}
    return {"model": "none", "chosen_by": "checks",
            "reason": "no fit of this behaviour failed its predictive checks without one (or none was asked for)"}


def sections_from(result) -> tuple[list[Section], list[Section]]:
    """The report's sections from a :class:`~valuedyn.fitting.BatchResult`, in plan order;
    returns ``(sections, skipped)``: a section none of whose fits ran for time is skipped,
    one with some lists the rest in ``left_out``."""
    sections: dict[tuple[Path, str], Section] = {}
    for outcome in result.outcomes:
        job = outcome.job
        section = sections.setdefault((job.trajectory, job.behaviour), Section(
            trajectory=job.trajectory, behaviour=job.behaviour, models=[], seeds=job.seeds,
            observation=observation_of(job, result.observation_choice(job)),
            deviation=deviation_of(job, getattr(result, "deviation_choice", lambda _: None)(job))))
        section.models.append(job.model)
        if outcome.fitted:
            section.fits[job.model], section.cached[job.model] = outcome.path, outcome.status == "cached"
            section.diagnostics[job.model] = outcome.diagnostics
            section.failures[job.model] = outcome.check_failures
            if outcome.first_attempt is not None:
                section.first_attempts[job.model] = outcome.first_attempt
        elif outcome.status == "failed":
            section.errors[job.model] = outcome.error
        else:
            section.left_out.append(job.model)
    for comparison in result.comparisons:
        section = sections[(comparison.trajectory, comparison.behaviour)]
        section.table, section.warnings = comparison.table, comparison.warnings
    kept, skipped = [], []
    for section in sections.values():
        if section.left_out and not section.fits and not section.errors:
            skipped.append(section)
            continue
        only = section.fitted[0] if section.fitted else None
        section.verdict = verdict(section.table) if section.table is not None else {
            "winner": only, "runner_up": None, "d_elpd": None, "dse": None, "clearly": None,
            "weights": {only: 1.0} if only else {},
        }
        kept.append(section)
    return kept, skipped


def result_tables(sections: list[Section], out: Path) -> dict[str, str]:
    """``tables/summary.csv`` (one row per behaviour) and ``tables/models.csv`` (one per fit)."""
    import pandas as pd

    summary_rows, model_rows = [], []
    for section in sections:
        v = section.verdict
        summary_rows.append({
            "trajectory": section.trajectory.name, "behaviour": section.behaviour,
            "observation": section.observation.get("model"), "deviation": section.deviation.get("model"),
            "winner": v["winner"],
            "runner_up": v["runner_up"], "d_elpd": v["d_elpd"], "dse": v["dse"], "clearly": v["clearly"],
            "winner_weight": v["weights"].get(v["winner"]), "n_models": len(section.fitted),
            "untrustworthy": ";".join(m for m in section.fitted if not section.trustworthy(m)),
            "ranking": v.get("text", ""),
            "failed_fits": ";".join(section.errors),
        })
        for model in section.fitted:
            row = section.table.loc[model] if section.table is not None else None
            d = section.diagnostics[model]
            path = section.fits[model]
            model_rows.append({
                "trajectory": section.trajectory.name, "behaviour": section.behaviour, "model": model,
                "fit_file": shown_path(path, out),
                "cached": section.cached[model],
                **{k: (None if row is None else float(row[k])) for k in ("elpd_loo", "se", "d_elpd", "dse", "weight")},
                **({k: float(row[k]) for k in ("elpd_lfo", "lfo_se")} if row is not None and "elpd_lfo" in row else {}),
                "trustworthy": section.trustworthy(model),
                "verdict": section.verdicts[model].label if model in section.verdicts else None,
                "reasons": "" if section.trustworthy(model) else section.why_not(model),
                **{k: d.get(k) for k in ("rhat_max", "ess_bulk_min", "ess_tail_min", "divergences")},
                "check_failures": "; ".join(section.failures[model]),
            })
    return {"tables/summary.csv": pd.DataFrame(summary_rows).to_csv(index=False),
            "tables/models.csv": pd.DataFrame(model_rows).to_csv(index=False)}


def shown_path(path: Path, out: Path) -> str:
    """A file as the report names it: relative to the report folder when inside it (a fit
    cache elsewhere, chosen with --fits-dir, keeps the path it was given)."""
    return str(path.relative_to(out) if path.is_relative_to(out) else path)


def shown_observation_files(fits: dict, out: Path) -> dict:
    """observation -> the probe's fit file, named as :func:`shown_path` names fit files."""
    return {name: None if path is None else shown_path(Path(path), out) for name, path in fits.items()}


def results_json(sections: list[Section], out: Path) -> list[dict]:
    """The ``results`` of report.json: every claim of the report, per behaviour; fit files
    are named relative to the report folder (see :func:`shown_path`)."""
    return [
        {
            "trajectory": section.trajectory.name, "behaviour": section.behaviour, **section.verdict,
            "observation": {k: (shown_observation_files(v, out) if k == "fits" else v)
                            for k, v in section.observation.items()},
            "deviation": {k: v for k, v in section.deviation.items() if k != "fits"},
            "comparison_warnings": section.warnings,
            "fits": {
                m: {
                    "file": shown_path(section.fits[m], out), "cached": section.cached[m],
                    "trustworthy": section.trustworthy(m), "diagnostics": section.diagnostics[m],
                    "verdict": section.verdicts[m].to_dict() if m in section.verdicts else None,
                    "check_failures": section.failures[m],
                    "first_attempt": section.first_attempts.get(m),
                }
                for m in section.fitted
            },
            "failed_fits": section.errors,
        }
        for section in sections
    ]
