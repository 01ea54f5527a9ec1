"""Conclusions you can trust: every fit is trustworthy or carries a named cause, and
rankings name a winner only among trustworthy fits.

:func:`classify_fit` (the verdict of one fit file) ->
:class:`Verdict` with ``trustworthy`` or one or more :class:`Cause`:

- **not identified** by these data: a quantity of interest (what a reader reads: onset
  time, rise time, peak, final level, decay time, ...; each model declares its own,
  :class:`valuedyn.models.Quantity`) or a parameter behind one whose posterior is barely
  narrower than its prior (posterior sd over prior sd above :data:`UNIDENTIFIED_SD_RATIO`,
  median over seeds: a parameter in the unconstrained space, a quantity on its declared
  scale, log or linear), or chains in separate modes of similar log density
  (:mod:`valuedyn.fitting.judge._modes`). Two things are reported in the verdict's
  ``notes`` instead, never as "not identified": a weakly pinned *nuisance* parameter
  (behind no quantity of interest, e.g. logistic_onset's floor, the level before an onset
  the run may not show), and a parameter *pressed against a bound of its prior* (at least
  :data:`BOUND_SHARE` of a seed's posterior within :data:`BOUND_BAND` of the prior's range
  from the bound, in at least half the seeds; :func:`pressed_against_bounds`), stated with
  its meaning ("t0 (onset time) ... precedes 2 % of the window, env step 1.0M"): such a
  posterior is narrow, and the unconstrained scale only makes it look wide. The evidence names the parameters and, from
  where in time the model's level responds to each of them (a finite difference of the
  model's solution at the posterior median, out to tau = :data:`HORIZON`), what data would
  pin them: "updates after the end of the run" when most of the response lies past
  tau = 1, else the window of updates where it lies (more episodes or seeds there).
- **misspecified**: the stored posterior predictive checks (:mod:`valuedyn.fitting.judge._check`)
  fail: the 90% interval covers less than :data:`COVERAGE_90_MIN` (or more than
  :data:`COVERAGE_90_MAX`) of the observations, the LOO-PIT is not uniform (KS p below
  :data:`PIT_P_MIN`), or a development statistic has a Bayesian p-value outside
  [:data:`P_EXTREME`, 1 - :data:`P_EXTREME`] in at least two seeds and a quarter of them
  (a stricter level than the check's own 0.05 flags, because 5 statistics x S seeds are
  tested at once).
- **sampler failed**: the gate of :mod:`valuedyn.fitting.inference._diagnostics` (R-hat <= 1.01,
  bulk and tail ESS >= 400, no divergence) fails and the posterior is identified (or
  chains are stuck in a mode of clearly lower density); the evidence names the diagnostic
  and the setting that would fix it, and the cause carries that fix as a :class:`Remedy`
  (machine-readable setting changes, climbing the ladder declared in
  :mod:`valuedyn.fitting.settings`: target acceptance 0.95 -> 0.99 -> 0.995 -> 0.999, tree
  depth +2 up to 12, draws and warmup by the factor the ESS needs, capped; or every chain
  restarted from draws of the best mode). A remedy is always a real change: where the
  ladder has no rung left the sentence says so and the cause has no remedy. The plan
  runner refits such a fit once with its remedy (:func:`valuedyn.fitting.run_plan`).

A fit is ``trustworthy`` when it passes the gate and has no cause. It is ``comparable``
(may enter a ranking) when trustworthy, or when its only problem is separate modes (of
similar density or not) that each pass the gate on their own chains: it then enters
through stacking of its modes (:func:`valuedyn.fitting.judge._modes.stacked_fit`), which gives
a mode that predicts worse a weight near 0.

:func:`rank_fits` turns fits of the same data and their verdicts into a
:class:`Ranking`: PSIS-LOO among comparable fits only; a winner is "clearly" ahead when
``d_elpd > 2 dse`` and no observation of the winner or the runner-up has Pareto k > 0.7.
Fits under a structured deviation are ranked by leave-future-out when it was scored
(``--lfo``): their PSIS-LOO is one step ahead, a score the deviation's state carries.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from valuedyn.fitting.inference._diagnostics import PARETO_K_MAX, pareto_k_counted, saturation_phrase
from valuedyn.fitting.inference._select import format_env_steps
from valuedyn.fitting.inference._store import fit_attrs, load_fit, save_fit
from valuedyn.fitting.judge._compare import CLEAR_DSE_MULTIPLE, elpd_clearly_ahead
from valuedyn.fitting.judge._modes import ModeReport, find_modes, parameter_names, stacked_fit
from valuedyn.fitting.settings import (
    FIT,
    OPTIONS,
    REMEDY_DRAWS_CAP,
    REMEDY_ESS_TARGET,
    REMEDY_MAX_FACTOR,
    REMEDY_MIN_FACTOR,
    REMEDY_WARMUP_CAP,
    TARGET_ACCEPT_LADDER,
    TREE_DEPTH_CAP,
    TREE_DEPTH_STEP,
    FitConfig,
)

UNIDENTIFIED_SD_RATIO = 0.7
#: a seed's parameter is pressed against a bound of its prior when at least this share of
#: its posterior lies within BOUND_BAND of the bound ...
BOUND_SHARE = 0.9
#: ... a band of this fraction of the prior's range (an interval prior) or of the range from
#: the bound to the prior's 99th percentile (a one-sided prior: positive rates and levels)
BOUND_BAND = 0.02
HORIZON = 4.0
COVERAGE_90_MIN = 0.85
COVERAGE_90_MAX = 0.98
PIT_P_MIN = 0.01
P_EXTREME = 0.01
PRIOR_DRAWS = 4000

NOT_IDENTIFIED = "not identified"
MISSPECIFIED = "misspecified"
SAMPLER_FAILED = "sampler failed"


#: FitConfig fields a remedy may change (each an option declared in valuedyn.fitting.settings.OPTIONS)
REMEDY_OPTIONS = ("target_accept", "max_tree_depth", "draws", "warmup", "saturated_draws")


@dataclasses.dataclass(frozen=True)
class Remedy:
    """What a refit changes. ``changes``: ``(option, from, to)`` per setting (FitConfig
    fields of :data:`REMEDY_OPTIONS`, spelled as :data:`valuedyn.fitting.settings.OPTIONS`
    declares them; ``from != to``: never a no-op); ``restart_from_best_mode``: every chain
    restarts from draws of the fit's best mode (FitConfig's ``initial_points``) and warms
    up again."""

    changes: tuple[tuple[str, object, object], ...] = ()
    restart_from_best_mode: bool = False

    def __post_init__(self):
        for name, before, after in self.changes:
            if name not in REMEDY_OPTIONS or name not in OPTIONS or name not in FitConfig.__dataclass_fields__:
                raise ValueError(f"a remedy changes only {', '.join(REMEDY_OPTIONS)}; received {name!r}")
            if before == after:
                raise ValueError(f"a remedy must change what it names; received {name} {before} -> {after}")
        if not self.changes and not self.restart_from_best_mode:
            raise ValueError("a remedy changes a setting or restarts from the best mode; received neither")

    @property
    def settings(self) -> dict:
        """option -> new value."""
        return {name: after for name, _, after in self.changes}

    def describe(self) -> str:
        """The remedy in words, e.g. ``--target-accept 0.99 -> 0.995, --max-tree-depth 8 -> 10``."""
        parts = [f"--{name.replace('_', '-')} {before} -> {after}" for name, before, after in self.changes]
        if self.restart_from_best_mode:
            parts.append("every chain restarted from draws of the best mode, warmup run again")
        return ", ".join(parts)

    def apply(self, config):
        """``config`` (a FitConfig) with the setting changes (the restart's starting points
        are the runner's to fill in: they come from the fit's draws)."""
        return dataclasses.replace(config, **self.settings)

    def to_dict(self) -> dict:
        return {"changes": [list(c) for c in self.changes], "restart_from_best_mode": self.restart_from_best_mode,
                "text": self.describe()}

    @classmethod
    def from_dict(cls, stored: dict) -> "Remedy":
        return cls(tuple(tuple(c) for c in stored.get("changes", ())), bool(stored.get("restart_from_best_mode")))


@dataclasses.dataclass
class Cause:
    """``kind``: one of ``not identified``, ``misspecified``, ``sampler failed``;
    ``summary``: one line for the report; ``evidence``: the numbers behind it;
    ``remedy``: the refit that would fix it (``sampler failed`` only; None: no remedy left)."""

    kind: str
    summary: str
    evidence: dict
    remedy: Remedy | None = None

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "summary": self.summary, "evidence": self.evidence}
        out["remedy"] = None if self.remedy is None else self.remedy.to_dict()
        return out


@dataclasses.dataclass
class Verdict:
    name: str
    model: str
    behaviour: str
    passes_gate: bool
    causes: list[Cause]
    modes: ModeReport
    #: posterior sd / prior sd per model parameter (median over seeds, unconstrained space)
    sd_ratio: dict[str, float]
    gate_reasons: list[str]
    #: posterior sd / prior sd per quantity of interest (median over seeds, on its scale)
    quantity_sd_ratio: dict[str, float] = dataclasses.field(default_factory=dict)
    #: parameter -> how it is pressed against a bound of its prior (:func:`pressed_against_bounds`)
    at_bound: dict[str, dict] = dataclasses.field(default_factory=dict)
    #: what is reported without counting against the fit: weakly pinned nuisance parameters,
    #: parameters pressed against a bound of their prior (with what that means)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def trustworthy(self) -> bool:
        return self.passes_gate and not self.causes

    @property
    def comparable(self) -> bool:
        if self.trustworthy:
            return True
        modes_ok = self.modes.multimodal and all(m.diagnostics.get("trustworthy") for m in self.modes.modes)
        # separate modes, of similar density or not: stacking weighs them by how they predict
        only_modes = all(c.evidence.get("modes") for c in self.causes)
        return bool(modes_ok and only_modes)

    @property
    def remedy(self) -> Remedy | None:
        """The refit its "sampler failed" causes name (their setting changes merged, the
        restart from the best mode when one asks for it); None when none names one."""
        remedies = [c.remedy for c in self.causes if c.kind == SAMPLER_FAILED and c.remedy is not None]
        if not remedies:
            return None
        changes = {}
        for remedy in remedies:
            for name, before, after in remedy.changes:
                changes.setdefault(name, (name, before, after))
        return Remedy(tuple(changes.values()), any(r.restart_from_best_mode for r in remedies))

    @property
    def identified(self) -> bool:
        """No "not identified" cause: every quantity of interest and every parameter behind
        one is pinned (nuisance parameters and bounds of priors are in :attr:`notes`)."""
        return not any(c.kind == NOT_IDENTIFIED for c in self.causes)

    @property
    def identification(self) -> str:
        """"identified", or "not identified: " and why, in one line."""
        if self.identified:
            return "identified"
        return "not identified: " + "; ".join(c.summary for c in self.causes if c.kind == NOT_IDENTIFIED)

    @property
    def label(self) -> str:
        if self.trustworthy:
            return "trustworthy"
        return ", ".join(dict.fromkeys(c.kind for c in self.causes)) or SAMPLER_FAILED

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "model": self.model,
            "behaviour": self.behaviour,
            "trustworthy": self.trustworthy,
            "comparable": self.comparable,
            "label": self.label,
            "passes_gate": self.passes_gate,
            "gate_reasons": list(self.gate_reasons),
            "causes": [c.to_dict() for c in self.causes],
            "modes": self.modes.to_dict(),
            "sd_ratio": dict(self.sd_ratio),
            "identification": self.identification,
            "quantity_sd_ratio": dict(self.quantity_sd_ratio),
            "at_bound": dict(self.at_bound),
            "notes": list(self.notes),
        }

    def format(self) -> str:
        lines = [f"{self.name}: {self.label}"]
        lines.extend(f"  {c.kind}: {c.summary}" for c in self.causes)
        lines.extend(f"  note: {note}" for note in self.notes)
        if self.modes.multimodal:
            lines.extend("  " + line for line in self.modes.format().splitlines())
        return "\n".join(lines)


# ---------------------------------------------------------------- identification
def _model_and_spaces(model_name: str):
    from valuedyn.fitting.inference._fit import get_model
    from valuedyn.fitting.inference._model import parameter_spaces

    model = get_model(model_name)
    return model, parameter_spaces(model)


def prior_sd_unconstrained(space, pooling: str, seed: int = 0) -> float:
    """Prior sd of one seed's parameter in the unconstrained space: the prior itself
    (``none`` / ``complete``), or the population prior ``loc + scale z`` (``hierarchical``,
    the priors of :func:`valuedyn.fitting.inference._model.build_numpyro_model`; a ``conditions`` fit
    has the same prior per condition)."""
    from valuedyn.fitting.inference._model import SCALE_PRIOR_MEAN, SCALE_PRIOR_SD

    rng = np.random.default_rng(seed)
    if pooling in ("hierarchical", "conditions"):
        loc = rng.normal(space.loc_mean, space.loc_sd, PRIOR_DRAWS)
        scale = np.exp(rng.normal(np.log(SCALE_PRIOR_MEAN * space.loc_sd), SCALE_PRIOR_SD, PRIOR_DRAWS))
        return float(np.std(loc + scale * rng.standard_normal(PRIOR_DRAWS)))
    return float(space.loc_sd)


def _unconstrained(space, values: np.ndarray) -> np.ndarray:
    import jax.numpy as jnp

    return np.asarray(space.transform.inv(jnp.asarray(values, jnp.float32)), np.float64)


def posterior_contraction(idata, spaces, pooling: str) -> dict[str, float]:
    """Posterior sd / prior sd per model parameter, unconstrained space, median over seeds."""
    ratios = {}
    for space in spaces:
        if space.name not in idata.posterior:
            continue
        values = np.asarray(idata.posterior[space.name].values, np.float64)  # [chain, draw, seed]
        u = _unconstrained(space, values).reshape(-1, values.shape[-1])
        u = np.where(np.isfinite(u), u, np.nan)
        ratios[space.name] = float(np.nanmedian(np.nanstd(u, axis=0)) / prior_sd_unconstrained(space, pooling))
    return ratios


def prior_parameter_draws(spaces, pooling: str, seed: int = 0) -> dict[str, np.ndarray]:
    """:data:`PRIOR_DRAWS` draws of one seed's parameters from their prior, in their units:
    each parameter's prior (``none`` / ``complete``: its moment-matched normal in the
    unconstrained space, mapped back) or the population prior ``loc + scale z``
    (``hierarchical`` / ``conditions``), as :func:`prior_sd_unconstrained` has them."""
    import jax.numpy as jnp

    from valuedyn.fitting.inference._model import SCALE_PRIOR_MEAN, SCALE_PRIOR_SD

    rng = np.random.default_rng(seed)
    draws = {}
    for space in spaces:
        if pooling in ("hierarchical", "conditions"):
            loc = rng.normal(space.loc_mean, space.loc_sd, PRIOR_DRAWS)
            scale = np.exp(rng.normal(np.log(SCALE_PRIOR_MEAN * space.loc_sd), SCALE_PRIOR_SD, PRIOR_DRAWS))
            u = loc + scale * rng.standard_normal(PRIOR_DRAWS)
        else:
            u = rng.normal(space.loc_mean, space.loc_sd, PRIOR_DRAWS)
        draws[space.name] = np.asarray(space.transform(jnp.asarray(u, jnp.float32)), np.float64)
    return draws


def _on_scale(values: np.ndarray, scale: str) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if scale == "log":
        with np.errstate(all="ignore"):
            values = np.log(np.where(values > 0, values, np.nan))
    return np.where(np.isfinite(values), values, np.nan)


def quantity_contraction(idata, model, spaces, pooling: str) -> dict[str, float]:
    """Posterior sd / prior sd per quantity of interest of ``model`` (on its declared scale,
    log or linear; median over seeds); {} for a model that declares none. The prior sd is
    of the quantity computed from prior draws of one seed's parameters
    (:func:`prior_parameter_draws`)."""
    if not model.quantities or any(s.name not in idata.posterior for s in spaces):
        return {}
    prior = model.quantity_values(prior_parameter_draws(spaces, pooling))
    posterior = model.quantity_values({s.name: np.asarray(idata.posterior[s.name].values, np.float64) for s in spaces})
    ratios = {}
    for quantity in model.quantities:
        prior_sd = float(np.nanstd(_on_scale(prior[quantity.name], quantity.scale)))
        values = _on_scale(posterior[quantity.name], quantity.scale)  # [chain, draw, seed]
        values = values.reshape(-1, values.shape[-1])
        with np.errstate(all="ignore"):
            ratios[quantity.name] = float(np.nanmedian(np.nanstd(values, axis=0)) / prior_sd) if prior_sd > 0 else float("nan")
    return ratios


def _bounds(space) -> tuple[float, float]:
    support = space.prior.support
    lower = float(getattr(support, "lower_bound", -np.inf))
    upper = float(getattr(support, "upper_bound", np.inf))
    return lower, upper


def pressed_against_bounds(idata, model, spaces, pooling: str = "none") -> dict[str, dict]:
    """The parameters pressed against a finite bound of their prior: in at least half the
    seeds, :data:`BOUND_SHARE` of the posterior within :data:`BOUND_BAND` of the prior's
    range from the bound. Returns parameter -> ``{"side": "lower" | "upper", "bound",
    "band", "seeds": [labels], "share": [per pressed seed], "edge": the posterior's 95th
    (lower) or 5th (upper) percentile, most extreme over the pressed seeds}``."""
    seeds = [int(s) for s in np.asarray(idata.posterior["seed"].values)] if "seed" in idata.posterior.coords else None
    prior = None
    out = {}
    for space in spaces:
        if space.name not in idata.posterior:
            continue
        lower, upper = _bounds(space)
        values = np.asarray(idata.posterior[space.name].values, np.float64)
        values = values.reshape(-1, values.shape[-1]) if values.ndim >= 3 else values.reshape(-1, 1)
        labels = seeds if seeds is not None and len(seeds) == values.shape[1] else list(range(values.shape[1]))
        for side, bound in (("lower", lower), ("upper", upper)):
            if not np.isfinite(bound):
                continue
            if np.isfinite(lower) and np.isfinite(upper):
                band = BOUND_BAND * (upper - lower)
            else:
                if prior is None:
                    prior = prior_parameter_draws(spaces, pooling)
                far = np.nanpercentile(prior[space.name], 99 if side == "lower" else 1)
                band = BOUND_BAND * abs(far - bound)
            share = np.mean(np.abs(values - bound) <= band, axis=0)  # [seeds]
            pressed = share >= BOUND_SHARE
            if pressed.sum() >= max(1, int(np.ceil(values.shape[1] / 2))):
                edges = np.percentile(values[:, pressed], 95 if side == "lower" else 5, axis=0)
                out[space.name] = {
                    "side": side, "bound": bound, "band": float(band),
                    "seeds": [labels[i] for i in np.nonzero(pressed)[0]],
                    "share": [float(x) for x in share[pressed]],
                    "edge": float(edges.max() if side == "lower" else edges.min()),
                }
    return out


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %" if abs(fraction) < 0.1 else f"{100 * fraction:.0f} %"


def bound_meaning(attrs: dict, parameter, pressed: dict) -> str:
    """What a parameter pressed against a bound of its prior means, in words: for a time on
    the window's axis (unit ``tau``) where in the run it lies (e.g. "it precedes 2.0 % of
    the window (env step 1.0M)"), otherwise which side of a value it lies on."""
    edge, side = pressed["edge"], pressed["side"]
    where = (f"{parameter.name} ({parameter.doc}) is pressed against its prior's {side} bound {pressed['bound']:g} in "
             f"seeds {pressed['seeds']} ({_percent(min(pressed['share']))} or more of the posterior within "
             f"{pressed['band']:.3g} of it)")
    if parameter.unit == "tau":
        step = format_env_steps(_env_step(attrs, edge))
        if side == "lower":
            what = ("it precedes the window's start" if edge <= 0 else f"it precedes {_percent(edge)} of the window") + \
                f" (95 % of the posterior before tau {edge:.3g}, env step {step})"
        else:
            what = f"it follows {_percent(edge)} of the window (95 % of the posterior after tau {edge:.3g}, env step {step})"
        return f"{where}: {what}; read it as that bound on the time, not as a value"
    relation = "below" if side == "lower" else "above"
    return (f"{where}: it lies {relation} {edge:.3g} {parameter.unit} (95 % of the posterior); read it as that bound, "
            "not as a value")


