"""Report: does the motif depend on the conditions of training? One section comparing them.

The report's trajectories are grouped into conditions by the training settings that differ
between their stored configs (:func:`valuedyn.fitting.analyses._conditions.group_conditions`; the
run-only settings and seeds are ignored). With one condition the section says so in one
line and nothing more is fitted. With two or more, the fitting room fits one conditions
model per motif behaviour that the report fits with the motif model in every trajectory
(:data:`~valuedyn.fitting.pipeline._plan.PLANT_MOTIF` with
:data:`~valuedyn.papers._report_trust.MOTIF_MODEL`), at the report's sampler settings and
seeds, cached in the fits folder (:func:`valuedyn.fitting.pipeline._cache.fit_conditions_cached`).
Here the saved files are only read: the effects figure, the data with the fitted curves
per condition, and one sentence per clear effect, where an effect is stated only from a
trustworthy fit (the stored verdict of :func:`~valuedyn.fitting.classify_fit`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from valuedyn._errors import ValuedynError


@dataclasses.dataclass
class ConditionsResult:
    """The conditions of a report's trajectories and their fits.

    ``conditions``: ``[{"name", "settings", "trajectories": [file names]}]``;
    ``fits``: behaviour -> fit file; ``cached``: behaviour -> reused from the cache;
    ``errors``: behaviour -> why its fit failed or was not made; ``text``: the one line
    said when nothing is compared (else empty)."""

    conditions: list[dict]
    differing: tuple[str, ...]
    model: str
    fits: dict[str, Path] = dataclasses.field(default_factory=dict)
    cached: dict[str, bool] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    text: str = ""

    @property
    def compared(self) -> bool:
        return len(self.conditions) >= 2


def _training_config(ds) -> dict | None:
    # the fitting room's reader: None for an imported file, whose 'config' holds import settings
    from valuedyn.fitting import training_config

    return training_config(ds.attrs)


def common_updates(datasets) -> tuple[str | None, str]:
    """The update window every trajectory shares, as ``--updates`` spells it, and a sentence
    saying so. Runs of one campaign made to different lengths (a condition still training, or
    stopped early) share the start of one grid: they are compared on the updates all of them
    have, never on a rescaled time axis. ``(None, "")`` when the grids are equal; ``(None,
    reason)`` when they share no common prefix (the fit then refuses with its own message)."""
    import numpy as np

    labels = [np.asarray(ds["update"].values) for ds in datasets]
    steps = [np.asarray(ds["env_step"].values) for ds in datasets]
    n = min(len(x) for x in labels)
    if all(len(x) == n for x in labels):
        return None, ""
    if n == 0 or any(not (np.array_equal(x[:n], labels[0][:n]) and np.array_equal(e[:n], steps[0][:n]))
                     for x, e in zip(labels, steps)):
        return None, "the trajectories do not share the start of one update grid"
    last = int(labels[0][n - 1])
    lengths = ", ".join(str(len(x)) for x in labels)
    return f"{int(labels[0][0])}:{last}", (
        f"The trajectories have {lengths} updates: conditions are compared on the {n} updates they all have "
        f"(updates {int(labels[0][0])}-{last}); each trajectory's own sections use all of its updates.")


def report_conditions(sections, loaded: dict[Path, object], config, fits_dir: Path, *, started: float | None = None,
                      log=None) -> ConditionsResult:
    """Group the trajectories into conditions and, with two or more, have the fitting room
    fit the conditions model of each motif behaviour (see the module docstring). A fit
    that fails, or would start past ``config.time_budget`` seconds after ``started``, is
    named in ``errors``; nothing raises for a comparison that cannot be made."""
    from valuedyn.fitting import PLANT_MOTIF, fit_conditions_cached, group_conditions
    from valuedyn.papers._report_inputs import fit_settings
    from valuedyn.papers._report_trust import MOTIF_MODEL

    paths = list(loaded)
    configs = [_training_config(loaded[p]) for p in paths]
    if len(paths) < 2:
        one = [{"name": "", "settings": {}, "trajectories": [p.name for p in paths]}]
        return ConditionsResult(one, (), MOTIF_MODEL, text=(
            "One trajectory, so one condition of training: no comparison of conditions (pass trajectories trained "
            "with different settings, e.g. --reward-every, to compare them)."))
    missing = [p.name for p, c in zip(paths, configs) if c is None]
    if missing:
        return ConditionsResult([], (), MOTIF_MODEL, text=(
            f"No comparison of conditions: {', '.join(missing)} store no training config (attribute 'config'; an "
            "imported file stores its import settings there), so their conditions are unknown."))
    groups, differing = group_conditions([str(p) for p in paths], configs)
    conditions = [{"name": g.name, "settings": g.settings, "trajectories": [Path(f).name for f in g.files]} for g in groups]
    result = ConditionsResult(conditions, differing, MOTIF_MODEL)
    window, window_text = common_updates([loaded[p] for p in paths]) if len(groups) >= 2 else (None, "")
    if not result.compared:
        result.text = (f"All {len(paths)} trajectories were trained with the same settings (seeds and run-only "
                       "settings aside): one condition, so no comparison of conditions.")
        return result
    for behaviour in PLANT_MOTIF:
        mine = [next((s for s in sections if s.trajectory == p and s.behaviour == behaviour), None) for p in paths]
        if not all(s is not None and MOTIF_MODEL in s.models for s in mine):
            continue  # the report does not fit this motif behaviour with the motif model in every trajectory
        if config.time_budget and started is not None and time.perf_counter() - started > config.time_budget:
            result.errors[behaviour] = (f"left out for time (--time-budget {config.time_budget} s); rerun with a larger "
                                        "budget, fits made so far are reused")
            continue
        # the conditions fit carries the deviation the behaviour's single fits were given in any trajectory
        deviation = "ou" if any(s.deviation.get("model") == "ou" for s in mine) else "none"
        if log is not None:
            log(f"  conditions: {behaviour}: {MOTIF_MODEL} across {len(groups)} conditions"
                + (" with the OU deviation" if deviation != "none" else ""))
        try:
            result.fits[behaviour], result.cached[behaviour] = fit_conditions_cached(
                paths, behaviour, MOTIF_MODEL, fits_dir, settings=fit_settings(config), seeds=config.seeds,
                max_seeds=config.max_seeds, progress=True, deviation=deviation, updates=window,
            )
        except Exception as err:  # a failed fit is named in the report, like a failed single fit
            message = str(err) if isinstance(err, ValuedynError) else f"{type(err).__name__}: {err}"
            for p in paths:  # the report names trajectories by file name only
                message = message.replace(str(p.resolve()), p.name).replace(str(p), p.name)
            result.errors[behaviour] = message.splitlines()[0] if message else type(err).__name__
    if window_text and (result.fits or result.errors):
        result.text = window_text
    if not result.fits and not result.errors:
        result.text = (f"{len(groups)} conditions, but the report fits {MOTIF_MODEL} to none of "
                       f"{', '.join(PLANT_MOTIF)} in every trajectory, so there is nothing to compare "
                       f"(pass --behaviours {PLANT_MOTIF[0]} --models {MOTIF_MODEL} ...).")
    return result


def conditions_figures(result: ConditionsResult) -> dict[str, dict[str, bytes]]:
    """Every figure of the comparison, rendered in memory (name -> {"png", "pdf"})."""
    from valuedyn.fitting import load_fit
    from valuedyn.papers._conditions_figures import render_conditions_figures

    rendered = {}
    for path in result.fits.values():
        rendered.update(render_conditions_figures(load_fit(path)))
    return rendered


def conditions_json(result: ConditionsResult, out: Path) -> dict:
    """The ``conditions`` of report.json: the conditions, and per behaviour the fit file
    (relative to the report folder), its verdict, every effect and the sentences stated."""
    from valuedyn.fitting import conditions_attrs, load_fit
    from valuedyn.papers._conditions_figures import effect_sentences, timescale_effects
    from valuedyn.papers._report_results import shown_path

    fits = {}
    for behaviour, path in result.fits.items():
        idata = load_fit(path)
        attrs = conditions_attrs(idata)
        effects = attrs["effects"] + timescale_effects(idata)
        fits[behaviour] = {
            "model": result.model, "file": shown_path(path, out), "cached": result.cached[behaviour],
            "trustworthy": attrs["trustworthy"], "why_not": attrs["why_not"],
            "verdict": attrs.get("verdict", {}).get("label"),
            "seeds_per_condition": {c["name"]: len(c["seeds"]) for c in attrs["conditions"]},
            "effects": effects, "clear_effects": [f"{e['parameter']}: {e['pair']}" for e in effects if e["clear"]],
            "sentences": effect_sentences(idata),
        }
    return {"n_conditions": len(result.conditions), "differing_settings": list(result.differing),
            "conditions": result.conditions, "text": result.text, "fits": fits, "failed_fits": dict(result.errors)}


def conditions_markdown_section(result: ConditionsResult) -> list[str]:
    """The lines of the report's section ``## Across conditions``."""
    from valuedyn.fitting import load_fit
    from valuedyn.papers._conditions_figures import conditions_markdown

    lines = ["## Across conditions", ""]
    if result.text:
        lines += [result.text, ""]
    if result.compared:
        lines += [f"Conditions differ in {', '.join(result.differing)}:", "",
                  "| condition | trajectories |", "|---|---|"]
        lines += [f"| {c['name']} | {', '.join(c['trajectories'])} |" for c in result.conditions]
        lines.append("")
    for path in result.fits.values():
        lines += [conditions_markdown(load_fit(path), folder="figures", level=3)]
    lines += [f"- {behaviour} ({result.model} across conditions): **fit not made**: {error}"
              for behaviour, error in result.errors.items()]
    if result.errors:
        lines.append("")
    return lines
