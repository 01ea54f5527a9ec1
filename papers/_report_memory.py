"""Report: environmental memory over training per hidden size, when memory probes exist.

A trajectory ``RUN.nc`` of the report has a memory probe when ``RUN.memory.nc`` lies beside
it (``valuedyn probe RUN.nc --memory``; :func:`memory_files_beside`). The memory files are
never read as trajectories (:mod:`._report_inputs` skips and refuses them); here they are
read as memory files (:func:`valuedyn.fitting.inference._select_memory.open_memory`).

The section (``## Memory horizon over training``):

- the runs grouped into conditions by the training configs the probes store (the settings
  that differ, e.g. ``gru_hidden``; :func:`valuedyn.fitting.group_conditions`), with each
  condition's horizon per feature at the first and the last checkpoint (mean over seeds);
- the features drawn: those whose horizon exceeds 0 at some checkpoint of some run, in the
  probe's order, at most :data:`MAX_MEMORY_FEATURES` (a horizon that is 0 everywhere has
  no development to show);
- with two or more conditions, per feature one conditions fit of ``memory:FEATURE`` with
  :data:`MEMORY_MODEL` (its parameters are the onset, rate and final value the issue asks
  about), by the fitting room at the report's sampler settings, cached in the fits folder
  (:func:`valuedyn.fitting.fit_conditions_cached`); the horizon is a count of lags out of
  those probed, the binomial family, beta-binomial by default
  (:mod:`valuedyn.fitting.inference._select_memory`);
- a feature whose horizon exceeds 0 at single checkpoints only (never at
  :data:`MIN_CHECKPOINTS_WITH_MEMORY` checkpoints of one seed) is drawn, not fitted, and the
  section says why: that is what chance crossings of the margin look like;
- per feature a figure of the horizon over training per condition, data and fitted curves
  (:func:`valuedyn.papers._memory_figures.plot_memory_horizons`), and one sentence per clear
  effect of the condition (:func:`~valuedyn.papers._memory_figures.memory_effect_sentences`:
  stated only from a trustworthy fit).

Runs of one condition get the figure of their data and one line saying there is nothing to
compare. Nothing here fits or probes itself; that is the fitting room's and data room's job.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from valuedyn._errors import ValuedynError

#: the model of the memory horizon over training: a switch with onset t0, rate k, the level
#: before (floor) and after (ceiling); its effects are the issue's onset, rate and final value
MEMORY_MODEL = "logistic_onset"
#: the most features of the memory probe the report fits (each is one conditions fit)
MAX_MEMORY_FEATURES = 3


@dataclasses.dataclass
class MemoryResult:
    """The memory probes of a report's trajectories and their fits.

    ``files``: memory file -> its Dataset (loaded); ``conditions``: ``[{"name", "settings",
    "files": [memory file names]}]`` in order; ``features``: those fitted / drawn;
    ``fits``: behaviour (``memory:FEATURE``) -> conditions fit file; ``cached``, ``errors``
    likewise; ``text``: one line said for the whole section (else empty)."""

    files: dict[Path, object]
    conditions: list[dict]
    differing: tuple[str, ...]
    features: list[str]
    fits: dict[str, Path] = dataclasses.field(default_factory=dict)
    cached: dict[str, bool] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    text: str = ""

    @property
    def compared(self) -> bool:
        return len(self.conditions) >= 2

    def groups(self) -> list[tuple[str, list]]:
        """``[(condition name, [memory Datasets])]`` in the conditions' order."""
        by_name = {p.name: ds for p, ds in self.files.items()}
        return [(c["name"], [by_name[f] for f in c["files"]]) for c in self.conditions]


def memory_files_beside(trajectories) -> list[Path]:
    """The memory probe files beside ``trajectories`` (``<stem>.memory.nc``), in their order."""
    from valuedyn.fitting import memory_file_for

    return [m for m in (memory_file_for(p) for p in trajectories) if m.is_file()]


#: a feature is fitted when some seed's horizon exceeds 0 at this many checkpoints or more: a
#: horizon at one checkpoint alone, 0 before and after, is what chance crossings of the margin
#: look like (the campaign's GRU runs: 28 lags at one checkpoint of 11, 0 at the other ten), not
#: a development a curve could describe
MIN_CHECKPOINTS_WITH_MEMORY = 2


def _shown_features(datasets) -> tuple[list[str], list[str]]:
    """(features drawn: a horizon above 0 somewhere, at most :data:`MAX_MEMORY_FEATURES`;
    those of them that are fitted: above 0 at :data:`MIN_CHECKPOINTS_WITH_MEMORY` checkpoints
    or more of one seed of one run)."""
    names = [str(f) for f in next(iter(datasets))["feature"].values]
    common = [f for f in names if all(f in ds["feature"].values for ds in datasets)]

    def most_checkpoints(f):  # the most checkpoints of one seed with a horizon above 0
        return max(int((ds["memory_horizon"].sel(feature=f).transpose("seed", "checkpoint").values > 0).sum(axis=1).max())
                   for ds in datasets)

    counts = {f: most_checkpoints(f) for f in common}
    shown = [f for f in common if counts[f] > 0][:MAX_MEMORY_FEATURES]
    return shown, [f for f in shown if counts[f] >= MIN_CHECKPOINTS_WITH_MEMORY]