def where_informative(idata, model, spaces, parameter: str, step: float = 0.1) -> dict:
    """Where in time the model's level responds to ``parameter``: at each seed's posterior
    median, the change of the level when the unconstrained parameter moves by ``step``,
    on tau in [0, :data:`HORIZON`]. Returns the share of the response inside the observed
    window (tau <= 1) and the tau interval holding its central 80%."""
    import jax
    import jax.numpy as jnp

    from valuedyn.fitting.inference._model import observable_for
    from valuedyn.fitting.inference._select import parse_behaviour

    kind, _ = parse_behaviour(fit_attrs(idata)["behaviour"])
    observable = observable_for(model, kind)
    tau = jnp.linspace(0.0, HORIZON, 401)
    median = {s.name: np.median(np.asarray(idata.posterior[s.name].values).reshape(-1, idata.posterior[s.name].shape[-1]), axis=0)
              for s in spaces}
    space = next(s for s in spaces if s.name == parameter)
    moved = dict(median)
    u = _unconstrained(space, median[parameter])
    moved[parameter] = np.asarray(space.transform(jnp.asarray(u + step, jnp.float32)))
    solve = jax.vmap(lambda p: model.solve(p, tau))
    base, ok_base = solve({k: jnp.asarray(v, jnp.float32) for k, v in median.items()})
    shifted, ok_shift = solve({k: jnp.asarray(v, jnp.float32) for k, v in moved.items()})
    response = np.abs(np.asarray(shifted[observable]) - np.asarray(base[observable])).mean(axis=0)  # [T]
    response = np.where(np.isfinite(response), response, 0.0)
    tau = np.asarray(tau)
    total = response.sum()
    solved = bool(np.all(ok_base)) and bool(np.all(ok_shift))
    if total <= 0 or not solved:
        return {"inside_share": float("nan"), "tau_from": float("nan"), "tau_to": float("nan"), "solved": solved}
    cumulative = np.cumsum(response) / total
    return {
        "solved": True,
        "inside_share": float(response[tau <= 1.0].sum() / total),
        "tau_from": float(tau[np.searchsorted(cumulative, 0.1)]),
        "tau_to": float(tau[min(np.searchsorted(cumulative, 0.9), tau.size - 1)]),
    }


