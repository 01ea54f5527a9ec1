"""Diversity of behaviour over training: fast diversification, slow minimisation.

The package's second question besides the plant overshoot: when a new reward source is
found, does the diversity of what the agent *achieves* (``diversity:events``) rise fast,
and does the diversity of what it *does* (``diversity:actions``) then fall slowly?

Timescales are read off the fitted curves, so they mean the same for every registered
model (closed form or ODE) fitted to a diversity behaviour:

- the curve of each posterior draw and seed is the model's solution on a fine grid of the
  fitted window (``points`` times, env steps), in diversity units (``level * level_scale``);
- *rise time*: for a rising curve, the env steps between the curve first covering 10 %
  and 90 % of its rise from its starting value to its maximum;
- *fall time*: for a falling curve, the env steps between the curve first covering 10 %
  and 90 % of its fall from its maximum to its lowest value after it;
- the population value of a draw is the median over seeds; the summaries are over draws.

A 10-90 % transition time is model-agnostic and equals ln(9) times the e-folding time of
an exponential approach. A curve that is still moving in the last tenth of the window by
more than 5 % of its change has not levelled off within the run: its transition time is a
lower bound, and the headline says so. The two fits are independent posteriors, so the
probability that the slow time is at least ``factor`` times the fast one is taken over
randomly paired draws of the two.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from valuedyn._errors import ValuedynError

#: fraction of the change that opens and closes a transition (10-90 %)
TRANSITION = (0.1, 0.9)
#: a curve moving by more than this share of its change over the last tenth of the window
#: has not levelled off: its transition time is a lower bound
STILL_MOVING = 0.05
#: separation factor of the headline: the slow timescale at least this many times the fast one
SEPARATION_FACTOR = 3.0


# ---------------------------------------------------------------- fitted curves


def _attr(idata, name: str, *fallbacks: str):
    attrs = getattr(idata, "attrs", None) or {}
    for key in (name, *fallbacks):
        if key in attrs:
            return attrs[key]
    raise ValuedynError(f"fit file has no attribute {name!r}; it was not written by `valuedyn fit`; re-run the fit")


def fit_behaviour(idata) -> str:
    """The fitted behaviour (``KIND:NAME``) of a fit file, whichever spelling wrote it."""
    return str(_attr(idata, "behaviour"))


def fitted_curves(idata, *, points: int = 200, max_draws: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The fitted mean curves of a diversity (or any) fit on a fine time grid.

    Returns ``(env_step[points], curves[draws, seeds, points])`` in observation units
    (diversity, or the behaviour's rate); at most ``max_draws`` posterior draws, thinned
    evenly (fixed ``seed`` for reproducibility). Draws whose solve fails are dropped.
    """
    import jax
    import jax.numpy as jnp

    from valuedyn.fitting.inference._store import fit_attrs
    from valuedyn.models import get_model

    model = get_model(str(_attr(idata, "model")))
    kind = fit_behaviour(idata).partition(":")[0]
    observable = model.applies_to.get(kind)
    if observable is None:
        raise ValuedynError(f"model {model.name!r} does not describe {kind!r} behaviours; this fit file is inconsistent")
    _attr(idata, "parameters")  # refuses a file without it, in words
    names = fit_attrs(idata)["parameters"]
    scale = float(_attr(idata, "level_scale"))
    origin = float(_attr(idata, "time_origin_env_step"))
    span = float(_attr(idata, "time_scale_env_steps"))
    posterior = idata.posterior
    draws = {n: np.asarray(posterior[n].transpose("chain", "draw", "seed").values, np.float64) for n in names}
    n_chain, n_draw, n_seed = next(iter(draws.values())).shape
    flat = {n: v.reshape(n_chain * n_draw, n_seed) for n, v in draws.items()}
    total = n_chain * n_draw
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(total, size=min(max_draws, total), replace=False))
    tau = np.linspace(0.0, 1.0, points)
    params = {n: jnp.asarray(v[keep].reshape(-1), jnp.float32) for n, v in flat.items()}
    solve = jax.jit(jax.vmap(lambda p: model.solve(p, jnp.asarray(tau, jnp.float32))))
    outputs, ok = solve(params)
    curves = np.asarray(outputs[observable], np.float64).reshape(len(keep), n_seed, points) * scale
    ok = np.asarray(ok).reshape(len(keep), n_seed).all(axis=1) & np.isfinite(curves).all(axis=(1, 2))
    return origin + span * tau, curves[ok]


# ---------------------------------------------------------------- transition times


