"""Report step 4, markdown: ``report.md`` from the sections, figures and report.json content."""

from __future__ import annotations

from pathlib import Path

from valuedyn.papers._report_figures import FIGURE_CAPTIONS


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def observation_line(observation: dict) -> str:
    """One sentence: which observation model the behaviour's fits use and why."""
    how = {"data": "chosen from data", "default": "the default (no choice made)", "fixed": "fixed",
           "requested": "requested"}.get(observation.get("chosen_by"), "")
    probe = f" on {observation['probe_model']}'s two fits" if observation.get("chosen_by") == "data" else ""
    return f"Observation model: **{observation.get('model')}**, {how}{probe}: {observation.get('reason', '')}."


def render_markdown(sections: list, figures: dict[Path, list], notes: list[str], report: dict,
                    diversity: dict | None = None, conditions: list[str] | None = None) -> str:
    """report.md: summary table, per-behaviour sections with figures and tables, the
    diversity view per trajectory (``diversity``: path -> DiversityResult), the comparison
    of training conditions (``conditions``: its lines), flags."""
    diversity = diversity or {}
    lines = ["# valuedyn report", ""]
    prov = report["provenance"]
    lines += [
        f"valuedyn {prov.get('valuedyn_version')} (commit {prov.get('git_commit')}), created {prov.get('created')}, "
        f"device {prov.get('device')}. Fit settings: {report['fit_settings_text']}. "
        f"Run time {report['timing_s']['total']:.0f} s ({report['n_fits_run']} fits run, {report['n_fits_cached']} reused from the cache).",
        "",
        "## The motif: does plants-per-episode rise and then decay?",
        "",
        *[f"**{name}.** {text}\n" for name, text in report.get("motif", {}).items()],
        "## Data",
        "",
        "| trajectory | sha256 | seeds fitted | updates | env steps per seed |",
        "|---|---|---|---|---|",
    ]
    for t in report["trajectories"]:
        lines.append(f"| `{t['path']}` | `{t['sha256'][:12]}` | {t['seeds_fitted']} | {t['n_updates']} | {t['env_steps']:.3g} |")
    lines += ["", f"Behaviours: {report['behaviour_rule']}", ""]
    lines += [f"- {n}" for n in notes]
    lines += [
        "",
        "## Which model wins",
        "",
        "A winner is named only among trustworthy fits (or fits whose separate modes each pass the gate, "
        "entered through their stacked modes): best expected log predictive density (PSIS-LOO). *Clearly* when "
        "the runner-up's ELPD difference exceeds twice its standard error (d_elpd > 2 dse) and PSIS is reliable "
        "for both (no Pareto k > 0.7), otherwise *not clearly*; with no trustworthy fit the comparison is "
        "*undecided*. Weights are stacking weights of the ranked fits.",
        "",
        "| trajectory | behaviour | winner | how clearly | d_elpd ± dse (vs runner-up) | stacking weights | untrustworthy fits | failed checks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in sections:
        v = task.verdict
        if v["winner"] is None:
            how = "undecided"
        elif v["clearly"] is None:
            how = "only trustworthy fit" if "text" in v else "only model"
        else:
            how = "clearly" if v["clearly"] else "not clearly"
        diff = "-" if v["d_elpd"] is None else f"{v['d_elpd']:.1f} ± {v['dse']:.1f} ({v['runner_up']})"
        weights = ", ".join(f"{m} {w:.2f}" for m, w in v["weights"].items())
        bad = [f"{m} ({task.verdicts[m].label})" if m in task.verdicts else m
               for m in task.fitted if not task.trustworthy(m)]
        bad += [f"{m} (fit failed)" for m in task.errors]
        failing = [f"{m} ({len(task.failures[m])})" for m in task.fitted if task.failures[m]]
        lines.append(
            f"| {task.trajectory.name} | {task.behaviour} | {'**' + v['winner'] + '**' if v['winner'] else '-'} | {how} | {diff} | {weights} | "
            f"{', '.join(bad) or 'none'} | {', '.join(failing) or 'none'} |"
        )
    for path, rendered_specs in figures.items():
        lines += ["", f"## {path.name}", ""]
        for task in [t for t in sections if t.trajectory == path]:
            lines += [f"### {task.behaviour}", ""]
            if task.observation:
                lines += [observation_line(task.observation), ""]
            v = task.verdict
            if "text" in v:  # the trust-aware ranking says it in one paragraph
                lines.append(v["text"])
            elif v["winner"] is None:
                lines.append("No fit of this behaviour succeeded; nothing to compare.")
            elif v["clearly"] is None:
                lines.append(f"Only {v['winner']} was fitted to this behaviour; nothing to compare.")
            else:
                lines.append(
                    f"**{v['winner']}** wins {'clearly' if v['clearly'] else 'not clearly'} over {v['runner_up']}: "
                    f"d_elpd = {v['d_elpd']:.1f} ± {v['dse']:.1f}; stacking weight of {v['winner']} "
                    f"{v['weights'].get(v['winner'], 0):.2f}."
                )
            if v["winner"] is not None and not task.trustworthy(v["winner"]):
                lines[-1] += " Caution: the winning fit is untrustworthy (see below); do not rely on this ranking."
            lines += ["", "| model | elpd_loo | se | d_elpd | dse | weight | trustworthy | diagnostics | fails checks at |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for model, error in task.errors.items():
                lines.append(f"| {model} | - | - | - | - | - | **fit failed**: {error} | - | - |")
            for model in task.fitted:
                row = task.table.loc[model] if task.table is not None else None
                d = task.diagnostics[model]
                diag = ", ".join(f"{k} {_fmt(d.get(k), 3)}" for k in ("rhat_max", "ess_bulk_min", "divergences") if k in d)
                trust = "yes" if task.trustworthy(model) else f"**{task.verdicts[model].label if model in task.verdicts else 'no'}**: {task.why_not(model)}"
                lines.append(
                    f"| {model} | {_fmt(None if row is None else float(row['elpd_loo']))} | {_fmt(None if row is None else float(row['se']))} | "
                    f"{_fmt(None if row is None else float(row['d_elpd']))} | {_fmt(None if row is None else float(row['dse']))} | "
                    f"{_fmt(None if row is None else float(row['weight']), 2)} | {trust} | {diag} | "
                    f"{'; '.join(task.failures[model]) or 'passes'} |"
                )
            lines.append("")
            lines += [f"- warning: {w}" for w in task.warnings] + ([""] if task.warnings else [])
            for spec in rendered_specs:
                if spec.options.get("behaviour") == task.behaviour:
                    lines += [f"![{spec.name}](figures/{spec.name}.png)", "", f"*{FIGURE_CAPTIONS[spec.kind]}* "
                              f"([PDF](figures/{spec.name}.pdf))", ""]
        if path in diversity:
            view = diversity[path]
            lines += ["### Diversity of behaviour", "", view.headline.text, ""]
            if view.chosen:
                lines += ["Fits that speak for it: " + ", ".join(f"{b}: {m}" for b, m in view.chosen.items()) + ".", ""]
            for spec in rendered_specs:
                if spec.kind == "diversity":
                    lines += [f"![{spec.name}](figures/{spec.name}.png)", "", f"*{FIGURE_CAPTIONS[spec.kind]}* "
                              f"([PDF](figures/{spec.name}.pdf))", ""]
        lines += ["### Across behaviours", ""]
        for spec in rendered_specs:
            if "behaviour" not in spec.options and spec.kind != "diversity":
                lines += [f"![{spec.name}](figures/{spec.name}.png)", "", f"*{FIGURE_CAPTIONS[spec.kind]}* "
                          f"([PDF](figures/{spec.name}.pdf))", ""]
    lines += [""] + list(conditions or [])
    untrustworthy = [(t, m) for t in sections for m in t.fitted if not t.trustworthy(m)]
    failed = [(t, m, e) for t in sections for m, e in t.errors.items()]
    lines += ["## Untrustworthy fits", ""]
    if untrustworthy:
        lines.append("Do not read these fits' posteriors or comparisons at face value:")
        lines += [f"- {t.trajectory.name} {t.behaviour} {m}: {t.why_not(m)}" for t, m in untrustworthy]
    else:
        lines.append("None: every fit passed the sampler diagnostics and has no named cause.")
    if failed:
        lines += ["", "These fits raised an error and are missing from the comparison:"]
        lines += [f"- {t.trajectory.name} {t.behaviour} {m}: {e}" for t, m, e in failed]
    lines += ["", "## Files", "", "- `report.json`: this report's config, provenance and every claim above, machine readable",
              "- `tables/`: the tables above as CSV", "- `figures/`: every figure as PNG and PDF",
              "- `fits/`: the fit files (ArviZ InferenceData netCDF) and `index.json`, the fit cache", ""]
    return "\n".join(lines)
