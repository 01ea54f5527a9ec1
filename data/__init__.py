"""Experiment: the Craftax PPO trainer, the importer of other trainers' logs, and the trajectory file contract."""

from valuedyn.data._checkpoint import Checkpoint, checkpoint_dir, list_checkpoints, load_checkpoint
from valuedyn.data._envs import ENV_NAMES, make_env
from valuedyn.data._import import DEFAULT_COLUMNS, ImportConfig, import_runs, run_import
from valuedyn.data._networks import make_networks
from valuedyn.data._schema import (
    IMPORT_REQUIRED_ATTRS,
    REQUIRED_ATTRS,
    TRAJECTORY_DIMS,
    TRAJECTORY_PARTS,
    TRAJECTORY_VARIABLES,
    absent_parts,
    observed_mask,
    open_trajectory,
    present_parts,
    validate_trajectory,
)
from valuedyn.data._train import make_train
from valuedyn.data._train_cli import TrainConfig, run_train

__all__ = [
    "Checkpoint",
    "DEFAULT_COLUMNS",
    "ENV_NAMES",
    "IMPORT_REQUIRED_ATTRS",
    "ImportConfig",
    "REQUIRED_ATTRS",
    "TRAJECTORY_DIMS",
    "TRAJECTORY_PARTS",
    "TRAJECTORY_VARIABLES",
    "TrainConfig",
    "absent_parts",
    "checkpoint_dir",
    "import_runs",
    "list_checkpoints",
    "load_checkpoint",
    "make_env",
    "make_networks",
    "make_train",
    "observed_mask",
    "open_trajectory",
    "present_parts",
    "run_import",
    "run_train",
    "validate_trajectory",
]

# Developmental-interpretability measures (valuedyn probe).
from valuedyn.data._llc import LLCEstimate, SGLDSettings, estimate_llc, make_llc_estimator, reduced_rank_regression_rlct
from valuedyn.data._probe import (
    BEHAVIOURS,
    FEATURES,
    classic_state_features,
    collect_rollout_states,
    context_size,
    essential_dynamics,
    open_probe_set,
    stratified_indices,
)
from valuedyn.data._probe_cli import ProbeConfig, run_probe

# Environmental memory (valuedyn probe --memory).
from valuedyn.data._memory import (
    MEMORY_FEATURES,
    MEMORY_MARGIN,
    MemorySettings,
    collect_memory_rollouts,
    decode_memory,
    memory_horizon,
    memory_probe,
    memory_targets,
)

__all__ += [
    "BEHAVIOURS",
    "FEATURES",
    "LLCEstimate",
    "ProbeConfig",
    "SGLDSettings",
    "classic_state_features",
    "collect_rollout_states",
    "context_size",
    "essential_dynamics",
    "estimate_llc",
    "make_llc_estimator",
    "open_probe_set",
    "reduced_rank_regression_rlct",
    "run_probe",
    "stratified_indices",
]
__all__ += [
    "MEMORY_FEATURES",
    "MEMORY_MARGIN",
    "MemorySettings",
    "collect_memory_rollouts",
    "decode_memory",
    "memory_horizon",
    "memory_probe",
    "memory_targets",
]
