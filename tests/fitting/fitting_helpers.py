"""Helpers of the fitting tests: simulated trajectory files (schema-valid, known truth).

Every inference test uses the same data shape and sampler settings, so the compiled
sampler of each model is built once per test session and reused (see fitting/_nuts.py).
"""

from __future__ import annotations

import numpy as np
from valuedyn.fitting.inference._simulate import simulate_trajectory, write_trajectory

N_UPDATES = 120
# the data are Binomial: the recovery and command-line tests fit them with the Binomial (the
# overdispersed default, 1.2-1.6x the sampling cost here, is covered by SBC, the plan's and the
# conditions tests)
SETTINGS = dict(chains=4, warmup=1000, draws=1000, observation="binomial")

OVERSHOOT_TRUTH = {
    "t0": np.array([0.15, 0.18, 0.13]),
    "alpha": np.array([40.0, 34.0, 46.0]),
    "ratio": np.array([0.12, 0.10, 0.14]),
    "floor": np.array([0.03, 0.05, 0.04]),
    "optimum": np.array([0.25, 0.22, 0.28]),
    "excess": np.array([0.45, 0.5, 0.4]),
}
LOGISTIC_TRUTH = {
    "t0": np.array([0.35, 0.4, 0.3]),
    "k": np.array([15.0, 13.0, 17.0]),
    "floor": np.array([0.05, 0.04, 0.06]),
    "ceiling": np.array([0.6, 0.65, 0.55]),
}


def make_trajectory(model_name: str, truth: dict, path, seed: int = 0, **kwargs):
    from valuedyn.models import get_model

    dataset = simulate_trajectory(
        get_model(model_name), truth, behaviour="unlock:place_table", n_updates=N_UPDATES,
        episodes_per_update=150.0, seed=seed, **kwargs,
    )
    write_trajectory(dataset, path)
    return path


