"""The motif headline: does a behaviour rise and then decay, and can these data tell?

Read from one fit's posterior of the model level (``posterior["level"]`` [chain, draw,
seed, update], observation units: probability, or count per finished episode), so any
model that can rise and fall (overshoot, diversify_then_minimize) answers it. Per draw,
on the level averaged over the seeds (the typical run) and on each seed:

- peak: the highest level over the run, and the env step where it is reached;
- final level: the level at the last update, and its ratio to the peak;
- decay after the peak: the final level is at least :data:`DECAY_DROP` (10%) below the
  peak. Its posterior probability is the share of draws with a decay.

Whether the data can tell: when, in most draws, the peak sits in the last
:data:`LATE_PEAK` (10%) of the run and the level is still rising there (by at least
:data:`STILL_RISING`, 5% of the peak, across that stretch), the run ends before any decay
could be seen (a level that has reached a plateau is a "no decay", not a "too short");
when the decay probability lies between 0.1 and 0.9 the data leave it open; otherwise
they answer. Which fit to read is the caller's choice: a model that can both rise and
fall (a monotone model's "no decay" is built in, not found).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from valuedyn.fitting.inference._select import format_env_steps
from valuedyn.fitting.inference._store import fit_attrs, load_fit

DECAY_DROP = 0.10
LATE_PEAK = 0.10
STILL_RISING = 0.05
INTERVAL = 0.90


@dataclasses.dataclass
class Headline:
    """Numbers of the motif headline (env steps for times, observation units for levels;
    intervals are central 90%) and ``text``, one paragraph."""

    behaviour: str
    model: str
    decay_probability: float
    decay_probability_per_seed: dict[str, float]
    peak_env_step: tuple[float, float, float]  # median, 5%, 95%
    peak_level: tuple[float, float, float]
    final_level: tuple[float, float, float]
    final_over_peak: tuple[float, float, float]
    late_peak_probability: float
    last_env_step: float
    can_tell: str  # "yes" | "open" | "run too short"
    text: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    tail = (1.0 - INTERVAL) / 2
    median, lo, hi = np.quantile(values, [0.5, tail, 1.0 - tail])
    return float(median), float(lo), float(hi)


def _peak_statistics(level: np.ndarray, env_step: np.ndarray) -> dict[str, np.ndarray]:
    """``level`` [N, U] per draw -> peak step, peak, final, decay flag, late-and-rising flag [N]."""
    peak_index = np.argmax(level, axis=-1)
    peak = np.max(level, axis=-1)
    final = level[:, -1]
    late_from = env_step[0] + (1.0 - LATE_PEAK) * (env_step[-1] - env_step[0])
    first_late = int(np.searchsorted(env_step, late_from))
    rising = final - level[:, min(first_late, level.shape[1] - 1)] >= STILL_RISING * peak
    return {
        "peak_step": env_step[peak_index],
        "peak": peak,
        "final": final,
        "decay": final <= (1.0 - DECAY_DROP) * peak,
        "late": (env_step[peak_index] >= late_from) & rising,
    }


def motif_headline(fit, verdict=None, quantity: str | None = None) -> Headline:
    """The headline of one fit (path or InferenceData). ``verdict``: its
    :class:`~valuedyn.fitting.judge._trust.Verdict`, so an untrustworthy fit's headline says so;
    ``quantity``: words for the level (default: from the behaviour, e.g. "place_plant
    per episode")."""
    idata = load_fit(fit) if isinstance(fit, (str, Path)) else fit
    attrs = fit_attrs(idata)
    behaviour = attrs["behaviour"]
    kind, _, thing = behaviour.partition(":")
    if quantity is None:
        quantity = {
            "event": f"{thing} per episode",
            "unlock": f"the share of episodes that unlock {thing}",
            "action": f"the share of {thing} actions",
        }.get(kind, f"{thing}")
    level = np.asarray(idata.posterior["level"].values, np.float64)  # [chain, draw, seed, update]
    level = level.reshape((-1,) + level.shape[2:])  # [N, S, U]
    env_step = np.asarray(idata.constant_data["env_step"].values, np.float64)
    seeds = [str(s) for s in np.asarray(idata.posterior["level"].coords["seed"].values)]

    typical = _peak_statistics(level.mean(axis=1), env_step)
    per_seed = {seed: float(_peak_statistics(level[:, i], env_step)["decay"].mean()) for i, seed in enumerate(seeds)}
    decay = float(typical["decay"].mean())
    late = float(typical["late"].mean())
    peak_step, peak, final = _interval(typical["peak_step"]), _interval(typical["peak"]), _interval(typical["final"])
    ratio = _interval(typical["final"] / np.maximum(typical["peak"], 1e-12))
    if late > 0.5:
        can_tell = "run too short"
    elif 0.1 < decay < 0.9:
        can_tell = "open"
    else:
        can_tell = "yes"

    opening = f"{behaviour} ({len(seeds)} seeds, {attrs['model']} fit)"
    if verdict is not None and not verdict.trustworthy:
        opening += f" [fit {verdict.label}: read with care]"
    rise = (
        f"{quantity} peaks at {peak[0]:.3g} [{peak[1]:.3g}, {peak[2]:.3g}] around env step {format_env_steps(peak_step[0])} "
        f"[{format_env_steps(peak_step[1])}, {format_env_steps(peak_step[2])}]"
    )
    end = (
        f"at the end of the run (env step {format_env_steps(env_step[-1])}) it is {final[0]:.3g} [{final[1]:.3g}, {final[2]:.3g}], "
        f"{ratio[0]:.2f} [{ratio[1]:.2f}, {ratio[2]:.2f}] of the peak"
    )
    probability = f"P(decay after the peak) = {decay:.2f}"
    if can_tell == "run too short":
        answer = (
            f"The run ends before any decay could be seen: the level is still rising to a peak in the last "
            f"{int(LATE_PEAK * 100)}% of the run with probability {late:.2f}, so these data cannot tell whether it "
            f"decays ({probability}); a longer run would."
        )
    elif can_tell == "open":
        answer = f"These data leave it open whether it decays ({probability})."
    elif decay >= 0.9:
        answer = f"It rises and then decays ({probability})."
    else:
        answer = f"It does not decay after its peak ({probability})."
    if len(seeds) > 1:
        answer += " Per seed: " + ", ".join(f"{s}: {p:.2f}" for s, p in per_seed.items()) + "."
    text = f"{opening}: {rise}; {end}. {answer}"
    return Headline(
        behaviour=behaviour, model=attrs["model"], decay_probability=decay, decay_probability_per_seed=per_seed,
        peak_env_step=peak_step, peak_level=peak, final_level=final, final_over_peak=ratio,
        late_peak_probability=late, last_env_step=float(env_step[-1]), can_tell=can_tell, text=text,
    )
