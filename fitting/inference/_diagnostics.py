"""Convergence diagnostics of every fit (ArviZ): R-hat, bulk and tail ESS, divergences,
tree-depth hits, E-BFMI; and the verdict ``trustworthy``.

Thresholds (binding): R-hat <= 1.01, bulk and tail ESS >= 400, no divergent transition.
A fit that misses one is untrustworthy, with one reason per miss. Tree-depth hits and
an E-BFMI below 0.3 are reported as warnings (they cost efficiency, not validity).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3
#: Pareto k above which PSIS-LOO is unreliable for an observation (Vehtari et al. 2017)
PARETO_K_MAX = 0.7
#: bulk and tail ESS at which sampling may stop before its last draw (``min_draws``): a
#: quarter above the gate's, so that a fit stopped there is not one at the gate's edge
STOP_ESS = int(1.25 * ESS_MIN)


def stop_check_interval(min_draws: int) -> int:
    """Draws per chain between two checks of the early stop after the first (at
    ``min_draws``): half of it, at least 100."""
    return max(100, min_draws // 2)


@contextlib.contextmanager
def pareto_k_counted():
    """Silence ArviZ's raw "Estimated shape parameter of Pareto distribution is greater
    than 0.70" warning inside a block whose caller counts the observations with high Pareto
    k and states them in its own result (comparisons, rankings, the observation choice);
    otherwise it reaches stderr twice per affected fit, in no one's words."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        yield


def _diagnosed_variables(idata, parameter_names: list[str]) -> list[str]:
    return [name for name in parameter_names if name in idata.posterior]


def convergence(posterior) -> tuple[dict, float, float, float]:
    """R-hat and bulk / tail ESS of every variable of ``posterior`` (an xarray Dataset with
    chain and draw dimensions): name -> the worst over its elements, and the worst over all
    (R-hat max, bulk ESS min, tail ESS min; non-finite values skipped)."""
    import arviz as az

    rhat = az.rhat(posterior)
    ess_bulk = az.ess(posterior, method="bulk")
    ess_tail = az.ess(posterior, method="tail")

    def extreme(ds, fn):
        values = [float(fn(np.asarray(ds[v].values))) for v in ds.data_vars]
        values = [v for v in values if np.isfinite(v)]
        return float(fn(np.asarray(values))) if values else float("nan")

    worst = {}
    for name in posterior.data_vars:
        worst[name] = {
            "rhat": float(np.nanmax(np.asarray(rhat[name].values))),
            "ess_bulk": float(np.nanmin(np.asarray(ess_bulk[name].values))),
            "ess_tail": float(np.nanmin(np.asarray(ess_tail[name].values))),
        }
    return worst, extreme(rhat, np.nanmax), extreme(ess_bulk, np.nanmin), extreme(ess_tail, np.nanmin)


def passes_with_margin(posterior) -> bool:
    """Whether draws so far (``posterior`` as for :func:`convergence`) already pass the
    gate's R-hat and reach :data:`STOP_ESS` bulk and tail ESS: the sampler's early stop."""
    _, rhat_max, ess_bulk_min, ess_tail_min = convergence(posterior)
    return bool(np.isfinite(rhat_max) and rhat_max <= RHAT_MAX and ess_bulk_min >= STOP_ESS and ess_tail_min >= STOP_ESS)