def _env_step(attrs: dict, tau: float) -> float:
    return float(attrs.get("time_origin_env_step", 0.0)) + tau * float(attrs.get("time_scale_env_steps", 1.0))


def _what_would_pin(attrs: dict, parameter: str, doc: str, where: dict) -> str:
    if not where.get("solved", True):
        return f"{parameter} ({doc}): where its effect lies is unknown (the model's solution failed on tau in [0, {HORIZON}])"
    if not np.isfinite(where["inside_share"]):
        return f"{parameter} ({doc}): the model's level does not respond to it; no data can pin it"
    if where["inside_share"] < 0.5:
        return (
            f"{parameter} ({doc}): {100 * (1 - where['inside_share']):.0f}% of its effect on the level lies after the "
            f"end of the run; it needs updates past env step {format_env_steps(_env_step(attrs, 1.0))}, up to about "
            f"{format_env_steps(_env_step(attrs, where['tau_to']))}"
        )
    return (
        f"{parameter} ({doc}): its effect lies in env steps {format_env_steps(_env_step(attrs, where['tau_from']))}-"
        f"{format_env_steps(_env_step(attrs, min(where['tau_to'], 1.0)))}; it needs more finished episodes per update or "
        "more seeds there"
    )


# ---------------------------------------------------------------- misspecification
def misspecification(checks: dict) -> tuple[list[str], dict]:
    """Failed predictive checks (see the module docstring): one line each, and evidence."""
    failures, evidence = [], {}
    coverage = float(checks["coverage"]["90"])
    if not COVERAGE_90_MIN <= coverage <= COVERAGE_90_MAX:
        failures.append(f"the 90% predictive interval covers {coverage:.2f} of the observations")
        evidence["coverage_90"] = coverage
    pit_p = float(checks["loo_pit"]["ks_p_value"])
    if pit_p < PIT_P_MIN:
        failures.append(f"LOO-PIT is not uniform (KS p = {pit_p:.2g})")
        evidence["loo_pit_ks_p"] = pit_p
    for statistic, per_seed in checks["p_values"].items():
        extreme = sorted((s for s, p in per_seed.items() if p < P_EXTREME or p > 1 - P_EXTREME), key=int)
        if len(extreme) >= max(2, int(np.ceil(0.25 * len(per_seed)))):
            failures.append(f"{statistic} is off in seeds {', '.join(extreme)} (p outside [{P_EXTREME}, {1 - P_EXTREME}])")
            evidence.setdefault("statistics", {})[statistic] = {s: per_seed[s] for s in extreme}
    return failures, evidence


