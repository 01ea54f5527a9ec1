"""Report step 3, figures: which figures the report shows, from the saved files only."""

from __future__ import annotations

from pathlib import Path

from valuedyn.fitting import slug


def figure_plan(sections, loaded: dict[Path, object], diversity: dict | None = None):
    """The figures of the report, per trajectory: ``[(path, [FigureSpec], FigureInputs)]``.
    ``diversity``: trajectory -> :class:`~valuedyn.papers._report_diversity.DiversityResult`
    (its chosen fits are the curves of the diversity figure)."""
    from valuedyn.fitting import load_fit
    from valuedyn.papers._paper import FigureInputs, FigureSpec

    plans = []
    for path, ds in loaded.items():
        mine = [t for t in sections if t.trajectory == path and t.fitted]
        if not mine:
            continue
        stem = slug(path.stem)
        inputs = FigureInputs(
            trajectory=ds,
            fit_paths={t.behaviour: dict(t.fits) for t in mine},
            fits={t.behaviour: {m: load_fit(p) for m, p in t.fits.items()} for t in mine},
            comparisons={t.behaviour: t.table for t in mine},
            winners={t.behaviour: t.verdict["winner"] for t in mine if t.verdict.get("winner")},  # trust-aware, as the text
        )
        specs = [FigureSpec(f"{stem}_fig1_{slug(t.behaviour)}", "trajectories", {"behaviour": t.behaviour}) for t in mine]
        compared = [t.behaviour for t in mine if t.table is not None]
        if compared:
            specs.append(FigureSpec(f"{stem}_fig2_comparison", "comparison", {"behaviours": compared}))
        specs.append(FigureSpec(f"{stem}_fig3_timescales", "timescales", {"behaviours": [t.behaviour for t in mine]}))
        # only where the file holds the part (an imported log never does: a note says so)
        placements = [str(p) for p in ds["placement"].values] if "placement_histogram" in ds and "placement" in ds.coords else []
        if any(p in ("place_plant", "plant") for p in placements):
            specs.append(FigureSpec(f"{stem}_fig4_plant_histogram", "placement_histogram", {"placement": "plant"}))
        # the analysis of a winner only: an undecided comparison names no model to analyse
        specs += [FigureSpec(f"{stem}_fig6_analysis_{slug(t.behaviour)}", "analysis",
                             {"behaviour": t.behaviour, "model": t.verdict["winner"]}) for t in mine if t.verdict["winner"]]
        if diversity and path in diversity:
            view = diversity[path]
            options = {"models": {b: [m] for b, m in view.chosen.items()}}
            if view.probe is not None:
                options["probe"] = str(view.probe)
            specs.append(FigureSpec(f"{stem}_fig7_diversity", "diversity", options))
        plans.append((path, specs, inputs))
    return plans


FIGURE_CAPTIONS = {
    "trajectories": "Data per seed (dots) with each model's posterior median mean (line) and 90% posterior predictive band.",
    "comparison": "ELPD difference to the best model (PSIS-LOO, ± 2 SE) and stacking weights.",
    "timescales": "Posterior onset times and relaxation timescales of the winning models (median, 50% and 90% intervals), behaviours in order of learning.",
    "placement_histogram": "Plants placed per episode over training: share of finished episodes per count (pooled over seeds), and the mean.",
    "analysis": "Winning model at its posterior median: states over training with fixed points and timescales, and its phase plane or phase line.",
    "diversity": "Diversity (Hill-1: exp of the Shannon entropy) of actions and of events per seed (grey), with the "
                 "population curve (median and 90% band of the seed-mean over posterior draws) of the trustworthy fit "
                 "that speaks for each; dotted: updates at which achievements are first found (seed-pooled unlock rate "
                 ">= 0.1); bottom, where probes exist: behaviour contexts the policy distinguishes per checkpoint.",
}