def diagnose(idata, parameter_names: list[str], max_tree_depth: int, failed_solves: int = 0,
             draws_cut: dict | None = None) -> dict:
    """Diagnostics dict stored (as JSON) in the fit file's ``diagnostics`` attribute.
    ``draws_cut``: the sampler's record of draws cut after a saturated warmup (or None)."""
    import arviz as az

    names = _diagnosed_variables(idata, parameter_names)
    posterior = idata.posterior[names]
    n_chains = posterior.sizes["chain"]
    worst, rhat_max, ess_bulk_min, ess_tail_min = convergence(posterior)
    stats = idata.sample_stats
    divergences = int(np.asarray(stats["diverging"].values).sum())
    treedepth_hits = int((np.asarray(stats["n_steps"].values) >= 2**max_tree_depth - 1).sum())
    try:
        ebfmi = np.asarray(az.bfmi(idata))
        ebfmi_min = float(np.min(ebfmi))
    except Exception:  # a constant energy (degenerate chain) has no E-BFMI
        ebfmi_min = float("nan")

    reasons, warnings = [], []
    if n_chains < 2:
        reasons.append("R-hat needs at least 2 chains")
    if not np.isfinite(rhat_max) or rhat_max > RHAT_MAX:
        bad = max(worst, key=lambda k: worst[k]["rhat"] if np.isfinite(worst[k]["rhat"]) else np.inf)
        reasons.append(f"R-hat {rhat_max:.3f} > {RHAT_MAX} (worst: {bad})")
    if not np.isfinite(ess_bulk_min) or ess_bulk_min < ESS_MIN:
        bad = min(worst, key=lambda k: worst[k]["ess_bulk"])
        reasons.append(f"bulk ESS {ess_bulk_min:.0f} < {ESS_MIN} (worst: {bad})")
    if not np.isfinite(ess_tail_min) or ess_tail_min < ESS_MIN:
        bad = min(worst, key=lambda k: worst[k]["ess_tail"])
        reasons.append(f"tail ESS {ess_tail_min:.0f} < {ESS_MIN} (worst: {bad})")
    if divergences:
        extra = f", {failed_solves} failed ODE solves among the proposals" if failed_solves else ""
        reasons.append(f"{divergences} divergent transitions{extra}")
    if draws_cut:
        reasons.append(f"{saturation_phrase(draws_cut)}, so only {draws_cut['to']} of {draws_cut['from']} draws per chain were run")
    if treedepth_hits:
        warnings.append(f"{treedepth_hits} transitions hit the maximum tree depth {max_tree_depth}")
    if np.isfinite(ebfmi_min) and ebfmi_min < EBFMI_MIN:
        warnings.append(f"E-BFMI {ebfmi_min:.2f} < {EBFMI_MIN} in some chain")
    return {
        "rhat_max": rhat_max,
        "ess_bulk_min": ess_bulk_min,
        "ess_tail_min": ess_tail_min,
        "divergences": divergences,
        "treedepth_hits": treedepth_hits,
        "ebfmi_min": ebfmi_min,
        "failed_solves": int(failed_solves),
        "draws_cut": draws_cut,
        "trustworthy": int(not reasons),
        "reasons": reasons,
        "warnings": warnings,
        "per_parameter": worst,
        "thresholds": {"rhat_max": RHAT_MAX, "ess_min": ESS_MIN},
    }


def format_diagnostics(diagnostics: dict) -> str:
    verdict = "trustworthy" if diagnostics["trustworthy"] else "UNTRUSTWORTHY"
    lines = [
        f"diagnostics: {verdict}: R-hat max {diagnostics['rhat_max']:.3f}, ESS bulk min {diagnostics['ess_bulk_min']:.0f}, "
        f"tail min {diagnostics['ess_tail_min']:.0f}, divergences {diagnostics['divergences']}, "
        f"tree-depth hits {diagnostics['treedepth_hits']}, E-BFMI min {diagnostics['ebfmi_min']:.2f}, "
        f"failed solves {diagnostics['failed_solves']}"
        + (f", ODE grid error {diagnostics['ode_error']:.1g}" if diagnostics.get("ode_error") is not None else "")
    ]
    for reason in diagnostics["reasons"]:
        lines.append(f"  untrustworthy: {reason}")
    for warning in diagnostics["warnings"]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def saturation_phrase(cut: dict) -> str:
    """What the sampler's ``draws_cut`` record says: where the warmup saturated the tree
    depth and, when it stopped early, after how many iterations (records written before
    the windows were named describe the warmup's last stage)."""
    window = cut.get("window")
    where = f"warmup iterations {window[0]}-{window[1]}" if window else "its last stage"
    text = f"the warmup saturated the tree depth ({cut['share_at_cap']:.0%} of the transitions of {where} at the cap {cut['max_tree_depth']}"
    if cut.get("warmup_run") is not None and cut["warmup_run"] < cut.get("warmup_asked", cut["warmup_run"]):
        text += f"; it stopped there, after {cut['warmup_run']} of {cut['warmup_asked']} iterations"
    return text + ")"