def _first_crossing(time: np.ndarray, curve: np.ndarray, level: float, rising: bool, start: int) -> float:
    """First time at or after index ``start`` where ``curve`` reaches ``level`` (linear interpolation)."""
    segment = curve[start:]
    hit = segment >= level if rising else segment <= level
    if not hit.any():
        return float("nan")
    i = int(np.argmax(hit)) + start
    if i == start:
        return float(time[i])
    y0, y1 = curve[i - 1], curve[i]
    frac = 0.0 if y1 == y0 else (level - y0) / (y1 - y0)
    return float(time[i - 1] + frac * (time[i] - time[i - 1]))


def transition_times(time: np.ndarray, curves: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """10-90 % transition time of each curve and whether it is still moving at the end.

    ``curves``: ``[..., T]`` over ``time[T]`` (env steps); ``direction``: ``"rise"``
    (from the start to the maximum) or ``"fall"`` (from the maximum to the lowest value
    after it). Returns ``(duration[...], still_moving[...])``; NaN where the curve does
    not change in that direction.
    """
    if direction not in ("rise", "fall"):
        raise ValuedynError(f"direction must be 'rise' or 'fall'; received {direction!r}")
    time = np.asarray(time, np.float64)
    curves = np.asarray(curves, np.float64)
    flat = curves.reshape(-1, curves.shape[-1])
    durations = np.full(len(flat), np.nan)
    moving = np.zeros(len(flat), bool)
    tail = int(np.searchsorted(time, time[0] + 0.9 * (time[-1] - time[0])))
    tail = min(tail, len(time) - 1)
    for row, curve in enumerate(flat):
        peak = int(np.argmax(curve))
        if direction == "rise":
            start, low, high = 0, curve[0], curve[peak]
            change = high - low
            levels = [low + f * change for f in TRANSITION]
            rising = True
        else:
            start, high = peak, curve[peak]
            low = float(curve[peak:].min())
            change = high - low
            levels = [high - f * change for f in TRANSITION]
            rising = False
        scale = max(abs(high), abs(low), 1e-12)
        if change <= 1e-6 * scale:
            continue
        t_open = _first_crossing(time, curve, levels[0], rising, start)
        t_close = _first_crossing(time, curve, levels[1], rising, start)
        durations[row] = t_close - t_open
        moving[row] = abs(curve[-1] - curve[tail]) > STILL_MOVING * change
    return durations.reshape(curves.shape[:-1]), moving.reshape(curves.shape[:-1])


@dataclasses.dataclass(frozen=True)
class Timescale:
    """Posterior of one population transition time (env steps).

    ``draws``: per posterior draw, the median over seeds; ``still_moving``: the share of
    draws whose typical curve has not levelled off by the end of the run (then the time is
    a lower bound); ``behaviour``, ``model``: the fit it came from.
    """

    behaviour: str
    model: str
    direction: str
    draws: np.ndarray
    still_moving: float

    @property
    def median(self) -> float:
        return float(np.median(self.draws))

    @property
    def interval(self) -> tuple[float, float]:
        low, high = np.quantile(self.draws, [0.05, 0.95])
        return float(low), float(high)

    @property
    def lower_bound(self) -> bool:
        return self.still_moving > 0.5


def fit_timescale(idata, direction: str, **curve_options) -> Timescale:
    """The population 10-90 % ``direction`` time of a fit (see the module docstring)."""
    time, curves = fitted_curves(idata, **curve_options)
    if len(curves) == 0:
        raise ValuedynError(
            f"every posterior draw of the {_attr(idata, 'model')} fit to {fit_behaviour(idata)} failed to solve; "
            "refit (the fit is not usable)"
        )
    per_seed, moving = transition_times(time, curves, direction)
    with np.errstate(all="ignore"):
        population = np.nanmedian(np.where(np.isfinite(per_seed), per_seed, np.nan), axis=1)
    finite = np.isfinite(population)
    if not finite.any():
        raise ValuedynError(
            f"the {_attr(idata, 'model')} fit to {fit_behaviour(idata)} shows no {direction} in any posterior draw; "
            f"a {direction} time is not defined for it"
        )
    return Timescale(
        behaviour=fit_behaviour(idata),
        model=str(_attr(idata, "model")),
        direction=direction,
        draws=population[finite],
        still_moving=float(moving[finite].mean()),
    )


def separation_probability(fast: Timescale, slow: Timescale, factor: float = SEPARATION_FACTOR, seed: int = 0) -> float:
    """P(slow >= factor x fast) over randomly paired draws of two independent posteriors."""
    rng = np.random.default_rng(seed)
    n = min(len(fast.draws), len(slow.draws))
    a = rng.permutation(fast.draws)[:n]
    b = rng.permutation(slow.draws)[:n]
    return float(np.mean(b >= factor * a))


# ---------------------------------------------------------------- the headline


def _steps(value: float) -> str:
    return f"{value:,.0f}"


def _describe(t: Timescale) -> str:
    low, high = t.interval
    bound = "at least " if t.lower_bound else ""
    return f"{bound}{_steps(t.median)} env steps (90 % interval {_steps(low)}-{_steps(high)}; {t.model} fit)"


@dataclasses.dataclass(frozen=True)
class DiversityHeadline:
    """The diversity answer for one trajectory: text plus the numbers behind it."""

    text: str
    fast: Timescale | None
    slow: Timescale | None
    p_separated: float | None
    factor: float = SEPARATION_FACTOR

    def as_dict(self) -> dict:
        def summary(t: Timescale | None):
            if t is None:
                return None
            return {"behaviour": t.behaviour, "model": t.model, "direction": t.direction, "median": t.median,
                    "interval_90": list(t.interval), "still_moving": t.still_moving, "lower_bound": t.lower_bound}

        return {"text": self.text, "fast": summary(self.fast), "slow": summary(self.slow),
                "p_separated": self.p_separated, "factor": self.factor}


def diversity_headline(event_fit=None, action_fit=None, *, untrusted: dict[str, str] | None = None,
                       factor: float = SEPARATION_FACTOR, **curve_options) -> DiversityHeadline:
    """One paragraph: how fast event diversity rises, how slowly action diversity falls, and
    whether the two timescales are separated (P(fall time >= factor x rise time)).

    ``event_fit`` / ``action_fit``: the chosen trustworthy fit (InferenceData) of
    ``diversity:events`` / ``diversity:actions``, or None; ``untrusted``: behaviour ->
    reason, for a behaviour whose fits are all untrustworthy (stated instead of a number).
    """
    untrusted = dict(untrusted or {})
    sentences = []
    fast = slow = None
    for behaviour, fit, direction, subject in (("diversity:events", event_fit, "rise", "Event diversity"),
                                               ("diversity:actions", action_fit, "fall", "Action diversity")):
        timescale, why = None, untrusted.get(behaviour, "it was not fitted")
        if fit is not None:
            try:
                timescale = fit_timescale(fit, direction, **curve_options)
            except ValuedynError as err:  # e.g. a flat fitted curve: no such transition to time
                why = str(err)
        if timescale is None:
            sentences.append(f"No {direction} time of {subject.lower()} is stated: {why}.")
        else:
            verb = "rises" if direction == "rise" else "falls"
            sentences.append(f"{subject} {verb} with a 10-90 % {direction} time of {_describe(timescale)}.")
        if direction == "rise":
            fast = timescale
        else:
            slow = timescale
    p = None
    if fast is not None and slow is not None:
        p = separation_probability(fast, slow, factor)
        if p >= 0.95:
            verdict = "the timescales are separated"
        elif p <= 0.05:
            verdict = "the timescales are not separated"
        else:
            verdict = "these data do not decide whether the timescales are separated"
        caveat = ""
        if slow.lower_bound:
            caveat = (" Action diversity is still falling when the run ends, so its fall time is a lower bound "
                      "and the separation probability too; a longer run would pin it.")
        if fast.lower_bound:
            caveat += " Event diversity is still rising when the run ends, so its rise time is a lower bound."
        sentences.append(
            f"P(fall time >= {factor:g} x rise time) = {p:.2f}: {verdict}.{caveat}"
        )
    return DiversityHeadline(" ".join(sentences), fast, slow, p, factor)


# ---------------------------------------------------------------- when rewards are found


def first_found_updates(ds, threshold: float = 0.1) -> dict[str, int]:
    """Achievement -> the first update (label) at which the seed-pooled unlock rate reaches
    ``threshold``, for achievements found after the first update (those present from the
    start are no new reward source). Updates without a finished episode are skipped, and so
    is a cell the file marks unobserved (:func:`valuedyn.data.observed_mask`): it counts
    neither in the unlocks nor in that achievement's finished episodes. A file without the
    unlocks part finds nothing."""
    from valuedyn.data import observed_mask

    if "achievement_unlocks" not in ds:
        return {}
    seen = observed_mask(ds, "achievement_unlocks")  # [seed, update, achievement]
    unlocks = np.where(seen, np.asarray(ds["achievement_unlocks"].values, np.float64), 0.0).sum(axis=0)  # [update, achievement]
    episodes = (np.asarray(ds["episodes_finished"].values, np.float64)[..., None] * seen).sum(axis=0)  # [update, achievement]
    updates = np.asarray(ds["update"].values)
    names = [str(a) for a in ds["achievement"].values]
    has = episodes > 0
    rate = np.divide(unlocks, episodes, out=np.zeros_like(unlocks), where=has)
    found = {}
    for j, name in enumerate(names):
        hits = np.flatnonzero(has[:, j] & (rate[:, j] >= threshold))
        # found at its first observed update: there from the start, or found unseen; not new
        if hits.size and hits[0] > int(np.argmax(has[:, j])):
            found[name] = int(updates[hits[0]])
    return dict(sorted(found.items(), key=lambda item: item[1]))


# ---------------------------------------------------------------- simulated diversity


def hill1_shares(diversity: np.ndarray, n_categories: int) -> np.ndarray:
    """Category shares ``[..., n_categories]`` whose Hill-1 number (exp Shannon entropy) is
    ``diversity`` (in [1, n_categories]): geometric shares p_i ~ exp(-lam i), lam by bisection."""
    target = np.log(np.clip(np.asarray(diversity, np.float64), 1.0, float(n_categories)))
    index = np.arange(n_categories, dtype=np.float64)
    low = np.zeros_like(target)
    high = np.full_like(target, 60.0)

    def shares(lam):
        logits = -lam[..., None] * index
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=-1, keepdims=True)

    for _ in range(60):
        mid = 0.5 * (low + high)
        p = shares(mid)
        entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)
        too_diverse = entropy > target
        low = np.where(too_diverse, mid, low)
        high = np.where(too_diverse, high, mid)
    return shares(0.5 * (low + high))


