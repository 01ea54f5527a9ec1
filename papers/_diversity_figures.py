"""The diversity figure: action and event diversity over training, with the fitted curves,
the moments new rewards are found, and (where probes exist) the behaviour contexts the
policy distinguishes. Built from saved files only (trajectory, fit and probe files).

Units: x is env steps per seed; diversity is the Hill-1 number (exp Shannon entropy) of
an update's action counts or of its finished episodes' event counts.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from valuedyn.fitting.settings import DIVERSITY_BEHAVIOURS
from valuedyn.papers._figures import _env_step_axis
from valuedyn.papers._style import OBSERVED_COLOR, model_colors, new_figure, style

#: the figure's rows: what the agent does (action diversity) above what it achieves (event
#: diversity), the fitting room's diversity behaviours bottom up
DIVERSITY_ROWS = tuple(reversed(DIVERSITY_BEHAVIOURS))
#: a behaviour context counts as distinguished when the policy picks the behaviour's action
#: (probability above the probe threshold) in at least this share of the states where it is possible
CONTEXT_SHARE = 0.1


def contexts_distinguished(probe) -> tuple[np.ndarray, np.ndarray]:
    """``(env_step[checkpoint], count[seed, checkpoint])``: how many behaviour contexts
    (event-kind behaviours of a ``valuedyn probe`` file) the policy acts on in at least
    ``CONTEXT_SHARE`` of their possible probe states."""
    kinds = np.asarray(probe["behaviour_kind"].values).astype(str)
    events = kinds == "event"
    possible = np.asarray(probe["context_states"].values, np.float64)[events]  # [behaviour]
    count = np.asarray(probe["context_count"].transpose("seed", "checkpoint", "behaviour").values, np.float64)[..., events]
    share = np.divide(count, possible, out=np.zeros_like(count), where=possible > 0)
    return np.asarray(probe["env_step"].values, np.float64), (share >= CONTEXT_SHARE).sum(axis=-1)


def _population_band(fit) -> tuple[np.ndarray, np.ndarray]:
    """``(env_step, [3, points])``: 5 %, 50 %, 95 % over draws of the seed-mean fitted curve."""
    from valuedyn.fitting import fitted_curves

    time, curves = fitted_curves(fit, points=200, max_draws=300)
    return time, np.quantile(curves.mean(axis=1), [0.05, 0.5, 0.95], axis=0)


def plot_diversity(trajectory, fits: Mapping[str, Mapping[str, object]] | None = None, probe=None, *,
                   found_threshold: float = 0.1, max_seeds: int = 8):
    """Action diversity (top) and event diversity (middle) per seed over training, each with
    the fitted models' population curves (median and 90 % band over posterior draws of the
    seed-mean curve), the env steps at which each achievement is first found (seed-pooled
    unlock rate >= ``found_threshold``; dotted lines), and, given a probe file, the number of
    behaviour contexts the policy distinguishes at each checkpoint (bottom).

    ``fits``: behaviour (``diversity:actions`` / ``diversity:events``) -> model name ->
    InferenceData; missing behaviours are drawn without curves.
    """
    from valuedyn.fitting import first_found_updates
    from valuedyn.fitting import select_behaviour

    fits = fits or {}
    names = sorted({model for per_model in fits.values() for model in per_model})
    colors = model_colors(names)
    env_step = np.asarray(trajectory["env_step"].values, np.float64)
    updates = np.asarray(trajectory["update"].values)
    found = first_found_updates(trajectory, found_threshold)
    nrows = 3 if probe is not None else 2
    with style():
        fig, axes = new_figure(nrows, 1, row_height=2.1, sharex=True)
        for row, behaviour in enumerate(DIVERSITY_ROWS):
            ax = axes[row, 0]
            selection = select_behaviour(trajectory, behaviour)
            for i in range(min(max_seeds, len(selection.seeds))):
                observed = np.where(selection.mask[i], selection.y[i], np.nan)
                ax.plot(selection.env_step, observed, "-", color=OBSERVED_COLOR, linewidth=0.6, alpha=0.6,
                        label="seeds (observed)" if i == 0 else None)
            for model, fit in sorted(fits.get(behaviour, {}).items()):
                time, band = _population_band(fit)
                ax.fill_between(time, band[0], band[2], color=colors[model], alpha=0.2, linewidth=0)
                ax.plot(time, band[1], color=colors[model], label=f"{model} (seed mean)")
            ax.set_ylabel(f"{behaviour.partition(':')[2]} diversity (Hill-1)")
            ax.legend(loc="best")
        if probe is not None:
            ax = axes[2, 0]
            steps, counts = contexts_distinguished(probe)
            for i in range(min(max_seeds, counts.shape[0])):
                ax.plot(steps, counts[i], "o-", color=OBSERVED_COLOR, markersize=2, linewidth=0.6, alpha=0.7,
                        label="seeds (probe checkpoints)" if i == 0 else None)
            ax.set_ylabel("contexts distinguished")
            ax.legend(loc="best")
        by_update: dict[int, list[str]] = {}
        for name, update in found.items():
            by_update.setdefault(update, []).append(name.replace("_", " "))
        for update, found_names in by_update.items():  # one mark per update, its names joined
            step = float(env_step[np.flatnonzero(updates == update)[0]])
            for ax in axes[:, 0]:
                ax.axvline(step, color="0.6", linestyle=":", linewidth=0.7)
            axes[0, 0].annotate(", ".join(found_names), (step, 1.0), xycoords=("data", "axes fraction"),
                                rotation=90, fontsize=5, va="top", ha="right", color="0.4")
        _env_step_axis(axes[-1, 0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fig.suptitle(f"diversity of behaviour; dotted: achievement first found (pooled unlock rate >= {found_threshold:g})")
            fig.tight_layout()
    return fig