# ---------------------------------------------------------------- sampler failure
def next_target_accept(target_accept: float) -> float | None:
    """The ladder's next rung above ``target_accept`` (:data:`~valuedyn.fitting.settings.TARGET_ACCEPT_LADDER`);
    None at or above the top."""
    return next((rung for rung in TARGET_ACCEPT_LADDER if rung > target_accept + 1e-9), None)


def deeper_tree(max_tree_depth: int) -> int | None:
    """``max_tree_depth`` + :data:`~valuedyn.fitting.settings.TREE_DEPTH_STEP`, at most
    :data:`~valuedyn.fitting.settings.TREE_DEPTH_CAP`; None at the cap."""
    deeper = min(max_tree_depth + TREE_DEPTH_STEP, TREE_DEPTH_CAP)
    return deeper if deeper > max_tree_depth else None


def _scaled(value: int, factor: float, cap: int) -> int:
    return max(value, min(int(np.ceil(value * factor / 100) * 100), cap))


def sampler_advice(diagnostics: dict, max_tree_depth: int, target_accept: float, draws: int,
                   warmup: int = FIT.warmup) -> tuple[list[str], Remedy | None]:
    """Which setting would fix each failed diagnostic: one sentence each, and the
    :class:`Remedy` that makes those changes (None when the ladder has no rung left for
    any of them; the sentence then says so)."""
    fixes, changes = [], {}
    cut = diagnostics.get("draws_cut")
    if cut:
        depth = int(cut.get("max_tree_depth", max_tree_depth))
        deeper = deeper_tree(depth)
        why = (f"{saturation_phrase(cut)} and the draws were cut to {cut['to']} per chain: NUTS crawls along a ridge "
               "(often parameters the data do not pin)")
        if deeper is None:
            fixes.append(f"{why}; the tree depth is at the remedy's cap {TREE_DEPTH_CAP}, so no sampler setting is "
                         "left: data that pin those parameters remove the ridge")
        else:
            fixes.append(f"{why}: --max-tree-depth {depth} -> {deeper} with --saturated-draws 0 pays "
                         f"{2 ** (deeper - depth)}x the leapfrog steps per draw for the full draws, data that pin "
                         "those parameters remove the ridge")
            changes["max_tree_depth"] = ("max_tree_depth", depth, deeper)
            changes["saturated_draws"] = ("saturated_draws", int(cut.get("saturated_draws", cut["to"])), 0)
        return fixes, Remedy(tuple(changes.values())) if changes else None
    if diagnostics.get("divergences", 0):
        higher = next_target_accept(target_accept)
        if higher is None:
            fixes.append(f"{diagnostics['divergences']} divergent transitions at --target-accept {target_accept}, the "
                         f"ladder's top: no sampler setting is left; change --parameterization or the model")
        else:
            fixes.append(f"{diagnostics['divergences']} divergent transitions: raise --target-accept from "
                         f"{target_accept} to {higher} (smaller steps), or change --parameterization")
            changes["target_accept"] = ("target_accept", target_accept, higher)
    low_ess = min(diagnostics.get("ess_bulk_min", np.inf), diagnostics.get("ess_tail_min", np.inf))
    rhat = diagnostics.get("rhat_max", 1.0)
    if not np.isfinite(rhat) or rhat > 1.01 or low_ess < REMEDY_ESS_TARGET:
        what = (f"R-hat {rhat:.3f}, ESS bulk {diagnostics.get('ess_bulk_min', float('nan')):.0f} / tail "
                f"{diagnostics.get('ess_tail_min', float('nan')):.0f}")
        if diagnostics.get("treedepth_hits", 0):
            deeper = deeper_tree(max_tree_depth)
            hits = f"{what} with {diagnostics['treedepth_hits']} transitions cut at tree depth {max_tree_depth}"
            if deeper is None:
                fixes.append(f"{hits}, the remedy's cap: no sampler setting is left; data that pin the parameters "
                             "or another parameterization")
            else:
                fixes.append(f"{hits}: raise --max-tree-depth from {max_tree_depth} to {deeper}")
                changes["max_tree_depth"] = ("max_tree_depth", max_tree_depth, deeper)
        else:
            needed = REMEDY_ESS_TARGET / max(low_ess, 1.0) if np.isfinite(low_ess) else 1.0
            factor = float(np.clip(needed, REMEDY_MIN_FACTOR, REMEDY_MAX_FACTOR))
            more_draws, more_warmup = _scaled(draws, factor, REMEDY_DRAWS_CAP), _scaled(warmup, factor, REMEDY_WARMUP_CAP)
            if more_draws == draws and more_warmup == warmup:
                fixes.append(f"{what} at {draws} draws and {warmup} warmup per chain, the remedy's caps: no sampler "
                             "setting is left; run more chains or reparameterize")
            else:
                grown = [f"--{n} {a} -> {b}" for n, a, b in (("draws", draws, more_draws), ("warmup", warmup, more_warmup))
                         if a != b]
                needs = f"the ESS needs about {needed:.1f}x the draws" + (
                    f", a refit takes {factor:.0f}x" if needed > REMEDY_MAX_FACTOR else "")
                fixes.append(f"{what}: more draws and warmup ({', '.join(grown)}: {needs})")
                if more_draws != draws:
                    changes["draws"] = ("draws", draws, more_draws)
                if more_warmup != warmup:
                    changes["warmup"] = ("warmup", warmup, more_warmup)
    return fixes, Remedy(tuple(changes.values())) if changes else None