def report_memory(loaded, config, fits_dir: Path, *, started: float | None = None, log=None) -> MemoryResult | None:
    """Find the memory probes beside the report's trajectories (``loaded``: path -> Dataset)
    and, with two or more conditions, have the fitting room fit each shown feature across
    them (see the module docstring). None when no trajectory has a memory probe. A fit that
    fails, or would start past ``config.time_budget`` seconds after ``started``, is named in
    ``errors``; nothing raises for a comparison that cannot be made."""
    from valuedyn.fitting import fit_conditions_cached, group_conditions
    from valuedyn.fitting import memory_train_config, open_memory
    from valuedyn.papers._report_conditions import common_updates
    from valuedyn.papers._report_inputs import fit_settings

    paths = memory_files_beside(list(loaded))
    if not paths:
        return None
    files = {p: open_memory(p) for p in paths}
    configs = [memory_train_config(ds) for ds in files.values()]
    features, developing = _shown_features(list(files.values()))
    if any(c is None for c in configs):
        missing = [p.name for p, c in zip(paths, configs) if c is None]
        one = [{"name": "", "settings": {}, "files": [p.name for p in paths]}]
        return MemoryResult(files, one, (), features, text=(
            f"{', '.join(missing)} store no training config (attribute 'train_config'), so the hidden sizes are unknown: "
            "no comparison."))
    groups, differing = group_conditions([str(p) for p in paths], configs)

    def order(group):  # hidden sizes 16, 64, 256, not the files' name order 16, 256, 64
        return tuple((0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool)
                     else (1, 0, json.dumps(value, sort_keys=True)) for value in (group.settings[k] for k in differing))

    groups = sorted(groups, key=order)
    conditions = [{"name": g.name, "settings": g.settings, "files": [Path(f).name for f in g.files]} for g in groups]
    result = MemoryResult(files, conditions, differing, features)
    if not features:
        result.text = ("No feature's memory horizon exceeds 0 at any checkpoint of any run: the recurrent states "
                       "never beat the observation-only decoders by the margin, so there is no development to fit.")
        return result
    if not result.compared:
        result.text = (f"All {len(paths)} probed runs were trained with the same settings (seeds and run-only settings "
                       "aside): one condition, so no effect of the hidden size is estimated; the figures show the data.")
        return result
    window, window_text = common_updates(list(files.values()))
    isolated = [f for f in features if f not in developing]
    if isolated:
        result.text = (f"{', '.join(isolated)}: a horizon above 0 at single checkpoints only (never at "
                       f"{MIN_CHECKPOINTS_WITH_MEMORY} checkpoints of one seed), what chance crossings of the margin "
                       "look like rather than a development: drawn, not fitted.")
    for feature in developing:
        behaviour = f"memory:{feature}"
        if config.time_budget and started is not None and time.perf_counter() - started > config.time_budget:
            result.errors[behaviour] = (f"left out for time (--time-budget {config.time_budget} s); rerun with a larger "
                                        "budget, fits made so far are reused")
            continue
        if log is not None:
            log(f"  memory: {behaviour}: {MEMORY_MODEL} across {len(groups)} conditions")
        try:
            result.fits[behaviour], result.cached[behaviour] = fit_conditions_cached(
                paths, behaviour, MEMORY_MODEL, fits_dir, settings=fit_settings(config), seeds=config.seeds,
                max_seeds=config.max_seeds, progress=True, updates=window,
            )
        except Exception as err:  # a failed fit is named in the report, like a failed single fit
            message = str(err) if isinstance(err, ValuedynError) else f"{type(err).__name__}: {err}"
            for p in paths:
                message = message.replace(str(p.resolve()), p.name).replace(str(p), p.name)
            result.errors[behaviour] = message.splitlines()[0] if message else type(err).__name__
    if window is not None:
        result.text = " ".join(filter(None, [result.text, (
            f"The probes span different checkpoints: the conditions are compared on the checkpoints all of "
            f"them have (updates {window.replace(':', '-')}).")]))
    elif window_text:
        result.text = " ".join(filter(None, [result.text, (
            "The probes do not share the start of one grid of checkpoints; the fits name why they were not made.")]))
    return result


def _figure_name(feature: str) -> str:
    return f"memory_horizon_{feature}"


def memory_figures(result: MemoryResult | None) -> dict[str, dict[str, bytes]]:
    """One figure per shown feature (the horizon over training per condition, data and the
    conditions fit's curves where it was made), rendered in memory (name -> {"png", "pdf"})."""
    from valuedyn.fitting import load_fit
    from valuedyn.papers._memory_figures import plot_memory_horizons
    from valuedyn.papers._style import render_figure

    if result is None:
        return {}
    rendered = {}
    for feature in result.features:
        fit = result.fits.get(f"memory:{feature}")
        rendered[_figure_name(feature)] = render_figure(
            plot_memory_horizons(result.groups(), feature, load_fit(fit) if fit is not None else None))
    return rendered


