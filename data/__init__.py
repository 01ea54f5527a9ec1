"""Experiment: the Craftax PPO trainer and the trajectory file contract."""

from valuedyn.data._checkpoint import Checkpoint, checkpoint_dir, list_checkpoints, load_checkpoint
from valuedyn.data._envs import ENV_NAMES, make_env
from valuedyn.data._networks import make_networks
from valuedyn.data._schema import (
    REQUIRED_ATTRS,
    TRAJECTORY_DIMS,
    TRAJECTORY_VARIABLES,
    open_trajectory,
    validate_trajectory,
)
from valuedyn.data._train import make_train
from valuedyn.data._train_cli import TrainConfig, run_train

__all__ = [
    "Checkpoint",
    "ENV_NAMES",
    "REQUIRED_ATTRS",
    "TRAJECTORY_DIMS",
    "TRAJECTORY_VARIABLES",
    "TrainConfig",
    "checkpoint_dir",
    "list_checkpoints",
    "load_checkpoint",
    "make_env",
    "make_networks",
    "make_train",
    "open_trajectory",
    "run_train",
    "validate_trajectory",
]
