"""Model comparison (``valuedyn compare``): PSIS-LOO, stacking weights, leave-future-out.

PSIS-LOO (ArviZ ``loo`` / ``compare`` with stacking) scores how well each fit predicts a
left-out update *inside* the window: interpolation. Trajectories are time series, so
the leave-future-out (LFO) check refits every model on the updates with
``tau <= lfo_fraction`` (same compiled sampler, the later cells masked, the level scale
recomputed from the early cells only) and scores the log predictive density of the
held-out later updates: ``elpd_lfo = sum_i log mean_draws p(y_i | theta)``. Under a
structured deviation each held-out cell is predicted from the fitted updates alone, many
updates ahead (the deviation relaxing towards its stationary law,
:func:`~valuedyn.fitting.inference._deviation.forecast_log_lik`): where PSIS-LOO's
one-step-ahead score lets the deviation's state carry the prediction, this score rests on
the mechanism's extrapolation, so it is the criterion that tells mechanisms apart under
the same deviation.

Only fits of the same data are compared: same trajectory hash, behaviour and selection,
and the same structured deviation (``--deviation``): a deviation fit stores each
observation's log-likelihood with its own innovation integrated out (attribute
``loglik_kind``, :mod:`valuedyn.fitting.inference._deviation`), a score of another kind
than a smooth fit's, so mechanisms are compared under the same deviation process.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from valuedyn._config import config_from_json
from valuedyn._errors import ValuedynError
from valuedyn._io import file_sha256, refuse_overwrite, write_text_atomic
from valuedyn.fitting.inference._diagnostics import PARETO_K_MAX, pareto_k_counted
from valuedyn.fitting.inference._store import fit_attrs, load_fit


#: standard errors of the difference by which a model's elpd must lead to be clearly ahead
CLEAR_DSE_MULTIPLE = 2


def elpd_clearly_ahead(d_elpd: float, dse: float) -> bool:
    """The one rule for "predicts clearly better" (rankings, the observation choice, the
    report's tables): the elpd difference exceeds :data:`CLEAR_DSE_MULTIPLE` standard
    errors of the difference, ``d_elpd > 2 dse``."""
    return bool(d_elpd > CLEAR_DSE_MULTIPLE * dse)


@dataclasses.dataclass
class CompareResult:
    """``table``: pandas DataFrame indexed by fit name with elpd_loo, se, d_elpd, dse,
    weight (stacking), p_loo, pareto_k_bad (observations with k > 0.7), and when LFO ran
    elpd_lfo, lfo_se, lfo_n, lfo_trustworthy and lfo_pointwise (a list per fit: the held-out
    cells' log predictive densities). ``warnings``: list of strings."""

    table: object
    warnings: list[str]
    paths: dict[str, str]

    def to_dict(self) -> dict:
        return {
            "table": json.loads(self.table.to_json(orient="index")),
            "warnings": list(self.warnings),
            "paths": dict(self.paths),
        }

    def format(self) -> str:
        columns = [c for c in ("elpd_loo", "se", "d_elpd", "dse", "weight", "p_loo", "pareto_k_bad", "elpd_lfo", "lfo_se", "lfo_n") if c in self.table.columns]
        text = self.table[columns].to_string(float_format=lambda v: f"{v:.2f}")
        lines = ["model comparison (PSIS-LOO, stacking weights; elpd_lfo: leave-future-out)", text]
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _same_data(entries) -> None:
    first_path, first = entries[0]
    for path, attrs in entries[1:]:
        for key in ("trajectory_sha256", "behaviour", "selection"):
            if attrs.get(key) != first.get(key):
                raise ValuedynError(
                    f"compare needs fits of the same data; {path} and {first_path} differ in {key} "
                    f"({attrs.get(key)!r} vs {first.get(key)!r}); fit every model to the same trajectory, behaviour and selection"
                )


def _same_deviation(entries) -> None:
    """Refuse fits whose deviation settings differ (a file from before the option: none)."""
    first_path, first = entries[0]
    for path, attrs in entries[1:]:
        if attrs.get("deviation", "none") != first.get("deviation", "none"):
            raise ValuedynError(
                f"compare needs fits under the same deviation; {path} has --deviation {attrs.get('deviation', 'none')} "
                f"and {first_path} {first.get('deviation', 'none')} (their log-likelihoods score different things); "
                "fit every model with the same --deviation"
            )


def _names(paths: list[Path], attrs: list[dict]) -> list[str]:
    models = [a["model"] for a in attrs]
    names = []
    for path, a in zip(paths, attrs):
        name = a["model"] if models.count(a["model"]) == 1 else f"{a['model']}:{path.stem}"
        names.append(name)
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    return names


def forecast_scores(observation, constrained: dict, data, last_tau, batch: int = 250) -> np.ndarray:
    """Leave-future-out log predictive densities [N, S, U] of a deviation fit's draws
    (``constrained``: the refit's constrained draws, [N, ...], from its own data) on
    ``data`` (every cell observed), :func:`~valuedyn.fitting.inference._deviation.forecast_log_lik`
    per draw, in batches of ``batch`` draws."""
    import jax
    import jax.numpy as jnp

    from valuedyn.fitting.inference._deviation import forecast_log_lik

    y_filled = observation.fill(data.y, data.mask)
    last = jnp.asarray(last_tau, jnp.float32)
    score = jax.jit(jax.vmap(lambda draw: forecast_log_lik(observation, draw, data, y_filled, last)))
    n = next(iter(constrained.values())).shape[0]
    parts = []
    for start in range(0, n, batch):
        piece = {name: jnp.asarray(values[start:start + batch]) for name, values in constrained.items()}
        parts.append(np.asarray(score(piece)))
    return np.concatenate(parts)


def leave_future_out(idata, fraction: float, *, progress: bool = True) -> dict:
    """Refit the model of ``idata`` on ``tau <= fraction`` and score the held-out future."""
    import jax
    import jax.numpy as jnp
    from scipy.special import logsumexp

    from valuedyn.fitting.inference._deviation import deviation_of, with_deviation
    from valuedyn.fitting.inference._fit import get_model, infer, selection_of, settings_from
    from valuedyn.fitting.inference._observation import OBSERVATION_MODELS
    from valuedyn.fitting.settings import FitConfig

    attrs = fit_attrs(idata)
    config = config_from_json(FitConfig, idata.attrs["config"])
    trajectory = Path(attrs["trajectory"])
    if not trajectory.exists():
        raise ValuedynError(
            f"leave-future-out refits from the trajectory {trajectory}, which does not exist; "
            "restore it or pass --no-lfo"
        )
    if file_sha256(trajectory) != attrs["trajectory_sha256"]:
        raise ValuedynError(
            f"the trajectory {trajectory} changed since the fit (hash differs); refit, or pass --no-lfo"
        )
    model = get_model(attrs["model"])
    observation = with_deviation(OBSERVATION_MODELS[attrs["observation_model"]], attrs.get("deviation", "none"))
    # the fit's own cells, in its blocks of updates: the refit has the fit's likelihood
    selection = selection_of(config, trajectory)
    train = selection.mask & (selection.tau[None, :] <= fraction)
    heldout = selection.mask & (selection.tau[None, :] > fraction)
    if not train.any() or not heldout.any():
        raise ValuedynError(
            f"--lfo-fraction {fraction} leaves {int(train.sum())} observed cells to fit and {int(heldout.sum())} "
            "to predict; choose a fraction in (0, 1) with observations on both sides"
        )
    train_selection = selection.with_mask(train)
    inference = infer(
        model, observation, attrs["pooling"], train_selection, settings_from(config), seed=config.seed + 1,
        progress=progress, desc=f"LFO refit {model.name}", parameterization=config.parameterization,
    )
    # predict every observed cell with the early-data posterior, score the future ones
    data = inference.data._replace(mask=jnp.asarray(selection.mask))
    key = jax.random.PRNGKey(config.seed + 2)
    if deviation_of(observation) == "none":
        _, log_lik, _ = inference.compiled.outputs(data, inference.flat_z, key, replicate=False)
    else:
        # the deviation's mode from the fitted cells alone (outputs on the refit's own data: with
        # every cell unmasked it would see the future and score it one step ahead)
        constrained, _, _ = inference.compiled.outputs(inference.data, inference.flat_z, key, replicate=False)
        last_tau = np.where(train, selection.tau[None, :], -np.inf).max(axis=1)  # [S]
        log_lik = forecast_scores(observation, constrained, data, last_tau)
    cells = log_lik[:, heldout]  # [N, n_heldout]
    lpd = logsumexp(cells, axis=0) - np.log(cells.shape[0])
    return {
        "elpd_lfo": float(lpd.sum()),
        "lfo_se": float(np.sqrt(lpd.size) * lpd.std()),
        "lfo_n": int(lpd.size),
        "lfo_trustworthy": int(inference.diagnostics["trustworthy"]),
        # each held-out cell's log predictive density (the order of the fit's obs cells):
        # what a ranking by leave-future-out takes its differences' standard error from
        "lfo_pointwise": [float(v) for v in lpd],
    }


def compare_fits(paths, *, lfo: bool = True, lfo_fraction: float = 0.75, out=None, force: bool = False,
                 progress: bool = True) -> CompareResult:
    """Compare fit files of the same data; see the module docstring."""
    import arviz as az

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValuedynError("compare needs at least one fit file; pass FIT [FIT ...]")
    if not 0.0 < lfo_fraction < 1.0:
        raise ValuedynError(f"--lfo-fraction must lie in (0, 1); received {lfo_fraction}")
    if out is not None:
        refuse_overwrite(out, force)
    fits = [load_fit(p) for p in paths]
    attrs = [fit_attrs(f) for f in fits]
    _same_data(list(zip(paths, attrs)))
    _same_deviation(list(zip(paths, attrs)))
    names = _names(paths, attrs)
    warnings = []
    loo = {}
    for name, idata in zip(names, fits):
        with pareto_k_counted():  # counted here and stated in the warnings
            result = az.loo(idata, pointwise=True)
        k = np.asarray(result.pareto_k)
        bad = int((k > PARETO_K_MAX).sum())
        loo[name] = (result, bad)
        if bad:
            warnings.append(
                f"{name}: {bad} of {k.size} observations have Pareto k > {PARETO_K_MAX}; PSIS-LOO is unreliable there"
            )
    for name, a in zip(names, attrs):
        if not int(a.get("trustworthy", 0)):
            warnings.append(f"{name}: the fit is marked untrustworthy ({'; '.join(a.get('diagnostics', {}).get('reasons', []))})")
    if len(fits) > 1:
        with pareto_k_counted():
            table = az.compare(dict(zip(names, fits)), ic="loo", method="stacking")
        table = table.rename(columns={"elpd_diff": "d_elpd"})
    else:
        result = loo[names[0]][0]
        import pandas as pd

        table = pd.DataFrame(
            {"elpd_loo": [result.elpd_loo], "se": [result.se], "d_elpd": [0.0], "dse": [0.0], "weight": [1.0], "p_loo": [result.p_loo]},
            index=names,
        )
    table["pareto_k_bad"] = [loo[n][1] for n in table.index]
    if lfo:
        scores = {name: leave_future_out(idata, lfo_fraction, progress=progress) for name, idata in zip(names, fits)}
        import pandas as pd

        for column in ("elpd_lfo", "lfo_se", "lfo_n", "lfo_trustworthy"):
            table[column] = [scores[n][column] for n in table.index]
        table["lfo_pointwise"] = pd.Series([scores[n]["lfo_pointwise"] for n in table.index], index=table.index, dtype=object)
        for name, score in scores.items():
            if not score["lfo_trustworthy"]:
                warnings.append(f"{name}: the leave-future-out refit misses the diagnostic thresholds")
    result = CompareResult(table=table, warnings=warnings, paths=dict(zip(names, map(str, paths))))
    if out is not None:
        write_text_atomic(out, json.dumps(result.to_dict(), indent=2, default=float))
    return result
