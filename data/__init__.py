"""Experiment: the Craftax PPO trainer and the trajectory file contract."""

from valuedyn.data._schema import (
    REQUIRED_ATTRS,
    TRAJECTORY_DIMS,
    TRAJECTORY_VARIABLES,
    open_trajectory,
    validate_trajectory,
)

__all__ = ["REQUIRED_ATTRS", "TRAJECTORY_DIMS", "TRAJECTORY_VARIABLES", "open_trajectory", "validate_trajectory"]
