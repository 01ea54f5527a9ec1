"""Figures and report text of a conditions fit (``valuedyn conditions``), from the saved file only.

- :func:`plot_condition_effects`: one row per parameter, the 90 % interval and median of
  each pair's effect (difference of the typical values); a clear effect is drawn solid.
- :func:`plot_condition_fits`: one panel per condition, the data of its seeds and each
  seed's fitted curve (posterior median of the model mean) with the condition's typical
  curve's 90 % band.
- :func:`effect_sentences`: one sentence per clear effect; none from an untrustworthy fit
  (one sentence says why instead).
- :func:`conditions_section`: a markdown section of one behaviour (both figures written
  beside it, the table of conditions, the sentences); :func:`render_conditions_figures`
  and :func:`conditions_markdown` are its two halves, for a caller that writes files
  itself (``valuedyn report``, :mod:`valuedyn.papers._report_conditions`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from valuedyn.papers._figures import _env_step_axis, _parameter_units, behaviour_label, fit_arrays
from valuedyn.papers._style import OBSERVED_COLOR, PALETTE, WIDTH_DOUBLE, new_figure, style


def _attrs(idata) -> dict:
    from valuedyn.fitting import conditions_attrs

    return conditions_attrs(idata)


def timescale_effects(idata) -> list[dict]:
    """Effects on the model's relaxation timescales, in env steps per seed: each timescale of
    :func:`~valuedyn.papers._figures.model_timescales` (e.g. the overshoot's decay time 1/beta)
    evaluated at every condition's typical parameter values, then differenced and divided
    per pair of conditions like the parameters (same keys as
    :func:`valuedyn.fitting.analyses._conditions.condition_effects`, ``parameter`` = ``timescale LABEL``)."""
    from valuedyn.fitting import summarise_effect
    from valuedyn.papers._figures import model_timescales

    attrs = _attrs(idata)
    scale = float(idata.attrs["time_scale_env_steps"])
    posterior = idata.posterior
    conditions = [str(c) for c in posterior["condition"].values]
    out = []
    for label, fn, names in model_timescales(str(idata.attrs["model"])):
        if not all(f"{n}_typical" in posterior for n in names):
            continue
        draws = [np.asarray(posterior[f"{n}_typical"].transpose("chain", "draw", "condition").values, float) for n in names]
        with np.errstate(divide="ignore", invalid="ignore"):
            values = scale * np.abs(np.asarray(fn(*draws), float))  # [chain, draw, condition]
            for pair in posterior["pair"].values:
                later, earlier = str(pair).split(" vs ")
                b, a = conditions.index(later), conditions.index(earlier)
                out.append(summarise_effect(f"timescale {label}", str(pair), values[..., b] - values[..., a],
                                            values[..., b] / values[..., a], attrs["trustworthy"]))
    return out


def plot_condition_effects(idata):
    """One row per parameter and per relaxation timescale (:func:`timescale_effects`), one
    interval per pair of conditions: the 90 % interval (line) and median (dot) of the
    difference of the typical values (model units: tau for times, 1/tau for rates,
    normalised level units for levels; timescales in env steps); dashed zero line; a clear effect is drawn
    solid, the others hollow. Title states whether the fit is trustworthy (its stored verdict)."""
    attrs = _attrs(idata)
    effects = attrs["effects"] + timescale_effects(idata)
    parameters = list(dict.fromkeys(e["parameter"] for e in effects))
    pairs = list(dict.fromkeys(e["pair"] for e in effects))
    with style():
        fig, axes = new_figure(len(parameters), 1, row_height=0.22 * len(pairs) + 0.55, width=WIDTH_DOUBLE)
        for row, parameter in enumerate(parameters):
            ax = axes[row, 0]
            for index, pair in enumerate(pairs):
                effect = next(e for e in effects if e["parameter"] == parameter and e["pair"] == pair)
                d = effect["difference"]
                color = PALETTE[index % len(PALETTE)]
                ax.plot([d["low"], d["high"]], [index, index], color=color, linewidth=2.0,
                        label=pair if row == 0 else None)
                ax.plot(d["median"], index, "o", color=color, markersize=4,
                        markerfacecolor=color if effect["clear"] else "white")
            ax.axvline(0.0, color=OBSERVED_COLOR, linestyle="--", linewidth=0.8)
            ax.set_yticks([])
            ax.set_ylim(-0.6, len(pairs) - 0.4)
            label = parameter.replace("timescale ", "timescale\n") + ("\n(env steps)" if parameter.startswith("timescale") else "")
            ax.set_ylabel(label, rotation=0, ha="right", va="center")
        axes[-1, 0].set_xlabel("difference of the typical values (90% interval and median; filled: clear effect)")
        verdict = "trustworthy" if attrs["trustworthy"] else "not trustworthy: no findings"
        fig.suptitle(f"{idata.attrs['model']} on {idata.attrs['behaviour']}: effects between conditions\n(fit {verdict})")
        fig.tight_layout()
        fig.legend(loc="lower center", ncol=1, bbox_to_anchor=(0.5, 0.0))
        legend_height = (0.05 + 0.035 * len(pairs)) * 6.0 / fig.get_figheight()
        fig.subplots_adjust(bottom=min(0.5, 0.08 + legend_height))
    return fig


def plot_condition_fits(idata, *, max_seeds_per_condition: int = 6):
    """One panel per condition (columns): each seed's observed rate (dots) and fitted curve
    (posterior median of the model mean, same colour), and the 90 % band of the model mean
    over that condition's seeds. x: env steps per seed."""
    attrs = _attrs(idata)
    conditions = attrs["conditions"]
    arrays = fit_arrays(idata)
    behaviour = str(idata.attrs["behaviour"])
    ncols = min(3, len(conditions))
    nrows = math.ceil(len(conditions) / ncols)
    with style():
        fig, axes = new_figure(nrows, ncols, row_height=2.2, sharex=True, sharey=True)
        for index, condition in enumerate(conditions):
            ax = axes.flat[index]
            seeds = condition["seeds"][:max_seeds_per_condition]
            level = arrays["level"][:, condition["seeds"]]  # [sample, seed, update]
            band = np.quantile(level.reshape(-1, level.shape[-1]), [0.05, 0.95], axis=0)
            ax.fill_between(arrays["env_step"], band[0], band[1], color=OBSERVED_COLOR, alpha=0.12, linewidth=0)
            for k, seed in enumerate(seeds):
                color = PALETTE[k % len(PALETTE)]
                with warnings.catch_warnings():  # masked updates are NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ax.plot(arrays["env_step"], arrays["observed"][seed], "o", color=color, markersize=1.5, alpha=0.6)
                ax.plot(arrays["env_step"], np.median(arrays["level"][:, seed], axis=0), color=color)
            ax.set_title(f"{condition['name']} ({len(condition['seeds'])} seeds)")
        for ax in axes.flat[len(conditions):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            _env_step_axis(ax)
        for ax in axes[:, 0]:
            ax.set_ylabel(behaviour_label(behaviour))
        fig.suptitle(f"{behaviour}: data and fitted {idata.attrs['model']} per condition")
        fig.tight_layout()
    return fig


def effect_sentences(idata) -> list[str]:
    """One sentence per clear effect on a parameter or a relaxation timescale (90 % interval
    of the difference excludes 0, fit trustworthy), largest sign probability first. An untrustworthy fit gives one sentence
    saying that its effects are not findings, and why; a trustworthy fit without a clear
    effect gives one sentence saying so."""
    attrs = _attrs(idata)
    model, behaviour = idata.attrs["model"], idata.attrs["behaviour"]
    if not attrs["trustworthy"]:
        reasons = "; ".join(attrs["why_not"]) or "diagnostics missing"
        return [f"The {model} fit to {behaviour} across conditions is not trustworthy ({reasons}); "
                "its effects are not reported as findings."]
    effects = attrs["effects"] + timescale_effects(idata)
    clear = sorted((e for e in effects if e["clear"]), key=lambda e: -e["sign_probability"])
    if not clear:
        return [f"No parameter of {model} on {behaviour} differs clearly between the conditions "
                "(every 90 % interval of an effect includes 0)."]
    units = _parameter_units(str(model))
    time_scale = float(idata.attrs.get("time_scale_env_steps", float("nan")))
    sentences = []
    for e in clear:
        later, earlier = e["pair"].split(" vs ")
        d, r = e["difference"], e["ratio"]
        direction = "higher" if e["sign"] > 0 else "lower"
        unit = units.get(e["parameter"], "")
        if e["parameter"].startswith("timescale"):
            amount = f"{abs(d['median']):.3g} env steps"
        elif unit == "tau":  # a time: also in env steps per seed
            amount = f"{abs(d['median']):.3g} (about {abs(d['median']) * time_scale:.3g} env steps)"
        elif unit == "level":
            amount = f"{abs(d['median']):.3g} normalised level units"
        else:
            amount = f"{abs(d['median']):.3g}" + (f" {unit}" if unit and unit != "1" else "")
        sentences.append(
            f"Under {later}, the typical {e['parameter']} of {model} on {behaviour} is {amount} {direction} "
            f"than under {earlier} (90 % interval of the difference {d['low']:.3g} to {d['high']:.3g}; ratio "
            f"{r['median']:.3g}, {r['low']:.3g} to {r['high']:.3g}; probability of this sign {e['sign_probability']:.3f})."
        )
    return sentences


def conditions_stem(idata) -> str:
    """The default stem of a conditions fit's figures: ``conditions_<model>_<kind>_<name>``."""
    return f"conditions_{idata.attrs['model']}_{str(idata.attrs['behaviour']).replace(':', '_')}"


def render_conditions_figures(idata, stem: str | None = None) -> dict[str, dict[str, bytes]]:
    """Both figures of a conditions fit rendered in memory: ``{"<stem>_effects": {"png":
    bytes, "pdf": bytes}, "<stem>_fits": {...}}``; writes nothing."""
    from valuedyn.papers._style import render_figure

    stem = stem or conditions_stem(idata)
    return {f"{stem}_{name}": render_figure(fn(idata))
            for name, fn in (("effects", plot_condition_effects), ("fits", plot_condition_fits))}


def conditions_markdown(idata, *, stem: str | None = None, folder: str = "figures", level: int = 2) -> str:
    """The markdown of one behaviour's conditions fit (heading, conditions table, verdict,
    the two figures as ``folder/<stem>_effects.png`` and ``folder/<stem>_fits.png``, one
    sentence per clear effect); files are named without their folders."""
    attrs = _attrs(idata)
    behaviour = str(idata.attrs["behaviour"])
    stem = stem or conditions_stem(idata)
    verdict = "trustworthy" if attrs["trustworthy"] else "untrustworthy: " + "; ".join(attrs["why_not"])
    lines = [
        f"{'#' * level} {behaviour}: {idata.attrs['model']} across conditions",
        "",
        f"Conditions differ in: {', '.join(attrs['differing_settings'])}. Fit: {verdict}.",
        "",
        "| condition | files | seeds |",
        "|---|---|---|",
    ]
    for c in attrs["conditions"]:
        lines.append(f"| {c['name']} | {', '.join(Path(f).name for f in c['files'])} | {len(c['seeds'])} |")
    lines += ["", f"![effects]({folder}/{stem}_effects.png)", "", f"![fits]({folder}/{stem}_fits.png)", ""]
    lines += effect_sentences(idata)
    return "\n".join(lines) + "\n"


def conditions_section(idata, figure_folder, *, stem: str | None = None, level: int = 2) -> str:
    """A markdown section for one behaviour's conditions fit: writes the two figures
    (PNG and PDF) into ``figure_folder`` as ``<stem>_effects`` and ``<stem>_fits`` and returns
    the section text (:func:`conditions_markdown`). Figure links are relative to
    ``figure_folder``'s parent."""
    from valuedyn.papers._style import write_rendered

    folder = Path(figure_folder)
    for name, payload in render_conditions_figures(idata, stem).items():
        write_rendered(payload, folder / name)
    return conditions_markdown(idata, stem=stem, folder=folder.name, level=level)