def _horizon_table(result: MemoryResult) -> list[dict]:
    """Per condition and shown feature the horizon (lags) at the first and last checkpoint,
    mean over the condition's seeds (unscored checkpoints left out)."""
    rows = []
    for name, datasets in result.groups():
        for feature in result.features:
            first, last = [], []
            for ds in datasets:
                horizon = np.asarray(ds["memory_horizon"].sel(feature=feature).values, float)
                scored = np.asarray(ds["memory_lags_scored"].sel(feature=feature).values) > 0
                first += horizon[:, 0][scored[:, 0]].tolist()
                last += horizon[:, -1][scored[:, -1]].tolist()
            rows.append({"condition": name, "feature": feature, "num_lags": int(datasets[0].attrs["num_lags"]),
                         "first_update": int(datasets[0]["update"].values[0]),
                         "last_update": int(datasets[0]["update"].values[-1]),
                         "first": float(np.mean(first)) if first else None, "last": float(np.mean(last)) if last else None,
                         "seeds": int(sum(ds.sizes["seed"] for ds in datasets))})
    return rows


def memory_json(result: MemoryResult | None, out: Path) -> dict | None:
    """The ``memory`` of report.json (None without memory probes): the files, conditions,
    horizons at the first and last checkpoint, and per behaviour the fit file, verdict,
    effects and sentences."""
    from valuedyn.fitting import conditions_attrs, load_fit
    from valuedyn.papers._memory_figures import memory_effect_sentences
    from valuedyn.papers._report_results import shown_path

    if result is None:
        return None
    fits = {}
    for behaviour, path in result.fits.items():
        idata = load_fit(path)
        attrs = conditions_attrs(idata)
        fits[behaviour] = {
            "model": MEMORY_MODEL, "file": shown_path(path, out), "cached": result.cached[behaviour],
            "observation_model": str(idata.attrs.get("observation_model")),
            "trustworthy": attrs["trustworthy"], "why_not": attrs["why_not"],
            "verdict": attrs.get("verdict", {}).get("label"), "effects": attrs["effects"],
            "clear_effects": [f"{e['parameter']}: {e['pair']}" for e in attrs["effects"] if e["clear"]],
            "sentences": memory_effect_sentences(idata),
        }
    return {"files": [p.name for p in result.files], "conditions": result.conditions,
            "differing_settings": list(result.differing), "features": result.features, "text": result.text,
            "horizons": _horizon_table(result), "fits": fits, "failed_fits": dict(result.errors)}


def memory_markdown_section(result: MemoryResult | None) -> list[str]:
    """The lines of the report's section ``## Memory horizon over training`` (none without
    memory probes)."""
    from valuedyn.fitting import load_fit
    from valuedyn.papers._memory_figures import memory_effect_sentences

    if result is None:
        return []
    lines = ["## Memory horizon over training", "",
             "The memory horizon of a feature is the largest lag at which the recurrent state decodes it better than "
             "the current observation does, by the probe's margin (`valuedyn probe --memory`). Probes: "
             + ", ".join(f"`{p.name}`" for p in result.files) + ".", ""]
    if result.text:
        lines += [result.text, ""]
    if result.differing:
        lines += [f"Conditions differ in {', '.join(result.differing)}.", ""]
    if result.features:
        lines += ["| condition | feature | seeds | horizon at first checkpoint (update) | at last checkpoint (update) |",
                  "|---|---|---|---|---|"]
        for row in _horizon_table(result):
            def shown(value):
                return "-" if value is None else f"{value:.1f} of {row['num_lags']}"
            lines.append(f"| {row['condition'] or 'all'} | {row['feature']} | {row['seeds']} | {shown(row['first'])} "
                         f"({row['first_update']}) | {shown(row['last'])} ({row['last_update']}) |")
        lines.append("")
    for feature in result.features:
        behaviour = f"memory:{feature}"
        name = _figure_name(feature)
        lines += [f"### {behaviour}", ""]
        if behaviour in result.fits:
            idata = load_fit(result.fits[behaviour])
            lines += [f"{MEMORY_MODEL} across conditions, {idata.attrs.get('observation_model')} observation model "
                      "(the horizon is a count of lags out of those probed).", ""]
        lines += [f"![{name}](figures/{name}.png)", "",
                  f"*The memory horizon of {feature} over training per condition: dots, each seed's horizon at each "
                  "probed checkpoint; lines and bands, the fitted typical curve of each condition (median and 90 % "
                  f"interval), where a fit was made.* ([PDF](figures/{name}.pdf))", ""]
        if behaviour in result.fits:
            lines += [f"- {s}" for s in memory_effect_sentences(load_fit(result.fits[behaviour]))] + [""]
        if behaviour in result.errors:
            lines += [f"- {behaviour} ({MEMORY_MODEL} across conditions): **fit not made**: {result.errors[behaviour]}", ""]
    return lines
