"""Figure and sentences of the memory horizon over training per hidden size, from saved files only.

- :func:`plot_memory_horizons`: the horizon of one feature (lags, y) over training (env
  steps per seed, x), one colour per condition (hidden size): each seed's horizon at each
  probed checkpoint (dots) and, from the conditions fit when there is one, the condition's
  typical fitted curve (posterior median of the model mean over its seeds, in lags) with
  its 90 % band.
- :func:`memory_effect_sentences`: one sentence per clear effect of the condition on the
  horizon's onset, rate, final value or level before the onset (the logistic_onset
  parameters ``t0``, ``k``, ``ceiling``, ``floor``), in env steps and lags; none from an
  untrustworthy fit (one sentence says why instead).
"""

from __future__ import annotations

import warnings

import numpy as np

from valuedyn.papers._figures import _env_step_axis, fit_arrays
from valuedyn.papers._style import PALETTE, WIDTH_DOUBLE, new_figure, style

#: what each parameter of the memory model is, read as a property of the memory horizon
MEMORY_PARAMETER_WORDS = {
    "t0": "onset (the time the horizon is halfway from its start to its final value)",
    "k": "rate of growth",
    "ceiling": "final horizon",
    "floor": "horizon before the onset",
}


def _seed_curves(ds, feature: str):
    """(env_step [C], horizon [S, C] float with NaN where no lag was scored)."""
    horizon = np.asarray(ds["memory_horizon"].sel(feature=feature).values, float)
    scored = np.asarray(ds["memory_lags_scored"].sel(feature=feature).values) > 0
    return np.asarray(ds["env_step"].values, float), np.where(scored, horizon, np.nan)


def plot_memory_horizons(groups, feature: str, idata=None):
    """The horizon of ``feature`` over training per condition.

    ``groups``: ``[(condition name, [memory Datasets])]`` in the order to draw (the order of
    the conditions fit); ``idata``: that feature's conditions fit (None: data only). Lags on
    y (``0 .. num_lags``), env steps per seed on x."""
    num_lags = max(int(ds.attrs["num_lags"]) for _, datasets in groups for ds in datasets)
    curves = {}
    if idata is not None:
        from valuedyn.fitting import conditions_attrs

        arrays = fit_arrays(idata)
        exposure = float(np.max(idata.constant_data["exposure"].values))  # num_lags of the fitted files
        for condition in conditions_attrs(idata)["conditions"]:
            level = arrays["level"][:, condition["seeds"]] * exposure  # [sample, seed, update], in lags
            typical = np.median(level, axis=1)  # the condition's seeds' median curve per draw
            curves[condition["name"]] = (arrays["env_step"], np.quantile(typical, [0.05, 0.5, 0.95], axis=0))
    with style():
        fig, axes = new_figure(1, 1, width=WIDTH_DOUBLE, row_height=3.0)
        ax = axes[0, 0]
        for index, (name, datasets) in enumerate(groups):
            name = name or "all runs"  # one condition: no differing setting names it
            color = PALETTE[index % len(PALETTE)]
            for number, ds in enumerate(datasets):
                env_step, horizon = _seed_curves(ds, feature)
                with warnings.catch_warnings():  # unscored checkpoints are NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    for s, row in enumerate(horizon):
                        ax.plot(env_step, row, "o", color=color, markersize=2.5, alpha=0.55,
                                label=f"{name} (data)" if number == 0 and s == 0 else None)
            if name in curves:  # (a fit's conditions are named, never "")
                x, (low, median, high) = curves[name]
                ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
                ax.plot(x, median, color=color, linewidth=1.6, label=f"{name} (fit)")
        ax.set_ylim(-0.5, num_lags + 0.5)
        ax.set_ylabel(f"memory horizon of {feature} (lags, of {num_lags})")
        _env_step_axis(ax)
        ax.legend(loc="upper left", fontsize="small", ncol=2)
        model = f"; lines: {idata.attrs['model']} across conditions, median and 90 % band" if idata is not None else ""
        ax.set_title(f"memory:{feature} over training per condition (dots: each seed's horizon{model})")
        fig.tight_layout()
    return fig


def memory_effect_sentences(idata) -> list[str]:
    """One sentence per clear effect (90 % interval of the difference of the typical values
    excludes 0, fit trustworthy) on the horizon's onset, rate, final value or early level,
    largest sign probability first; one sentence when the fit is untrustworthy or has no
    clear effect. Times in env steps, levels in lags."""
    from valuedyn.fitting import conditions_attrs

    attrs = conditions_attrs(idata)
    behaviour, model = str(idata.attrs["behaviour"]), str(idata.attrs["model"])
    if not attrs["trustworthy"]:
        reasons = "; ".join(attrs["why_not"]) or "diagnostics missing"
        return [f"The {model} fit to {behaviour} across conditions is not trustworthy ({reasons}); no effect on the "
                "memory horizon is stated from it."]
    clear = sorted((e for e in attrs["effects"] if e["clear"]), key=lambda e: -e["sign_probability"])
    if not clear:
        return [f"No property of the memory horizon {behaviour} (onset, rate, final value) differs clearly between "
                f"the conditions ({', '.join(attrs['differing_settings'])}; every 90 % interval of an effect includes 0)."]
    lags = float(np.max(idata.constant_data["exposure"].values))
    time_scale = float(idata.attrs.get("time_scale_env_steps", float("nan")))
    sentences = []
    for e in clear:
        later, earlier = e["pair"].split(" vs ")
        d, p = e["difference"], e["parameter"]
        word = MEMORY_PARAMETER_WORDS.get(p, p)
        if p == "t0":
            how = "later" if e["sign"] > 0 else "earlier"
            amount = (f"comes {abs(d['median']) * time_scale:.3g} env steps {how} ({abs(d['median']):.3g} of the window; "
                      f"90 % interval of the difference {d['low'] * time_scale:.3g} to {d['high'] * time_scale:.3g} env steps)")
        elif p in ("ceiling", "floor"):
            how = "higher" if e["sign"] > 0 else "lower"
            amount = (f"is {abs(d['median']) * lags:.3g} lags {how} (90 % interval of the difference "
                      f"{d['low'] * lags:.3g} to {d['high'] * lags:.3g} lags)")
        else:
            how = "faster" if e["sign"] > 0 else "slower"
            r = e["ratio"]
            amount = f"is {how}: {r['median']:.3g} times (90 % interval {r['low']:.3g} to {r['high']:.3g})"
        sentences.append(f"Under {later}, the {word} of the memory horizon {behaviour} {amount} than under {earlier} "
                         f"(probability of this sign {e['sign_probability']:.3f}).")
    return sentences
