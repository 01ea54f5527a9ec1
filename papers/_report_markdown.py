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


def deviation_line(deviation: dict) -> str | None:
    """One sentence: whether the behaviour's fits carry the OU deviation and why (None when
    no choice was made and none was requested: nothing to say)."""
    if not deviation or deviation.get("chosen_by") == "checks":
        return None
    if deviation.get("model") == "ou":
        what = ("**Ornstein-Uhlenbeck deviation on**: every model's curve is its mechanism plus a slowly varying "
                "deviation of each seed on the link scale, and models are compared under it")
    else:
        what = "**No structured deviation**"
    how = {"data": "chosen from data", "requested": "requested"}.get(deviation.get("chosen_by"), "")
    return f"Deviation: {what} ({how}: {deviation.get('reason', '')})."


#: the most lines the summary at the top of report.md holds (its heading and bullets)
SUMMARY_MAX_LINES = 15


def _winner_phrase(section) -> str:
    v = section.verdict
    if v.get("winner") is None:
        return "undecided"
    if v.get("clearly") is None:
        return f"{v['winner']} ({'only trustworthy fit' if 'text' in v else 'only model'})"
    return f"**{v['winner']}** ({'clearly' if v['clearly'] else 'not clearly'})"


def _timescale_phrase(t, word: str) -> str:
    from valuedyn.fitting import format_env_steps

    bound = ">= " if t.lower_bound else ""
    return f"{word} {bound}{format_env_steps(t.median)} env steps"


def _effect_line(conditions: dict) -> str | None:
    """The effect of the training condition in one line (None with fewer than two conditions)."""
    if not conditions or conditions.get("n_conditions", 0) < 2:
        return None
    parts = []
    for behaviour, fit in conditions.get("fits", {}).items():
        if not fit.get("trustworthy"):
            parts.append(f"{behaviour}: not stated, its fit is {fit.get('verdict') or 'untrustworthy'}")
        elif fit.get("clear_effects"):
            parts.append(f"{behaviour}: clear effects on {', '.join(fit['clear_effects'])}")
        else:
            parts.append(f"{behaviour}: no clear effect on any parameter")
    parts += [f"{behaviour}: not estimated (fit not made)" for behaviour in conditions.get("failed_fits", {})]
    differ = ", ".join(conditions.get("differing_settings", [])) or "their settings"
    return f"- Effect of the condition ({differ}): " + ("; ".join(parts) or "no conditions fit was made") + "."


def summary_lines(sections: list, report: dict, diversity: dict) -> list[str]:
    """The summary at the top of report.md: per trajectory (or condition) the motif's
    answer, the winner or "undecided" per behaviour and the diversity timescales; the
    effect of the condition; what could not be decided and why, in one line. Answers
    only: each verdict's evidence is written once, further down. At most
    :data:`SUMMARY_MAX_LINES` lines with up to four trajectories."""
    conditions = report.get("conditions") or {}
    condition_of = {}
    if conditions.get("n_conditions", 0) >= 2:
        for c in conditions.get("conditions", []):
            for name in c.get("trajectories", []):
                condition_of[name] = c["name"]
    names = [t["path"] for t in report["trajectories"]]
    many = len(names) > 1

    def who(name: str) -> str:
        return f"{condition_of[name]}, {name}" if name in condition_of else name

    lines = ["## Summary", ""]
    undecided = []
    for name in names:
        short = report.get("motif_summary", {}).get(name)
        if short is not None:
            lines.append(f"- Motif, plants per episode ({who(name)}): {short}.")
        why = report.get("motif_undecided", {}).get(name)
        if why:
            undecided.append(f"the motif of {name} ({why})")
    effect = _effect_line(conditions)
    if effect:
        lines.append(effect)
    for name in names:
        mine = [s for s in sections if s.trajectory.name == name]
        if mine:
            lines.append(f"- Winners{f' ({name})' if many else ''}: "
                         + "; ".join(f"{s.behaviour}: {_winner_phrase(s)}" for s in mine) + ".")
        for s in mine:
            if s.verdict.get("winner") is None:
                why = "no trustworthy fit" if s.fitted else "no fit succeeded"
                undecided.append(f"the winner of {s.behaviour}{f' in {name}' if many else ''} ({why})")
            elif s.verdict.get("clearly") is None and len(s.fitted) > 1:  # the others failed: nothing was compared
                undecided.append(f"the comparison on {s.behaviour}{f' in {name}' if many else ''} (only "
                                 f"{s.verdict['winner']} of {len(s.fitted)} fits is trustworthy)")
    for path, view in (diversity or {}).items():
        headline = view.headline
        stated = [_timescale_phrase(t, word) for t, word in ((headline.fast, "event diversity rises in"),
                                                           (headline.slow, "action diversity falls in")) if t is not None]
        if headline.p_separated is not None:
            stated.append(f"P(separated) {headline.p_separated:.2f}")
        missing = [w for t, w in ((headline.fast, "event rise"), (headline.slow, "action fall")) if t is None]
        lines.append(f"- Diversity timescales{f' ({path.name})' if many else ''}: "
                     + (", ".join(stated) if stated else "none stated") + ".")
        if missing:
            undecided.append(f"the {' and '.join(missing)} time{'s' if len(missing) > 1 else ''}"
                             f"{f' of {path.name}' if many else ''} (no trustworthy diversity fit)")
    lines.append("- Not decided: " + ("; ".join(undecided) if undecided else "nothing: every question asked here "
                                      "has an answer") + ". The evidence for each verdict is below.")
    return lines + [""]


def render_markdown(sections: list, figures: dict[Path, list], notes: list[str], report: dict,
                    diversity: dict | None = None, conditions: list[str] | None = None) -> str:
    """report.md: summary table, per-behaviour sections with figures and tables, the
    diversity view per trajectory (``diversity``: path -> DiversityResult), the comparison
    of training conditions (``conditions``: its lines), flags."""
    diversity = diversity or {}
    lines = ["# valuedyn report", ""]
    lines += summary_lines(sections, report, diversity)
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
            if deviation_line(task.deviation):
                lines += [deviation_line(task.deviation), ""]
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
                # the evidence of a verdict is written once, under "Untrustworthy fits"
                trust = "yes" if task.trustworthy(model) else f"**{task.verdicts[model].label if model in task.verdicts else 'no'}**"
                lines.append(
                    f"| {model} | {_fmt(None if row is None else float(row['elpd_loo']))} | {_fmt(None if row is None else float(row['se']))} | "
                    f"{_fmt(None if row is None else float(row['d_elpd']))} | {_fmt(None if row is None else float(row['dse']))} | "
                    f"{_fmt(None if row is None else float(row['weight']), 2)} | {trust} | {diag} | "
                    f"{'; '.join(task.failures[model]) or 'passes'} |"
                )
            lines.append("")
            refits = [task.refit_line(m) for m in task.fitted if task.refit_line(m)]
            lines += [f"- refit: {line}" for line in refits] + ([""] if refits else [])
            # an untrustworthy fit's gate failures are its verdict's evidence: written once, below
            shown = [w for w in task.warnings if not any(w.startswith(f"{m}: the fit is marked untrustworthy")
                                                         for m in task.fitted)]
            lines += [f"- warning: {w}" for w in shown] + ([""] if shown else [])
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