def simulate_diversity_trajectory(action_diversity: np.ndarray, event_diversity: np.ndarray, *,
                                  steps_per_update: int = 4096, episodes_per_update: float = 40.0,
                                  events_per_episode: float = 30.0, masked_updates: int = 2, seed: int = 0):
    """A contract-valid trajectory Dataset whose action and event counts have the given
    Hill-1 diversities ``[S, U]`` in expectation (multinomial draws from geometric shares
    over 17 actions and 26 events; the first ``masked_updates`` updates finish no episode,
    so their event diversity is masked). Other variables as :func:`simulate_trajectory`."""
    from valuedyn.fitting.inference._simulate import simulate_trajectory
    from valuedyn.models import get_model

    action_diversity = np.asarray(action_diversity, np.float64)
    event_diversity = np.asarray(event_diversity, np.float64)
    if action_diversity.shape != event_diversity.shape or action_diversity.ndim != 2:
        raise ValuedynError(
            f"action and event diversity must both be [seed, update]; received {action_diversity.shape} and "
            f"{event_diversity.shape}"
        )
    n_seeds, n_updates = action_diversity.shape
    n_actions, n_events = 17, 26
    if action_diversity.max() > n_actions or event_diversity.max() > n_events or min(action_diversity.min(), event_diversity.min()) < 1:
        raise ValuedynError(f"diversities must lie in [1, {n_actions}] (actions) and [1, {n_events}] (events)")
    base = simulate_trajectory(
        get_model("logistic_onset"),
        {"t0": np.full(n_seeds, 0.5), "k": np.full(n_seeds, 10.0), "floor": np.full(n_seeds, 0.02),
         "ceiling": np.full(n_seeds, 0.6)},
        behaviour="unlock:place_table", n_updates=n_updates, episodes_per_update=episodes_per_update,
        steps_per_update=steps_per_update, masked_updates=masked_updates, seed=seed,
    )
    rng = np.random.default_rng(seed + 1)
    episodes = np.asarray(base["episodes_finished"].values)
    action_p = hill1_shares(action_diversity, n_actions)
    event_p = hill1_shares(event_diversity, n_events)
    actions = np.zeros((n_seeds, n_updates, n_actions), np.int64)
    events = np.zeros((n_seeds, n_updates, n_events), np.int64)
    for s in range(n_seeds):
        for u in range(n_updates):
            actions[s, u] = rng.multinomial(steps_per_update, action_p[s, u])
            if episodes[s, u] > 0:
                events[s, u] = rng.multinomial(rng.poisson(episodes[s, u] * events_per_episode), event_p[s, u])
    ds = base.drop_vars(["action_count", "event_total", "action", "event"])
    ds = ds.assign_coords(action=[f"action_{i}" for i in range(n_actions)], event=[f"event_{i}" for i in range(n_events)])
    ds["action_count"] = (("seed", "update", "action"), actions)
    ds["event_total"] = (("seed", "update", "event"), events)
    return ds