def sampler_fixes(diagnostics: dict, max_tree_depth: int, target_accept: float, draws: int,
                  warmup: int = FIT.warmup) -> list[str]:
    """Which setting would fix each failed diagnostic (the sentences of :func:`sampler_advice`)."""
    return sampler_advice(diagnostics, max_tree_depth, target_accept, draws, warmup)[0]


def mode_causes(modes: ModeReport) -> list[Cause]:
    """The cause separate modes give: *not identified* when they have similar log density
    (the data do not choose), *sampler failed* when some chains sit in a clearly worse one."""
    if not modes.multimodal:
        return []
    lp = ", ".join(f"{m.lp_mean:.1f}" for m in modes.modes)
    evidence = {"modes": modes.to_dict(), "parameters": modes.separated_by}
    if modes.similar_density:
        return [Cause(
            NOT_IDENTIFIED,
            f"chains sit in {len(modes.modes)} separate modes of similar log density ({lp}), separated in "
            f"{', '.join(modes.separated_by[:6])}: the data do not choose between them",
            evidence,
        )]
    minor = [c for m in modes.modes[1:] for c in m.chains]
    return [Cause(
        SAMPLER_FAILED,
        f"chains {minor} are stuck in modes of lower log density ({lp}) than chains {modes.modes[0].chains}: "
        f"refit with every chain restarted from draws of the best mode (chains {modes.modes[0].chains})",
        evidence,
        Remedy(restart_from_best_mode=True),
    )]


