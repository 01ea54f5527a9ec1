"""Session fixtures of the fitting tests: simulated trajectory files."""

import pytest
from fitting_helpers import LOGISTIC_TRUTH, OVERSHOOT_TRUTH, make_trajectory


@pytest.fixture(scope="session")
def overshoot_file(tmp_path_factory):
    return make_trajectory("overshoot", OVERSHOOT_TRUTH, tmp_path_factory.mktemp("traj") / "overshoot.nc", seed=1)


@pytest.fixture(scope="session")
def logistic_file(tmp_path_factory):
    return make_trajectory("logistic_onset", LOGISTIC_TRUTH, tmp_path_factory.mktemp("traj") / "logistic.nc", seed=2)
