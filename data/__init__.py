"""Experiment: the Craftax PPO trainer, the importer of other trainers' logs, and the trajectory file contract.

Every name is loaded on first use: ``import valuedyn.data`` (to open a trajectory, or for
the folder of the shipped runs) does not pull in JAX, flax and Craftax.
"""

from __future__ import annotations

import importlib

#: public name -> the module that defines it
_WHERE = {
    # the trainer, its checkpoints and environments
    "Checkpoint": "valuedyn.data._checkpoint",
    "checkpoint_dir": "valuedyn.data._checkpoint",
    "list_checkpoints": "valuedyn.data._checkpoint",
    "load_checkpoint": "valuedyn.data._checkpoint",
    "ENV_NAMES": "valuedyn.data._envs",
    "make_env": "valuedyn.data._envs",
    "make_networks": "valuedyn.data._networks",
    "make_train": "valuedyn.data._train",
    "TrainConfig": "valuedyn.data._train_cli",
    "run_train": "valuedyn.data._train_cli",
    # the importer of other trainers' logs
    "DEFAULT_COLUMNS": "valuedyn.data._import",
    "ImportConfig": "valuedyn.data._import",
    "import_runs": "valuedyn.data._import",
    "run_import": "valuedyn.data._import",
    # the trajectory file contract
    "IMPORT_REQUIRED_ATTRS": "valuedyn.data._schema",
    "REQUIRED_ATTRS": "valuedyn.data._schema",
    "TRAJECTORY_DIMS": "valuedyn.data._schema",
    "TRAJECTORY_PARTS": "valuedyn.data._schema",
    "TRAJECTORY_VARIABLES": "valuedyn.data._schema",
    "absent_parts": "valuedyn.data._schema",
    "observed_mask": "valuedyn.data._schema",
    "open_trajectory": "valuedyn.data._schema",
    "present_parts": "valuedyn.data._schema",
    "validate_trajectory": "valuedyn.data._schema",
    # developmental-interpretability measures (valuedyn probe)
    "LLCEstimate": "valuedyn.data._llc",
    "SGLDSettings": "valuedyn.data._llc",
    "estimate_llc": "valuedyn.data._llc",
    "make_llc_estimator": "valuedyn.data._llc",
    "reduced_rank_regression_rlct": "valuedyn.data._llc",
    "BEHAVIOURS": "valuedyn.data._probe",
    "FEATURES": "valuedyn.data._probe",
    "classic_state_features": "valuedyn.data._probe",
    "collect_rollout_states": "valuedyn.data._probe",
    "context_size": "valuedyn.data._probe",
    "essential_dynamics": "valuedyn.data._probe",
    "open_probe_set": "valuedyn.data._probe",
    "stratified_indices": "valuedyn.data._probe",
    "ProbeConfig": "valuedyn.data._probe_cli",
    "run_probe": "valuedyn.data._probe_cli",
    # environmental memory (valuedyn probe --memory)
    "MEMORY_FEATURES": "valuedyn.data._memory",
    "MEMORY_MARGIN": "valuedyn.data._memory",
    "MemorySettings": "valuedyn.data._memory",
    "collect_memory_rollouts": "valuedyn.data._memory",
    "decode_memory": "valuedyn.data._memory",
    "memory_horizon": "valuedyn.data._memory",
    "memory_probe": "valuedyn.data._memory",
    "memory_targets": "valuedyn.data._memory",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'valuedyn.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