def best_mode_starts(idata, modes: ModeReport, n_chains: int) -> dict:
    """Starting points for ``n_chains`` chains from the best mode of ``idata`` (the last
    draw of each of its chains, then evenly spaced earlier draws of them): posterior
    variable -> [n_chains] or [n_chains, seeds], in the parameter's units; every sampled
    variable of the fit (:func:`~valuedyn.fitting.judge._modes.parameter_names`)."""
    chains = list(modes.modes[0].chains) if modes.modes else list(range(idata.posterior.sizes["chain"]))
    n_draws = idata.posterior.sizes["draw"]
    picks = []
    for index in range(n_chains):
        chain = chains[index % len(chains)]
        back = (index // len(chains)) * max(1, n_draws // (n_chains + 1))
        picks.append((chain, max(0, n_draws - 1 - back)))
    names = parameter_names(idata)
    for space_name in [n for n in idata.posterior.data_vars if n.endswith("_loc")]:
        if space_name not in names:
            names.append(space_name)  # the population location of a hierarchy (sampled as its own coordinate)
    return {name: np.stack([np.asarray(idata.posterior[name].values)[c, d] for c, d in picks]).astype(np.float64)
            for name in names}


# ---------------------------------------------------------------- the verdict
def classify_fit(fit, name: str | None = None, *, record: bool = False) -> Verdict:
    """The verdict of a fit (a path or a loaded InferenceData); see the module docstring.

    Reads the diagnostics and checks stored in the fit file's attributes (the checks are
    computed, not stored, when the file has none). With ``record`` (and a path) the
    verdict is stored as JSON in the file's ``verdict`` attribute (atomic rewrite)."""
    from valuedyn.fitting.judge._check import compute_checks

    idata = load_fit(fit) if isinstance(fit, (str, Path)) else fit
    attrs = fit_attrs(idata)
    name = name or (Path(fit).stem if isinstance(fit, (str, Path)) else attrs["model"])
    diagnostics = attrs.get("diagnostics") or {}
    config = attrs.get("config") if isinstance(attrs.get("config"), dict) else {}
    passes_gate = bool(int(diagnostics.get("trustworthy", 0)))
    model, spaces = _model_and_spaces(attrs["model"])
    docs = {p.name: p.doc for p in model.parameters}
    pooling = attrs.get("pooling", "hierarchical")

    modes = find_modes(idata, parameter_names(idata))
    sd_ratio = posterior_contraction(idata, spaces, pooling)
    causes: list[Cause] = []

    quantity_ratio = quantity_contraction(idata, model, spaces, pooling)
    at_bound = pressed_against_bounds(idata, model, spaces, pooling)
    by_name = {p.name: p for p in model.parameters}
    notes = [bound_meaning(attrs, by_name[p], pressed) for p, pressed in at_bound.items() if p in by_name]
    interest = set(model.interest_parameters)
    weak = [p for p, r in sd_ratio.items() if r > UNIDENTIFIED_SD_RATIO and p not in at_bound]
    unidentified = [p for p in weak if p in interest]
    nuisance = [p for p in weak if p not in interest]
    if nuisance:
        notes.append(
            "weakly pinned nuisance parameter" + ("s " if len(nuisance) > 1 else " ")
            + ", ".join(f"{p} ({docs.get(p, p)}; sd ratio {sd_ratio[p]:.2f})" for p in nuisance)
            + ": behind no quantity of interest, so reported, not held against the fit")
    quantities = {q.name: q for q in model.quantities}
    loose = [q for q, r in quantity_ratio.items() if r > UNIDENTIFIED_SD_RATIO
             and not any(p in at_bound for p in quantities[q].parameters)]
    if unidentified or loose:
        pins = [_what_would_pin(attrs, p, docs.get(p, p), where_informative(idata, model, spaces, p)) for p in unidentified]
        parts = []
        if unidentified:
            parts.append(f"posterior barely narrower than the prior for {', '.join(unidentified)} "
                         f"(sd ratio {', '.join(f'{sd_ratio[p]:.2f}' for p in unidentified)})")
        if loose:
            parts.append("quantities of interest not pinned: " + ", ".join(
                f"{q} ({quantities[q].doc}; sd ratio {quantity_ratio[q]:.2f})" for q in loose))
        causes.append(Cause(
            NOT_IDENTIFIED,
            "; ".join(parts + pins),
            {"parameters": unidentified, "sd_ratio": {p: sd_ratio[p] for p in unidentified}, "what_would_pin": pins,
             "quantities": {q: quantity_ratio[q] for q in loose}},
        ))
    causes.extend(mode_causes(modes))

    checks = attrs.get("checks") or compute_checks(idata)
    failures, evidence = misspecification(checks)
    if failures:
        causes.append(Cause(MISSPECIFIED, "; ".join(failures), evidence))

    if not passes_gate and not any(c.kind in (NOT_IDENTIFIED, SAMPLER_FAILED) for c in causes):
        fixes, remedy = sampler_advice(  # a config that lacks an option ran at a single fit's default
            diagnostics, int(config.get("max_tree_depth", FIT.max_tree_depth)),
            float(config.get("target_accept", FIT.target_accept)), int(config.get("draws", FIT.draws)),
            int(config.get("warmup", FIT.warmup)),
        )
        fixes = fixes or list(diagnostics.get("reasons", ["diagnostics missing from the fit file: refit"]))
        causes.append(Cause(SAMPLER_FAILED, "; ".join(fixes), {"diagnostics": {
            k: diagnostics.get(k) for k in ("rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "treedepth_hits", "reasons")
        }}, remedy))
    verdict = Verdict(
        name=name, model=attrs["model"], behaviour=attrs["behaviour"], passes_gate=passes_gate, causes=causes,
        modes=modes, sd_ratio=sd_ratio, gate_reasons=list(diagnostics.get("reasons", [])),
        quantity_sd_ratio=quantity_ratio, at_bound=at_bound, notes=notes,
    )
    if record and isinstance(fit, (str, Path)):
        idata.attrs["verdict"] = json.dumps(verdict.to_dict(), default=float)
        save_fit(idata, fit)
    return verdict


# ---------------------------------------------------------------- ranking
@dataclasses.dataclass
class Ranking:
    """``winner``: name or None (undecided); ``clearly``: the winner is clearly ahead;
    ``text``: one paragraph for the report; ``table``: PSIS-LOO comparison (pandas) of the
    comparable fits (None when fewer than one); ``excluded``: name -> why it is not ranked."""

    winner: str | None
    clearly: bool
    text: str
    table: object
    excluded: dict[str, str]

    def to_dict(self) -> dict:
        return {
            "winner": self.winner,
            "clearly": self.clearly,
            "text": self.text,
            "table": None if self.table is None else json.loads(self.table.to_json(orient="index")),
            "excluded": dict(self.excluded),
        }


def clearly_ahead(d_elpd: float, dse: float, high_k: dict[str, int]) -> tuple[bool, list[str]]:
    """The rule for "clearly": :func:`~valuedyn.fitting.judge._compare.elpd_clearly_ahead`
    (``d_elpd > 2 dse``) and reliable PSIS (no observation with Pareto k > 0.7) for the two
    fits compared (``high_k``: name -> count of such observations). Returns the decision
    and, when not clearly, why not."""
    why = []
    if not elpd_clearly_ahead(d_elpd, dse):
        why.append(f"d_elpd {d_elpd:.1f} is within {CLEAR_DSE_MULTIPLE} x dse {dse:.1f}")
    for name, count in high_k.items():
        if count:
            why.append(f"PSIS is unreliable for {count} observations of {name} (Pareto k > {PARETO_K_MAX}; an exact "
                       "refit of them would be needed)")
    return not why, why


#: what a ranking of deviation fits by PSIS-LOO adds: why that score hardly tells mechanisms apart
ONE_STEP_NOTE = (" Under the structured deviation PSIS-LOO scores each update one step ahead, where the deviation's "
                 "state carries the prediction and the mechanism hardly matters; --lfo ranks these fits by how they "
                 "predict the run's last quarter from the rest (leave-future-out).")


def _lfo_ranking(eligible: list[str], lfo: dict, left_out: str, excluded: dict[str, str]) -> Ranking:
    """Rank deviation fits by leave-future-out: the held-out cells' log predictive densities
    (``lfo``: name -> [n], the same cells for every fit); ``d_elpd`` and ``dse`` from the
    pointwise differences with the best; weights exp(elpd_lfo) normalised (pseudo-BMA)."""
    import pandas as pd

    lpd = {n: np.asarray(lfo[n], np.float64) for n in eligible}
    order = sorted(eligible, key=lambda n: -lpd[n].sum())
    best = lpd[order[0]]
    totals = np.array([lpd[n].sum() for n in order])
    weights = np.exp(totals - totals.max())
    table = pd.DataFrame({
        "elpd_lfo": totals,
        "d_elpd": [float((best - lpd[n]).sum()) for n in order],
        "dse": [float(np.sqrt(best.size) * (best - lpd[n]).std()) for n in order],
        "weight": weights / weights.sum(),
        "pareto_k_bad": [0] * len(order),
        "lfo_n": [int(lpd[n].size) for n in order],
    }, index=order)
    winner, runner_up = order[0], order[1]
    d_elpd, dse = float(table.loc[runner_up, "d_elpd"]), float(table.loc[runner_up, "dse"])
    clearly = elpd_clearly_ahead(d_elpd, dse)
    how = f"leave-future-out under the deviation, {best.size} held-out cells"
    if clearly:
        text = (f"{winner} predicts the run's last quarter best ({how}), clearly ahead of {runner_up} "
                f"(d_elpd {d_elpd:.1f} > {CLEAR_DSE_MULTIPLE} x dse {dse:.1f}).")
    else:
        text = (f"{winner} ranks first ({how}), but not clearly ahead of {runner_up}: d_elpd {d_elpd:.1f} is within "
                f"{CLEAR_DSE_MULTIPLE} x dse {dse:.1f}.")
    return Ranking(winner, bool(clearly), text + left_out, table, excluded)


def rank_fits(fits: dict, verdicts: dict[str, Verdict], lfo: dict | None = None) -> Ranking:
    """Rank fits of the same data (name -> path or InferenceData) by PSIS-LOO among the
    comparable ones only (a multimodal fit through its stacked modes); see the module
    docstring for "clearly". Deviation fits (``loglik_kind`` innovation-integrated), whose
    PSIS-LOO is a one-step-ahead score, are ranked by leave-future-out instead when ``lfo``
    (name -> the held-out cells' log predictive densities, the compare table's
    ``lfo_pointwise``) holds every comparable fit; without it the text says what the
    one-step score cannot tell."""
    import arviz as az

    from valuedyn.fitting.inference._deviation import LOGLIK_KIND

    excluded = {n: f"{verdicts[n].label}: " + "; ".join(c.summary for c in verdicts[n].causes)
                for n in fits if not verdicts[n].comparable}
    eligible = [n for n in fits if verdicts[n].comparable]
    if not eligible:
        text = ("The comparison is undecided: no fit is trustworthy ("
                + "; ".join(f"{n}: {verdicts[n].label}" for n in fits) + ").")
        return Ranking(None, False, text, None, excluded)
    loaded = {}
    for n in eligible:
        idata = load_fit(fits[n]) if isinstance(fits[n], (str, Path)) else fits[n]
        loaded[n] = stacked_fit(idata, verdicts[n].modes) if verdicts[n].modes.multimodal else idata
    left_out = f" Not ranked: {'; '.join(f'{n} ({verdicts[n].label})' for n in excluded)}." if excluded else ""
    if len(eligible) == 1:
        only = eligible[0]
        text = f"{only} is the only trustworthy fit, so there is no comparison to win.{left_out}"
        return Ranking(only, False, text, None, excluded)
    one_step = all(fit_attrs(loaded[n]).get("loglik_kind") == LOGLIK_KIND for n in eligible)
    if one_step and lfo and all(lfo.get(n) is not None and len(lfo[n]) for n in eligible):
        return _lfo_ranking(eligible, lfo, left_out, excluded)
    high_k = {}
    with pareto_k_counted():  # high k is counted here and stated in the table and text
        for n, idata in loaded.items():
            k = np.asarray(az.loo(idata, pointwise=True).pareto_k)
            high_k[n] = int((k > PARETO_K_MAX).sum())
    with pareto_k_counted():
        table = az.compare(loaded, ic="loo", method="stacking").rename(columns={"elpd_diff": "d_elpd"})
    table["pareto_k_bad"] = [high_k[n] for n in table.index]
    winner, runner_up = table.index[0], table.index[1]
    d_elpd, dse = float(table.loc[runner_up, "d_elpd"]), float(table.loc[runner_up, "dse"])
    clearly, why = clearly_ahead(d_elpd, dse, {n: high_k[n] for n in (winner, runner_up)})
    if clearly:
        text = f"{winner} predicts best, clearly ahead of {runner_up} (d_elpd {d_elpd:.1f} > {CLEAR_DSE_MULTIPLE} x dse {dse:.1f})."
    else:
        text = f"{winner} ranks first, but not clearly ahead of {runner_up}: {'; '.join(why)}."
    return Ranking(winner, bool(clearly), text + left_out + (ONE_STEP_NOTE if one_step else ""), table, excluded)
