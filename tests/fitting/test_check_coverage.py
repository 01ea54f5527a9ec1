"""Interval coverage of counts: ties at an interval's end are counted by chance.

A memory horizon near 0 lags (a count out of 32) sits on the lower end of every predictive
interval; counting such a cell as inside made a calibrated beta-binomial read "90 % interval
covers 0.99" (misspecified). Here the predictive draws come from the very distribution that
made the data, so a correct check reads about 0.5 and 0.9.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy import stats

from valuedyn.fitting.judge._check import compute_checks


def _calibrated_counts(p: np.ndarray, n: int, seed: int):
    """A fit-file-shaped InferenceData whose data and 2 x 500 predictive draws are both
    Binomial(n, p[seed, update]) (so the model is exactly right), counts stored as floats
    with ``discrete = 1`` as fit files store them."""
    rng = np.random.default_rng(seed)
    seeds, updates = p.shape
    mask = np.ones((seeds, updates), bool)
    seed_index, update_index = np.nonzero(mask)
    y = rng.binomial(n, p)[seed_index, update_index].astype(float)  # [obs]
    rep = rng.binomial(n, p[None, None], size=(2, 500, seeds, updates))[..., seed_index, update_index].astype(float)
    loglik = stats.binom.logpmf(y, n, p[seed_index, update_index])
    obs = {"obs_seed": ("obs", seed_index), "obs_update": ("obs", update_index)}
    observed = xr.Dataset({"y": ("obs", y)}, coords=obs)
    observed["y"].attrs["discrete"] = 1
    return az.InferenceData(
        posterior=xr.Dataset({"theta": (("chain", "draw"), rng.normal(size=(2, 500)))}),
        observed_data=observed,
        posterior_predictive=xr.Dataset({"y": (("chain", "draw", "obs"), rep)}, coords=obs),
        log_likelihood=xr.Dataset({"y": (("chain", "draw", "obs"), np.broadcast_to(loglik, rep.shape).copy())},
                                  coords=obs),
        constant_data=xr.Dataset({
            "mask": (("seed", "update"), mask),
            "exposure": (("seed", "update"), np.full((seeds, updates), float(n))),
            "tau": ("update", np.linspace(0.0, 1.0, updates)),
            "seed": ("seed", np.arange(seeds)),
        }),
    )


@pytest.mark.parametrize("level", [0.01, 0.3])
def test_calibrated_counts_cover_their_nominal_share(level):
    # level 0.01 of 32: most cells are 0, the lower end of every interval (the memory case)
    p = np.full((4, 100), level)
    checks = compute_checks(_calibrated_counts(p, 32, seed=1), seed=0)
    assert abs(checks["coverage"]["90"] - 0.9) < 0.04, checks["coverage"]
    assert abs(checks["coverage"]["50"] - 0.5) < 0.06, checks["coverage"]
    assert not any("interval covers" in flag for flag in checks["flags"]), checks["flags"]


def test_a_too_narrow_predictive_still_fails_coverage():
    # the check must keep its power: data from p = 0.3, predictive draws from p = 0.15
    idata = _calibrated_counts(np.full((4, 100), 0.15), 32, seed=2)
    data = _calibrated_counts(np.full((4, 100), 0.3), 32, seed=3)
    idata.observed_data["y"].values[:] = data.observed_data["y"].values
    checks = compute_checks(idata, seed=0)
    assert checks["coverage"]["90"] < 0.5
    assert any("90% interval covers" in flag for flag in checks["flags"])
