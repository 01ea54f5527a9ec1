"""A resumed run's later checkpoints belong to the same run (the probes follow it across the resume)."""

from __future__ import annotations

import dataclasses

from valuedyn.data._checkpoint import same_run
from valuedyn.data._train_cli import TrainConfig


def test_run_only_settings_do_not_split_a_run():
    first = TrainConfig(out="run.nc", force=True)
    resumed = dataclasses.replace(first, resume=True, force=False, checkpoint_every=7)
    assert first != resumed and same_run(first, resumed)


def test_a_setting_that_changes_what_is_computed_does():
    first = TrainConfig(out="run.nc")
    assert not same_run(first, dataclasses.replace(first, num_envs=first.num_envs * 2))
