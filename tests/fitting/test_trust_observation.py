"""The beta-binomial observation family: its log density, replicates and the rule that
chooses it over the Binomial when per-update rates scatter more than a Binomial allows."""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from jax.scipy.special import gammaln

from valuedyn._errors import ValuedynError
from valuedyn.fitting.inference._observation import OBSERVATION_MODELS, observation_for
from valuedyn.fitting.judge._trust import misspecification


def _cells():
    rng = np.random.default_rng(0)
    exposure = rng.integers(1, 150, size=(3, 40)).astype(np.float32)
    mask = rng.uniform(size=exposure.shape) > 0.1
    mean = rng.uniform(0.01, 0.95, size=exposure.shape).astype(np.float32)
    y = np.where(mask, rng.binomial(exposure.astype(int), mean), 0).astype(np.float32)
    return y, mean, exposure, mask


@pytest.mark.parametrize("concentration", [0.7, 20.0, 400.0])
def test_beta_binomial_log_density_matches_numpyro(concentration):
    y, mean, exposure, mask = _cells()
    observation = OBSERVATION_MODELS["betabinomial"]
    params = {"dispersion": jnp.float32(1.0 / concentration)}
    reference = dist.BetaBinomial(mean * concentration, (1 - mean) * concentration, total_count=exposure).log_prob(y)
    log_binomial_coefficient = gammaln(exposure + 1) - gammaln(y + 1) - gammaln(exposure - y + 1)
    kernel = observation.log_kernel(y, mean, exposure, mask, params) + log_binomial_coefficient
    np.testing.assert_allclose(np.asarray(kernel)[mask], np.asarray(reference)[mask], rtol=2e-4, atol=2e-3)
    assert np.all(np.asarray(observation.log_kernel(y, mean, exposure, mask, params))[~mask] == 0)
    built = observation.distribution(mean, exposure, mask, params).log_prob(y)
    # both in float32: numpyro's textbook form carries ~1e-4 of rounding at concentration 400
    np.testing.assert_allclose(np.asarray(built)[mask], np.asarray(reference)[mask], rtol=1e-5, atol=1e-3)


def test_beta_binomial_replicates_scatter_as_claimed():
    """Replicated counts have the beta-binomial mean and variance
    n p (1 - p) (n + phi) / (1 + phi), several times the Binomial's at phi = 20."""
    observation = OBSERVATION_MODELS["betabinomial"]
    n_draws, phi, p, n = 20000, 20.0, 0.3, 100
    mean = np.full((n_draws, 1, 1), p)
    draws = observation.replicate(np.random.default_rng(1), mean, np.array([[n]]), np.array([[True]]),
                                  {"dispersion": np.full(n_draws, 1.0 / phi)})
    assert draws.dtype == np.int32
    expected_variance = n * p * (1 - p) * (n + phi) / (1 + phi)
    assert draws.mean() == pytest.approx(n * p, rel=0.02)
    assert draws.var() == pytest.approx(expected_variance, rel=0.06)
    assert draws.var() > 4 * n * p * (1 - p)


def test_unlocks_may_use_the_beta_binomial_but_not_counts():
    assert observation_for("binomial", None).name == "betabinomial"  # it nests the Binomial (dispersion 0)
    assert observation_for("binomial", "binomial").name == "binomial"
    assert observation_for("binomial", "betabinomial").name == "betabinomial"
    with pytest.raises(ValuedynError, match="does not fit count data"):
        observation_for("count", "betabinomial")


def test_misspecification_needs_a_statistic_off_in_several_seeds():
    checks = {
        "coverage": {"50": 0.5, "90": 0.9},
        "loo_pit": {"ks_p_value": 0.4},
        "p_values": {"peak_height": {"0": 0.001, "1": 0.5, "2": 0.4, "3": 0.6},
                     "final_level": {"0": 0.999, "1": 0.002, "2": 0.4, "3": 0.6}},
    }
    failures, evidence = misspecification(checks)
    assert len(failures) == 1 and "final_level" in failures[0] and "seeds 0, 1" in failures[0]
    assert set(evidence["statistics"]) == {"final_level"}
    checks["coverage"]["90"] = 0.78
    failures, evidence = misspecification(checks)
    assert any("covers 0.78" in f for f in failures) and evidence["coverage_90"] == 0.78


def test_a_beta_binomial_fit_with_the_old_concentration_loads_with_dispersion(tmp_path):
    """Fit files written before the beta-binomial's parameter became ``dispersion`` (as the
    negbin's) still load, and read as if written now."""
    import json

    import arviz as az

    from valuedyn.fitting.inference._store import REQUIRED_FIT_ATTRS, load_fit, save_fit

    concentration = np.array([[20.0, 40.0], [50.0, 80.0]])
    groups = {group: {"x": np.zeros((2, 2))} for group in ("sample_stats", "log_likelihood", "posterior_predictive")}
    idata = az.from_dict(posterior={"concentration": concentration}, observed_data={"x": np.zeros(2)},
                         constant_data={"x": np.zeros(2)}, **groups)
    idata.attrs.update({name: "-" for name in REQUIRED_FIT_ATTRS})
    idata.attrs.update(observation_model="betabinomial", observation_parameters=json.dumps(["concentration"]))
    save_fit(idata, tmp_path / "old.nc")
    loaded = load_fit(tmp_path / "old.nc")
    np.testing.assert_allclose(loaded.posterior["dispersion"].values, 1.0 / concentration)
    assert "concentration" not in loaded.posterior
    assert json.loads(loaded.attrs["observation_parameters"]) == ["dispersion"]
