"""The six figure kinds. Each takes loaded data (trajectory Dataset, fit InferenceData,
comparison tables, SBC Dataset, a model) and returns a matplotlib Figure.

Nothing here trains, fits or writes files: figures are built from saved files only,
and :mod:`valuedyn.papers._style` renders and writes them.

Units: the x axis of every developmental plot is env steps per seed (the trajectory's
``env_step`` coordinate); model times in tau are converted with the fit file's
``time_origin_env_step`` and ``time_scale_env_steps``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from valuedyn._errors import ValuedynError
from valuedyn.papers._style import OBSERVED_COLOR, model_colors, new_figure, style

#: Figure kind -> function name; the paper declaration names figures by these kinds.
FIGURE_KINDS = ("trajectories", "comparison", "timescales", "placement_histogram", "sbc_ranks", "analysis", "diversity")


# ---------------------------------------------------------------- labels


def behaviour_label(behaviour: str) -> str:
    """Axis label for a behaviour string such as ``event:place_plant``."""
    kind, _, name = behaviour.partition(":")
    pretty = name.replace("_", " ")
    return {
        "unlock": f"{pretty}: unlock rate",
        "event": f"{pretty}: per episode",
        "action": f"{pretty}: share of actions",
        "diversity": f"{pretty} (diversity)",
    }.get(kind, behaviour)


def _env_step_axis(ax) -> None:
    ax.set_xlabel("env steps per seed")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))


# ---------------------------------------------------------------- fit arrays


def _values(group, name: str, dims: Sequence[str]) -> np.ndarray:
    var = group[name]
    if set(dims) <= set(var.dims):
        var = var.transpose(*dims, ...)
    return np.asarray(var.values)


def fit_attr(idata, name: str):
    """A top-level attribute of a fit file (``valuedyn fit`` writes every one the figures read)."""
    attrs = getattr(idata, "attrs", None) or {}
    if name not in attrs:
        raise ValuedynError(f"fit file has no attribute {name!r}; it was not written by `valuedyn fit`, re-run the fit")
    return attrs[name]


def fit_arrays(idata) -> dict[str, np.ndarray]:
    """Observed rates and posterior predictive rates of a fit, in observation units.

    Returns ``env_step[update]``, ``seed[seed]``, ``mask[seed, update]``,
    ``observed[seed, update]`` (y / exposure, NaN where masked),
    ``predictive[sample, seed, update]`` (posterior predictive y / exposure, NaN where
    masked) and ``level[sample, seed, update]`` (the model mean).
    """
    constant = idata.constant_data
    exposure = _values(constant, "exposure", ("seed", "update")).astype(float)
    stored_mask = _values(constant, "mask", ("seed", "update")).astype(bool)
    mask = stored_mask & (exposure > 0)
    env_step = np.asarray(constant["env_step"].values, dtype=float)
    cells = np.nonzero(stored_mask)  # a fit file's ``obs`` dimension: its observed cells in this order

    def on_grid(var, dims):  # [..., obs] -> [..., seed, update], NaN where masked
        if "obs" not in var.dims:
            return np.asarray(var.transpose(*dims, ...).values, float)  # a layout before ``obs``
        values = np.asarray(var.transpose(..., "obs").values, float)
        out = np.full(values.shape[:-1] + stored_mask.shape, np.nan)
        out[..., cells[0], cells[1]] = values
        return out

    observed = on_grid(idata.observed_data["y"], ("seed", "update"))
    safe = np.where(mask, exposure, 1.0)
    predictive = on_grid(idata.posterior_predictive["y"], ("chain", "draw", "seed", "update"))
    predictive = predictive.reshape((-1,) + predictive.shape[2:]) / safe
    level = _values(idata.posterior, "level", ("chain", "draw", "seed", "update")).astype(float)
    level = level.reshape((-1,) + level.shape[2:])
    seeds = constant["seed"].values if "seed" in constant.coords else np.arange(observed.shape[0])
    return {
        "env_step": env_step,
        "seed": np.asarray(seeds),
        "mask": mask,
        "observed": np.where(mask, observed / safe, np.nan),
        "predictive": np.where(mask, predictive, np.nan),
        "level": level,
    }


# ---------------------------------------------------------------- figure 1


def plot_behaviour_fits(fits: Mapping[str, object], behaviour: str | None = None, *, max_seeds: int = 8):
    """Figure 1: the behaviour per seed (dots) with each model's posterior predictive band.

    ``fits``: model name -> InferenceData, all fitted to the same behaviour and data.
    One panel per seed (at most ``max_seeds``); a line is the model's posterior median
    mean (``level``), the band its 90% posterior predictive interval of y / exposure.
    """
    if not fits:
        raise ValuedynError("figure 'trajectories' needs at least one fit file; declare fits for the behaviour")
    names = sorted(fits)
    colors = model_colors(names)
    arrays = {name: fit_arrays(fits[name]) for name in names}
    reference = arrays[names[0]]
    behaviour = behaviour or str(fit_attr(fits[names[0]], "behaviour"))
    seeds = reference["seed"][:max_seeds]
    ncols = min(4, len(seeds))
    nrows = math.ceil(len(seeds) / ncols)
    with style():
        fig, axes = new_figure(nrows, ncols, row_height=1.9, sharex=True, sharey=True)
        for i, seed in enumerate(seeds):
            ax = axes.flat[i]
            for name in names:
                a = arrays[name]
                with warnings.catch_warnings():  # masked updates are all-NaN columns
                    warnings.simplefilter("ignore", RuntimeWarning)
                    band = np.nanquantile(a["predictive"][:, i], [0.05, 0.95], axis=0)
                ax.fill_between(a["env_step"], band[0], band[1], color=colors[name], alpha=0.2, linewidth=0)
                ax.plot(a["env_step"], np.median(a["level"][:, i], axis=0), color=colors[name], label=name)
            obs = reference["observed"][i]
            ax.plot(reference["env_step"], obs, "o", color=OBSERVED_COLOR, markersize=1.8, label="observed")
            ax.set_title(f"seed {seed}")
        for ax in axes.flat[len(seeds):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            _env_step_axis(ax)
        for ax in axes[:, 0]:
            ax.set_ylabel(behaviour_label(behaviour))
        axes.flat[0].legend(loc="best")
        fig.suptitle(f"{behaviour}: data and 90% posterior predictive bands")
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------- figure 2


def _comparison_columns(table) -> dict[str, np.ndarray]:
    """Normalise a comparison table (pandas DataFrame indexed by model) to arrays."""
    columns = {str(c).lower(): c for c in table.columns}

    def pick(*candidates):
        for candidate in candidates:
            if candidate in columns:
                return np.asarray(table[columns[candidate]].values, dtype=float)
        raise ValuedynError(f"comparison table lacks a column among {candidates}; found {list(table.columns)}")

    return {
        "model": np.asarray([str(i) for i in table.index]),
        "d_elpd": pick("d_elpd", "elpd_diff"),
        "dse": pick("dse"),
        "weight": pick("weight"),
    }


def plot_model_comparison(comparisons: Mapping[str, object]):
    """Figure 2: ELPD difference to the best model (with its SE) and stacking weights.

    ``comparisons``: behaviour -> comparison table (DataFrame indexed by model with
    ``d_elpd`` (or ``elpd_diff``), ``dse`` and ``weight`` columns).
    """
    if not comparisons:
        raise ValuedynError("figure 'comparison' needs at least one behaviour with two or more fits")
    behaviours = list(comparisons)
    tables = {b: _comparison_columns(comparisons[b]) for b in behaviours}
    all_models = sorted({m for t in tables.values() for m in t["model"]})
    colors = model_colors(all_models)
    offsets = {m: (k - (len(all_models) - 1) / 2) * 0.8 / max(1, len(all_models)) for k, m in enumerate(all_models)}
    with style():
        fig, axes = new_figure(1, 2, row_height=max(1.8, 0.45 * len(behaviours) + 1.0))
        ax_elpd, ax_weight = axes[0]
        for row, b in enumerate(behaviours):
            t = tables[b]
            left = 0.0
            for model, d, se, w in zip(t["model"], t["d_elpd"], t["dse"], t["weight"]):
                # ArviZ reports elpd_diff >= 0 for worse models; plot as a loss (<= 0)
                ax_elpd.errorbar(-abs(d), row + offsets[model], xerr=2 * se, fmt="o", color=colors[model], markersize=3,
                                 capsize=2, label=model if row == 0 else None)
                ax_weight.barh(row, w, left=left, color=colors[model], height=0.6)
                left += w
        for ax in (ax_elpd, ax_weight):
            ax.set_yticks(range(len(behaviours)))
            ax.set_yticklabels(behaviours)
            ax.invert_yaxis()
        ax_elpd.axvline(0.0, color=OBSERVED_COLOR, linewidth=0.6)
        ax_elpd.set_xlabel("ELPD difference to best (± 2 SE)")
        ax_weight.set_xlabel("stacking weight")
        ax_weight.set_xlim(0, 1)
        ax_weight.set_yticklabels([])
        handles = [__import__("matplotlib.patches", fromlist=["Patch"]).Patch(color=colors[m], label=m) for m in all_models]
        ax_weight.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=min(4, len(all_models)))
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------- figure 3


def _parameter_units(model_name: str) -> dict[str, str]:
    from valuedyn.models import get_model

    return {p.name: p.unit for p in get_model(model_name).parameters}


_TIMESCALE_CACHE: dict[str, list[tuple[str, object, list[str]]]] = {}


def model_timescales(model_name: str) -> list[tuple[str, object, list[str]]]:
    """The relaxation timescales of a model's long-run (stable) fixed points, symbolically.

    ``[(label, numpy_function, parameter_names)]``: ``numpy_function(*draws)`` gives the
    timescale in tau from parameter draws. Taken from :meth:`Model.analysis` (sympy,
    1/|Re eigenvalue| at the stable fixed points); a model without symbolic fixed points
    falls back to 1/rate for each parameter in units of 1/tau.
    """
    if model_name in _TIMESCALE_CACHE:
        return _TIMESCALE_CACHE[model_name]
    import sympy as sp

    from valuedyn.models import get_model

    model = get_model(model_name)
    names = [p.name for p in model.parameters]
    found: dict[str, tuple[str, object, list[str]]] = {}
    try:
        analysis = model.analysis()
    except Exception:  # an analysis sympy cannot finish is no reason to lose the figure
        analysis = None
    if analysis is not None and analysis.symbolic:
        derived = {str(k): v for k, v in analysis.derived.items()}
        for fixed_point in analysis.fixed_points:
            if fixed_point.stability != "stable":
                continue
            for expr in fixed_point.timescales:
                label = sp.sstr(expr)
                plain = sp.sympify(expr)
                for _ in range(3):  # derived symbols may refer to each other
                    plain = plain.subs({sym: derived[sym.name] for sym in plain.free_symbols if sym.name in derived})
                symbols = sorted(plain.free_symbols, key=lambda x: x.name)
                if not symbols or any(sym.name not in names for sym in symbols):
                    continue
                fn = sp.lambdify(symbols, plain, modules="numpy")
                found.setdefault(label, (label, fn, [sym.name for sym in symbols]))
    if not found:
        for p in model.parameters:
            if p.unit == "1/tau":
                found[f"1/{p.name}"] = (f"1/{p.name}", lambda rate: 1.0 / rate, [p.name])
    _TIMESCALE_CACHE[model_name] = list(found.values())
    return _TIMESCALE_CACHE[model_name]


def timescale_draws(idata) -> dict[str, np.ndarray]:
    """Posterior draws (over chains, draws and seeds) of a fit's times, in env steps.

    ``onset:<param>`` for each parameter in units of tau (converted with the fit's time
    origin and scale) and ``timescale:<expr>`` for each relaxation timescale of the
    model's stable fixed points (:func:`model_timescales`; scaled to env steps).
    """
    model_name = str(fit_attr(idata, "model"))
    units = _parameter_units(model_name)
    scale = float(fit_attr(idata, "time_scale_env_steps"))
    origin = float(fit_attr(idata, "time_origin_env_step"))
    posterior = idata.posterior
    out = {}
    for name, unit in units.items():
        if unit == "tau" and name in posterior:
            out[f"onset:{name}"] = origin + scale * np.asarray(posterior[name].values, dtype=float).ravel()
    for label, fn, names in model_timescales(model_name):
        if all(n in posterior for n in names):
            draws = [np.asarray(posterior[n].values, dtype=float) for n in names]
            draws = np.broadcast_arrays(*draws)
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.abs(np.asarray(fn(*draws), dtype=float)).ravel()
            out[f"timescale:{label}"] = scale * values[np.isfinite(values)]
    return out


def learning_env_step(idata) -> float:
    """When a behaviour is learned: the median onset if the model has one, else the
    env step at which the observed rate (pooled over seeds) first reaches half its range."""
    draws = timescale_draws(idata)
    onsets = [np.median(v) for k, v in draws.items() if k.startswith("onset:")]
    if onsets:
        return float(min(onsets))
    a = fit_arrays(idata)
    pooled = np.nanmean(a["observed"], axis=0)
    finite = np.isfinite(pooled)
    if not finite.any():
        return float("inf")
    low, high = np.nanmin(pooled), np.nanmax(pooled)
    crossed = np.flatnonzero(finite & (pooled >= low + 0.5 * (high - low)))
    return float(a["env_step"][crossed[0]]) if crossed.size else float("inf")


def plot_timescales(fits: Mapping[str, object]):
    """Figure 3: posteriors of onset times and timescales (1 / rate) across behaviours.

    ``fits``: behaviour -> InferenceData of the model chosen for it (normally the
    winner). Behaviours are ordered by when they are learned (earliest on top). Each
    row shows the posterior median, 50% and 90% intervals (pooled over seeds).
    """
    if not fits:
        raise ValuedynError("figure 'timescales' needs at least one fit file")
    order = sorted(fits, key=lambda b: (learning_env_step(fits[b]), b))
    draws = {b: timescale_draws(fits[b]) for b in order}
    with style():
        fig, axes = new_figure(1, 2, row_height=max(1.8, 0.45 * len(order) + 1.0))
        ax_onset, ax_scale = axes[0]
        for row, b in enumerate(order):
            model = str(fit_attr(fits[b], "model"))
            entries = sorted(draws[b].items())
            for k, (key, values) in enumerate(entries):
                kind, _, pname = key.partition(":")
                ax = ax_onset if kind == "onset" else ax_scale
                same_kind = [e for e in entries if e[0].startswith(kind)]
                j = [e[0] for e in same_kind].index(key)
                y = row + (j - (len(same_kind) - 1) / 2) * 0.25
                q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
                ax.plot([q[0], q[4]], [y, y], color=OBSERVED_COLOR, linewidth=0.8)
                ax.plot([q[1], q[3]], [y, y], color=OBSERVED_COLOR, linewidth=2.2)
                ax.plot(q[2], y, "o", color="white", markeredgecolor=OBSERVED_COLOR, markersize=3)
                ax.annotate(pname, (q[4], y), xytext=(2, 0), textcoords="offset points", fontsize=6, va="center")
            ax_onset.annotate(model, (0, row), xycoords=("axes fraction", "data"), xytext=(2, 6),
                              textcoords="offset points", fontsize=6, color="#777777")
        for ax in (ax_onset, ax_scale):
            ax.set_yticks(range(len(order)))
            ax.set_yticklabels(order)
            ax.set_ylim(len(order) - 0.5, -0.5)
        ax_scale.set_yticklabels([])
        ax_onset.set_xlabel("onset (env steps)")
        ax_onset.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        ax_scale.set_xscale("log")
        ax_scale.set_xlabel("timescale 1/rate (env steps)")
        fig.suptitle("posterior medians, 50% and 90% intervals; behaviours in order of learning")
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------- figure 4


def plot_placement_histogram(trajectory, placement: str = "plant", seeds: Sequence[int] | None = None):
    """Figure 4: how many times per episode a block is placed, over training.

    ``trajectory``: a loaded trajectory Dataset; ``placement``: a label of its
    ``placement`` coordinate; ``seeds``: seed labels to pool (default all). Colour is
    the share of finished episodes in each count bin (the last bin is "or more"); the
    line is the mean count per episode computed from the histogram.
    """
    if "placement_histogram" not in trajectory:
        lacked = "its log (imported) lacked them" if "source_format" in trajectory.attrs else "the file lacks that part"
        raise ValuedynError(f"the trajectory holds no placement histograms ({lacked}); the placement_histogram figure "
                            "needs a trajectory written by `valuedyn train`")
    labels = [str(v) for v in trajectory["placement"].values] if "placement" in trajectory.coords else []
    # the trainer labels placements by their event ("place_plant"); accept "plant" too
    matches = [i for i, label in enumerate(labels) if placement in (label, label.removeprefix("place_"))]
    if not matches:
        raise ValuedynError(f"placement {placement!r} is not in the trajectory; its placements are {labels}")
    hist = trajectory["placement_histogram"].isel(placement=matches[0])
    placement = labels[matches[0]].removeprefix("place_")
    if seeds is not None:
        hist = hist.sel(seed=list(seeds))
    counts = np.asarray(hist.transpose("seed", "update", "count_bin").values, dtype=float).sum(axis=0)  # [update, bin]
    episodes = counts.sum(axis=1)
    share = np.where(episodes[:, None] > 0, counts / np.maximum(episodes[:, None], 1), np.nan)
    env_step = np.asarray(trajectory["env_step"].values, dtype=float)
    bins = np.arange(counts.shape[1])
    mean = np.where(episodes > 0, (counts * bins).sum(axis=1) / np.maximum(episodes, 1), np.nan)
    edges_x = np.concatenate([[env_step[0] - (env_step[1] - env_step[0] if env_step.size > 1 else 1)], env_step])
    edges_y = np.arange(counts.shape[1] + 1) - 0.5
    with style():
        fig, axes = new_figure(1, 1, width=WIDTH_SINGLE_PLUS, row_height=2.4)
        ax = axes[0, 0]
        mesh = ax.pcolormesh(edges_x, edges_y, share.T, cmap="viridis", vmin=0.0, vmax=1.0, shading="flat")
        ax.plot(env_step, mean, color="white", linewidth=1.0, label="mean per episode")
        ax.set_ylabel(f"{placement} placements per episode")
        ticks = list(bins)
        ax.set_yticks(ticks)
        ax.set_yticklabels([str(b) for b in bins[:-1]] + [f"≥{bins[-1]}"])
        _env_step_axis(ax)
        fig.colorbar(mesh, ax=ax, label="share of finished episodes")
        ax.legend(loc="upper right", labelcolor="white")
        fig.tight_layout()
    return fig


WIDTH_SINGLE_PLUS = 4.5


# ---------------------------------------------------------------- figure 5


def sbc_ranks(sbc) -> tuple[dict[str, np.ndarray], int]:
    """``({parameter: ranks [simulation]}, L)`` of the Dataset ``valuedyn sbc`` writes:
    ``rank[simulation, parameter]``, ranks among ``thin_to`` = L posterior draws (values 0..L)."""
    if "rank" not in sbc.data_vars or "parameter" not in sbc["rank"].dims:
        raise ValuedynError(
            f"SBC file holds no rank[simulation, parameter] (variables: {list(sbc.data_vars)}); "
            "pass a file written by `valuedyn sbc`"
        )
    rank = sbc["rank"]
    names = [str(v) for v in rank["parameter"].values]
    values = {n: np.asarray(rank.isel(parameter=i).values).ravel() for i, n in enumerate(names)}
    draws = int(sbc.attrs["thin_to"]) if "thin_to" in sbc.attrs else int(max(np.max(v) for v in values.values()))
    return values, draws


def plot_sbc_ranks(sbc, *, bins: int | None = None):
    """Figure 5: simulation-based calibration rank histograms, one panel per parameter.

    ``sbc``: the Dataset ``valuedyn sbc`` writes (rank of each prior draw among L
    posterior draws, values 0..L). A calibrated model gives uniform ranks; the grey band
    is the 99% interval of a bin count under uniformity (binomial); panel titles give
    the chi-square uniformity p-value the SBC run stored.
    """
    from scipy import stats

    ranks, draws = sbc_ranks(sbc)
    bins = int(bins or sbc.attrs.get("bins", 10))
    names = list(ranks)
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    p_chi2 = {}
    if "p_chi2" in sbc.data_vars:
        p_chi2 = {str(k): float(v) for k, v in zip(sbc["parameter"].values, sbc["p_chi2"].values)}
    with style():
        fig, axes = new_figure(nrows, ncols, row_height=1.6)
        for ax, name in zip(axes.flat, names):
            values = ranks[name]
            edges = np.linspace(0, draws + 1, bins + 1)
            counts, _ = np.histogram(values, bins=edges)
            n = len(values)
            low, high = stats.binom.ppf([0.005, 0.995], n, 1.0 / bins)
            ax.axhspan(low, high, color="#dddddd", linewidth=0)
            ax.axhline(n / bins, color="#999999", linewidth=0.6)
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=PALETTE_SBC, edgecolor="white", linewidth=0.4)
            ax.set_title(name + (f" (chi2 p = {p_chi2[name]:.2f})" if name in p_chi2 else ""))
            ax.set_xlim(0, draws + 1)
            ax.set_xlabel(f"rank among {draws} draws")
        for ax in axes.flat[len(names):]:
            ax.set_visible(False)
        details = ", ".join(str(sbc.attrs[k]) for k in ("model", "kind", "observation_model", "pooling") if k in sbc.attrs)
        fig.suptitle(f"SBC ranks ({details}; {len(next(iter(ranks.values())))} simulations; grey: 99% band under uniformity)")
        fig.tight_layout()
    return fig


PALETTE_SBC = "#0072B2"


# ---------------------------------------------------------------- figure 6


def plot_model_analysis(idata, *, points: int = 400):
    """Figure 6: the fitted model's dynamics and the timescales of its analysis.

    At the posterior median parameters of the fit: left, the model's states over env
    steps with the stable fixed points (dashed), the onset (dotted) and each relaxation
    timescale from :meth:`Model.analysis` drawn as a bar starting at the onset; right,
    the phase plane of the first two states (streamlines of the vector field after the
    change point, the trajectory, fixed points: filled = stable) or, for a one-state
    model, the phase line d state/d tau against the state.
    """
    import jax
    import jax.numpy as jnp

    from valuedyn.fitting import posterior_medians
    from valuedyn.models import get_model

    model = get_model(str(fit_attr(idata, "model")))
    params = posterior_medians(idata)
    analysis = model.analysis(params)
    scale = float(fit_attr(idata, "time_scale_env_steps"))
    origin = float(fit_attr(idata, "time_origin_env_step"))
    units = {p.name: p.unit for p in model.parameters}
    tau = np.linspace(0.0, 1.0, points)
    states, ok = model.states({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, jnp.asarray(tau, jnp.float32))
    states = {k: np.asarray(v, dtype=float) for k, v in states.items()}
    env_step = origin + scale * tau
    onset = [params[n] for n, u in units.items() if u == "tau"]
    stable = [fp for fp in analysis.fixed_points if fp.values is not None and str(fp.stability) == "stable"]
    palette = model_colors(model.state_names)
    with style():
        fig, axes = new_figure(1, 2, row_height=2.4)
        ax_time, ax_phase = axes[0]
        for name in model.state_names:
            ax_time.plot(env_step, states[name], color=palette[name], label=name)
        for fp in stable:
            for name, value in fp.values.items():
                ax_time.axhline(value, color=palette.get(name, OBSERVED_COLOR), linestyle="--", linewidth=0.6)
        start = origin + scale * (onset[0] if onset else 0.0)
        for t0 in onset:
            ax_time.axvline(origin + scale * t0, color=OBSERVED_COLOR, linestyle=":", linewidth=0.8)
        timescales = sorted({float(s) for fp in stable for s in (fp.timescales_numeric or ()) if np.isfinite(s)})
        top = max(float(np.nanmax(v)) for v in states.values()) if states else 1.0
        for k, ts in enumerate(timescales):
            y = top * (1.05 + 0.08 * k)
            ax_time.plot([start, start + scale * ts], [y, y], color=OBSERVED_COLOR, linewidth=2.0, solid_capstyle="butt")
            ax_time.annotate(f"{scale * ts:.3g} steps", (start + scale * ts, y), xytext=(3, 0),
                             textcoords="offset points", fontsize=6, va="center")
        ax_time.set_ylabel("state (level units)")
        _env_step_axis(ax_time)
        ax_time.legend(loc="center right")
        field = jax.jit(lambda y: model.vector_field(params, y))
        if len(model.state_names) >= 2:
            a, b = model.state_names[:2]
            after = tau >= (onset[0] if onset else 0.0)  # the reset at the onset is a jump, not a flow
            xs, ys = states[a][after], states[b][after]
            pad_x = 0.15 * (np.ptp(xs) or 1.0)
            pad_y = 0.15 * (np.ptp(ys) or 1.0)
            gx = np.linspace(xs.min() - pad_x, xs.max() + pad_x, 25)
            gy = np.linspace(ys.min() - pad_y, ys.max() + pad_y, 25)
            X, Y = np.meshgrid(gx, gy)
            rest = [float(states[n][-1]) for n in model.state_names[2:]]
            grid = np.stack([X.ravel(), Y.ravel()] + [np.full(X.size, r) for r in rest], axis=1).astype(np.float32)
            flow = np.asarray(jax.vmap(field)(jnp.asarray(grid)), dtype=float)
            U, V = flow[:, 0].reshape(X.shape), flow[:, 1].reshape(X.shape)
            ax_phase.streamplot(gx, gy, U, V, color="#bbbbbb", density=0.8, linewidth=0.6, arrowsize=0.6)
            ax_phase.plot(xs, ys, color=OBSERVED_COLOR, linewidth=1.2)
            for fp in analysis.fixed_points:
                if fp.values is None or a not in fp.values or b not in fp.values:
                    continue
                filled = str(fp.stability) == "stable"
                ax_phase.plot(fp.values[a], fp.values[b], "o", markersize=5, color=OBSERVED_COLOR,
                              markerfacecolor=OBSERVED_COLOR if filled else "white")
            ax_phase.set_xlabel(a)
            ax_phase.set_ylabel(b)
            ax_phase.set_title("phase plane after the onset")
        else:
            (a,) = model.state_names
            xs = states[a]
            values = [float(v) for fp in analysis.fixed_points if fp.values for v in fp.values.values()]
            low = min([xs.min()] + values)
            high = max([xs.max()] + values)
            pad = 0.1 * ((high - low) or 1.0)
            grid = np.linspace(low - pad, high + pad, 200).astype(np.float32)[:, None]
            flow = np.asarray(jax.vmap(field)(jnp.asarray(grid)), dtype=float)[:, 0]
            ax_phase.plot(grid[:, 0], flow, color=palette[a])
            ax_phase.axhline(0.0, color="#999999", linewidth=0.6)
            for fp in analysis.fixed_points:
                if fp.values is None:
                    continue
                filled = str(fp.stability) == "stable"
                ax_phase.plot(fp.values[a], 0.0, "o", markersize=5, color=OBSERVED_COLOR,
                              markerfacecolor=OBSERVED_COLOR if filled else "white")
            ax_phase.set_xlabel(a)
            ax_phase.set_ylabel(f"d{a}/dtau")
            ax_phase.set_title("phase line after the onset")
        label = ", ".join(f"{k}={v:.3g}" for k, v in params.items())
        fig.suptitle(f"{model.name} at the posterior median" + ("" if bool(ok) else " [solve failed]")
                     + f"\n{label} (tau units)", fontsize=7)
        fig.tight_layout()
    return fig
