"""The package's core case as a trajectory file: the place_plant overshoot of issue 12.

4 seeds x 300 updates (by default), 30-50 finished episodes per update, place_plant
counts drawn from a Poisson around a true overshoot mean: onset at updates 40-55, fast
rise at rate 0.25 per update, slow decay at 0.02 per update, peak about 5.5x the final
level. No overdispersion: a negbin fit must find its way to "Poisson".

Run: ``python benchmarks/core_case.py synth.nc [--seeds 4] [--updates 300]``, then
``valuedyn fit synth.nc --model overshoot --behaviour event:place_plant --out fit.nc``.
"""

from __future__ import annotations

import argparse

import numpy as np

#: per-update rates of the issue, converted to tau (the fitting window is [0, 1]) in core_truth
RISE_PER_UPDATE = 0.25
DECAY_PER_UPDATE = 0.02
ONSET_UPDATES = (40.0, 55.0)
FINAL_PLANTS_PER_EPISODE = 1.0
PEAK_OVER_FINAL = 5.5


def core_truth(n_seeds: int = 4, n_updates: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-seed overshoot parameters [S] in the model's units (tau, 1/tau, normalised
    level with ``level_scale=1``: level = plants per episode)."""
    rng = np.random.default_rng(seed)
    span = n_updates - 1  # tau = (update - first) / (last - first)
    onset = np.linspace(*ONSET_UPDATES, n_seeds) if n_seeds > 1 else np.array([np.mean(ONSET_UPDATES)])
    alpha = RISE_PER_UPDATE * span * rng.uniform(0.9, 1.1, n_seeds)
    ratio = DECAY_PER_UPDATE / RISE_PER_UPDATE * rng.uniform(0.9, 1.1, n_seeds)
    optimum = FINAL_PLANTS_PER_EPISODE * rng.uniform(0.9, 1.1, n_seeds)
    # excess such that the peak of the closed form is PEAK_OVER_FINAL x optimum
    tau = np.linspace(0.0, 1.0, 2001)
    excess = np.empty(n_seeds)
    for s in range(n_seeds):
        a, r = alpha[s], ratio[s]
        b = a * r
        shape = np.where(tau > 0, (np.exp(-b * tau) - np.exp(-a * tau)) * a / (a - b), 0.0)  # unit-excess bump
        excess[s] = (PEAK_OVER_FINAL - 1.0) * optimum[s] / shape.max()
    return {
        "t0": onset / span,
        "alpha": alpha,
        "ratio": ratio,
        "floor": np.full(n_seeds, 0.02),
        "optimum": optimum,
        "excess": excess,
    }


def core_case(n_seeds: int = 4, n_updates: int = 300, seed: int = 0):
    """(trajectory Dataset, truth) of the core case: Poisson place_plant totals out of
    30-50 finished episodes per update (the first 3 updates finish none)."""
    from valuedyn.fitting.inference._simulate import simulate_trajectory
    from valuedyn.models import get_model

    truth = core_truth(n_seeds, n_updates, seed)
    dataset = simulate_trajectory(
        get_model("overshoot"), truth, behaviour="event:place_plant", n_updates=n_updates,
        episodes_per_update=40.0, observation="poisson", level_scale=1.0, seed=seed,
        episodes_range=(30, 50),
    )
    return dataset, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from valuedyn.fitting.inference._simulate import write_trajectory

    dataset, truth = core_case(args.seeds, args.updates, args.seed)
    write_trajectory(dataset, args.out)
    print(f"wrote {args.out}: truth " + ", ".join(f"{k}={np.round(v, 3).tolist()}" for k, v in truth.items()))


if __name__ == "__main__":
    main()
