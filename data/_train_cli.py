"""``valuedyn train``: the long-run loop around the jitted PPO program.

A run is a Python loop over jitted chunks of ``--chunk-updates`` PPO updates (one
compiled program; a shorter last chunk compiles a second one). The next chunk is
dispatched before the host writes files, and checkpoints are written by a background
thread, so the accelerator stays busy. After every chunk the
trajectory file ``--out`` is rewritten atomically; checkpoints go to ``<out>.ckpt/`` at
log-spaced updates (the chunk ends that reach 1, 2, 4, 8, ... updates) and at the last
update, or every ``--checkpoint-every`` updates. ``--resume`` continues from the latest
checkpoint and gives exactly the trajectory of an uninterrupted run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

from valuedyn._config import config_to_json, option
from valuedyn._errors import ValuedynError

#: Fields that change how a run is driven, not what it computes: they may differ on --resume.
RUN_ONLY_FIELDS = (
    "out", "resume", "force", "progress", "distributed", "coordinator_address", "num_processes", "process_id", "checkpoint_every",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Train PPO agents on Craftax (seeds vmapped in one program) and record, per update and per
seed, counts of behaviour: finished episodes, achievement unlocks, event totals, the action
histogram, per-episode placement histograms, returns, lengths and PPO statistics.

Outputs: the trajectory file --out (netCDF4, rewritten atomically after every chunk) and
checkpoints in the folder <out>.ckpt/ (log-spaced updates plus the last one).
Defaults are the public Craftax PPO baseline. A tiny CPU demo:
  valuedyn train --num-envs 8 --num-steps 16 --layer-size 32 --total-steps 4096 --out demo.nc"""

    env: str = option("Craftax-Classic-Symbolic-v1", "environment: Craftax-Classic-Symbolic-v1 or Craftax-Symbolic-v1", static=True)
    out: str = option("trajectory.nc", "trajectory file to write; checkpoints go to the folder <out>.ckpt/", metavar="PATH")
    seeds: int = option(1, "number of independent agents trained in one program (vmapped; sharded over devices)", static=True)
    seed: int = option(0, "base seed; agent i uses fold_in(PRNGKey(seed), i)")
    total_steps: int = option(10_000_000, "env steps per agent; rounded down to whole updates of num_envs x num_steps", static=True)
    num_envs: int = option(1024, "parallel environments per agent", static=True)
    num_steps: int = option(64, "env steps per environment per PPO update", static=True)
    update_epochs: int = option(4, "PPO epochs per update", static=True)
    num_minibatches: int = option(8, "PPO minibatches per epoch; must divide --num-envs", static=True)
    lr: float = option(2e-4, "Adam learning rate (start value when annealed)")
    anneal_lr: bool = option(True, "anneal the learning rate linearly to 0 over the run (--no-anneal-lr: constant)")
    adam_eps: float = option(1e-5, "Adam epsilon")
    gamma: float = option(0.99, "discount factor")
    gae_lambda: float = option(0.8, "GAE lambda")
    clip_eps: float = option(0.2, "PPO clip range (policy ratio and value)")
    ent_coef: float = option(0.01, "entropy bonus coefficient")
    vf_coef: float = option(0.5, "value loss coefficient")
    max_grad_norm: float = option(1.0, "global gradient norm clip")
    layer_size: int = option(512, "units per hidden layer of the actor and critic MLPs", static=True)
    num_layers: int = option(3, "hidden layers of the actor and critic MLPs (tanh)", static=True)
    recurrent: bool = option(False, "GRU policy: actor and critic each get a GRU core, reset at episode start", static=True)
    gru_hidden: int = option(256, "GRU hidden size with --recurrent", static=True)
    reward_weights: tuple[str, ...] = option(
        (), "reward per achievement as NAME=WEIGHT items (others keep Craftax's weight: 1 in Classic)", metavar="NAME=WEIGHT"
    )
    reward_every: tuple[str, ...] = option(
        (), "events paid at every occurrence (the weight of their achievement) instead of at the first unlock per episode, e.g. place_plant", metavar="EVENT"
    )
    health_reward: bool = option(True, "include Craftax's health term, 0.1 x change of health (--no-health-reward: drop it)")
    placement_bins: int = option(32, "bins of the per-episode placement histogram (last bin: that count or more)", static=True)
    reset_ratio: int = option(16, "optimistic resets: fresh worlds generated per step = num_envs // reset_ratio (at least 1)", static=True)
    chunk_updates: int = option(
        1, "PPO updates per jitted chunk; the file is rewritten after each chunk (the next chunk already runs meanwhile)", static=True
    )
    checkpoint_every: int = option(0, "checkpoint every N updates (at the chunk end reaching it); 0: log-spaced 1, 2, 4, 8, ... plus the last")
    resume: bool = option(False, "continue the run from the latest checkpoint in <out>.ckpt/ (same config required)")
    force: bool = option(False, "replace an existing --out (and its checkpoints) instead of refusing")
    progress: bool = option(True, "show a progress bar with steps/s and ETA on stderr")
    distributed: bool = option(
        False, "multi-host run: call jax.distributed.initialize() first; the seed axis spans the devices of all processes"
    )
    coordinator_address: str = option(
        "", "with --distributed: HOST:PORT of process 0's coordinator (empty: detected, e.g. under SLURM)", metavar="HOST:PORT"
    )
    num_processes: int = option(0, "with --distributed: number of processes (0: detected, e.g. under SLURM)")
    process_id: int = option(-1, "with --distributed: this process's id, 0..num_processes-1 (-1: detected, e.g. under SLURM)")


# ---------------------------------------------------------------------------
# validation (outside jit, before anything is written)
# ---------------------------------------------------------------------------


def validate_config(config: TrainConfig) -> None:
    from valuedyn.data._envs import check_env_name

    check_env_name(config.env)
    positive = ("seeds", "total_steps", "num_envs", "num_steps", "update_epochs", "num_minibatches", "layer_size",
                "num_layers", "gru_hidden", "reset_ratio", "chunk_updates")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValuedynError(f"--{name.replace('_', '-')} must be >= 1, received {getattr(config, name)}")
    if config.checkpoint_every < 0:
        raise ValuedynError(f"--checkpoint-every must be >= 0 (0: log-spaced), received {config.checkpoint_every}")
    if config.placement_bins < 2:
        raise ValuedynError(f"--placement-bins must be >= 2, received {config.placement_bins}")
    if config.num_envs % config.num_minibatches:
        raise ValuedynError(
            f"--num-envs ({config.num_envs}) must be divisible by --num-minibatches ({config.num_minibatches}); "
            "change one of them"
        )
    if config.num_envs * config.num_steps // config.num_minibatches < 2:
        raise ValuedynError("a PPO minibatch needs at least 2 transitions; raise --num-envs or --num-steps")
    steps_per_update = config.num_envs * config.num_steps
    if config.total_steps < steps_per_update:
        raise ValuedynError(
            f"--total-steps ({config.total_steps}) is smaller than one update (num_envs x num_steps = {steps_per_update}); "
            "raise --total-steps or lower --num-envs/--num-steps"
        )
    for name in ("lr", "gamma", "gae_lambda", "clip_eps", "adam_eps", "max_grad_norm"):
        if not getattr(config, name) > 0:
            raise ValuedynError(f"--{name.replace('_', '-')} must be > 0, received {getattr(config, name)}")
    if config.resume and config.force:
        raise ValuedynError("--resume and --force contradict each other; pass one of them")
    cluster = {"coordinator_address": config.coordinator_address != "", "num_processes": config.num_processes != 0,
               "process_id": config.process_id != -1}
    if any(cluster.values()) and not config.distributed:
        given = ", ".join("--" + name.replace("_", "-") for name, set_ in cluster.items() if set_)
        raise ValuedynError(f"{given} only apply to a multi-host run; add --distributed or drop them")
    if config.num_processes < 0:
        raise ValuedynError(f"--num-processes must be >= 1 (0: detected), received {config.num_processes}")
    if config.process_id < -1 or (config.num_processes and config.process_id >= config.num_processes):
        raise ValuedynError(
            f"--process-id must be in 0..{max(config.num_processes - 1, 0)} (-1: detected), received {config.process_id}"
        )


def start_distributed(config: TrainConfig) -> None:
    """``jax.distributed.initialize`` with the cluster flags (unset ones are detected by JAX,
    e.g. from SLURM's environment). On CPU the processes exchange arrays with JAX's default
    CPU collectives (gloo over TCP). Must run before anything touches a JAX device."""
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=config.coordinator_address or None,
            num_processes=config.num_processes or None,
            process_id=None if config.process_id == -1 else config.process_id,
        )
    except (RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValuedynError(
            f"--distributed: jax.distributed.initialize failed ({reason}); pass --coordinator-address HOST:PORT, "
            "--num-processes and --process-id, or run under a cluster manager JAX detects (SLURM, Open MPI)"
        ) from None


def to_seed_sharding(tree, sharding):
    """Host arrays (the whole seed axis, the same on every process) -> device arrays laid out
    by ``sharding`` (each process places the slices its devices hold); ``sharding`` None:
    the default device."""
    import jax

    if sharding is None:
        return jax.tree.map(jax.device_put, tree)

    def place(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(place, tree)


def check_devices(config: TrainConfig) -> int:
    import jax

    devices = jax.device_count()
    if devices > 1 and config.seeds % devices:
        raise ValuedynError(
            f"--seeds ({config.seeds}) must be divisible by the number of devices ({devices}) to shard the seed axis; "
            f"use --seeds {devices * max(1, config.seeds // devices)} or restrict the visible devices"
        )
    return devices


def config_differences(stored: TrainConfig, current: TrainConfig) -> list[str]:
    return [
        f"{f.name}: stored {getattr(stored, f.name)!r}, given {getattr(current, f.name)!r}"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RUN_ONLY_FIELDS and getattr(stored, f.name) != getattr(current, f.name)
    ]


# ---------------------------------------------------------------------------
# programs (cached per computation, so tests and repeated runs compile once)
# ---------------------------------------------------------------------------


def program_key(config: TrainConfig) -> TrainConfig:
    """The config with the run-only fields reset: equal keys compute the same thing."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in RUN_ONLY_FIELDS}
    return dataclasses.replace(config, **defaults)


@functools.lru_cache(maxsize=8)
def _compiled_functions(key: TrainConfig, num_devices: int):
    """``(program, init_jit, chunk_jit, sharding)`` for a program key."""
    import jax

    from valuedyn.data._train import make_train

    program = make_train(key)
    sharding = None
    if num_devices > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.asarray(jax.devices()), ("seed",))
        sharding = NamedSharding(mesh, PartitionSpec("seed"))
        init_jit = jax.jit(program.init, in_shardings=sharding, out_shardings=sharding)
        chunk_jit = jax.jit(program.chunk, static_argnums=1, in_shardings=(sharding,), out_shardings=sharding)
    else:
        init_jit = jax.jit(program.init)
        chunk_jit = jax.jit(program.chunk, static_argnums=1)
    return program, init_jit, chunk_jit, sharding


#: On CPU, a run of at most this many env steps (all seeds together) is compiled with the
#: cheapest XLA settings: compiling Craftax then costs more than the slower run (measured on
#: 2 CPU cores, 2 seeds x 1024 steps: 37 s in all instead of 49 s, the run ~3x slower).
SMALL_RUN_STEPS = 4096


def compiler_options(config: TrainConfig | None = None) -> dict:
    """XLA options for our programs: on CPU, LLVM optimisation level 1 halves Craftax's compile
    time at no measurable run-time cost; a small run (``config`` given, at most
    :data:`SMALL_RUN_STEPS` env steps over all seeds) gets the cheapest settings. The choice
    depends on the config alone, so a resumed run compiles the same program."""
    import jax

    from valuedyn.data._probe import cheap_compile_options

    if jax.default_backend() != "cpu":
        return {}
    small = config is not None and config.seeds * config.total_steps <= SMALL_RUN_STEPS
    return cheap_compile_options(small) or {"xla_backend_optimization_level": 1}


def runner_template(config: TrainConfig):
    """The runner state's structure (ShapeDtypeStruct leaves) for ``config``."""
    import jax

    from valuedyn.data._train import make_train, seed_keys

    program = make_train(program_key(config))
    return jax.eval_shape(program.init, seed_keys(config))


def chunk_schedule(num_updates: int, chunk_updates: int) -> list[int]:
    """Chunk end updates: multiples of chunk_updates, then the last update."""
    ends = list(range(chunk_updates, num_updates + 1, chunk_updates))
    if not ends or ends[-1] != num_updates:
        ends.append(num_updates)
    return ends


def checkpoint_due(previous_end: int, end: int, num_updates: int, every: int) -> bool:
    """Checkpoint at this chunk end? (a target update in (previous_end, end], the first chunk
    end of a fresh run, so that a killed run can always be resumed, or the last)."""
    if end == num_updates or previous_end == 0:
        return True
    if every > 0:
        return end // every > previous_end // every
    power = 1
    while power <= end:
        if power > previous_end:
            return True
        power *= 2
    return False


def _to_host(tree):
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


def _prepare_outputs(config: TrainConfig):
    """Decide fresh start vs resume; returns (checkpoint or None, prior metrics, prior attrs).

    A resume continues from the latest checkpoint, which holds the metrics of every update
    up to it; the trajectory file may be ahead of it (the checkpoint after it was not yet
    written when the run was killed) or, right after the first chunk, not yet written.
    ``--resume`` refuses, before anything is written, a trajectory file whose checkpoint
    folder is missing or empty: there is no state to continue from, and starting again
    would overwrite it. With neither file nor checkpoints it starts the run (a requeued job
    killed before its first chunk).
    """
    from valuedyn._config import config_from_json
    from valuedyn.data._checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint, refuse_run_outputs
    from valuedyn.data._record import metrics_from_dataset
    from valuedyn.data._schema import open_trajectory

    out = Path(config.out)
    if not config.resume:
        refuse_run_outputs([out], config.force, flag="--resume to continue it or --force", checkpoints=True)
        return None, None, {}
    checkpoints = list_checkpoints(out)
    stored_ds = open_trajectory(out) if out.exists() else None
    if stored_ds is not None:
        stored = config_from_json(TrainConfig, stored_ds.attrs["config"])
        differences = config_differences(stored, config)
        if differences:
            raise ValuedynError(f"--resume with a config that differs from the stored one in {out} ({'; '.join(differences)}); pass the same flags")
    if not checkpoints:
        if stored_ds is not None:
            raise ValuedynError(
                f"--resume: {out} exists but its checkpoint folder {checkpoint_dir(out)} is missing or holds no checkpoint, "
                f"so there is no state to continue from; start again with --force (replaces {out}) or choose another --out"
            )
        return None, None, {}
    checkpoint = load_checkpoint(checkpoints[-1])
    differences = config_differences(checkpoint.config, config)
    if differences:
        raise ValuedynError(
            f"--resume with a config that differs from the checkpoint {checkpoints[-1]} ({'; '.join(differences)}); pass the same flags"
        )
    prior_attrs = {} if stored_ds is None else {k: stored_ds.attrs[k] for k in ("wall_time_s", "compile_time_s") if k in stored_ds.attrs}
    if checkpoint.metrics is not None:
        return checkpoint, checkpoint.metrics, prior_attrs
    # a version 1 checkpoint holds no metrics: they come from the trajectory file
    if stored_ds is None or stored_ds.sizes["update"] < checkpoint.update:
        have = 0 if stored_ds is None else stored_ds.sizes["update"]
        raise ValuedynError(
            f"--resume: {out} holds {have} updates but the latest checkpoint is at update {checkpoint.update}; "
            "the trajectory file was replaced or removed; start again with --force"
        )
    return checkpoint, metrics_from_dataset(stored_ds, checkpoint.update), prior_attrs


def run_train(config: TrainConfig, *, stop_after_chunks: int | None = None) -> int:
    """Run (or resume) a training run; returns the exit status.

    ``stop_after_chunks`` stops after that many chunks as if the process were killed right
    after writing them (tests of --resume use it).
    """
    validate_config(config)
    if config.distributed:
        start_distributed(config)
    import jax

    from valuedyn._io import provenance, write_dataset_atomic
    from valuedyn.data._checkpoint import checkpoint_dir, list_checkpoints, save_checkpoint
    from valuedyn.data._record import build_trajectory, concat_metrics
    from valuedyn.data._train import event_spec_for, parse_reward_spec, seed_keys

    num_devices = check_devices(config)
    parse_reward_spec(config, event_spec_for(config.env))  # reward flags checked before any work
    checkpoint, prior_metrics, prior_attrs = _prepare_outputs(config)
    is_writer = jax.process_index() == 0
    out = Path(config.out)

    started = time.perf_counter()
    program, init_jit, chunk_jit, sharding = _compiled_functions(program_key(config), num_devices)
    num_updates, steps_per_update = program.num_updates, program.steps_per_update
    if checkpoint is not None:
        runner = to_seed_sharding(checkpoint.runner, sharding)
        start_update = checkpoint.update
        parts = [prior_metrics]
        if start_update >= num_updates:
            print(f"valuedyn train: {out} is already complete ({num_updates} updates)", file=sys.stderr)
            return 0
    else:
        if config.force and is_writer:
            for stale in list_checkpoints(out):
                stale.unlink()
        keys = to_seed_sharding(seed_keys(config), sharding)
        runner = init_jit.lower(keys).compile(compiler_options(config))(keys)
        start_update = 0
        parts = []

    ends = [e for e in chunk_schedule(num_updates, min(config.chunk_updates, num_updates)) if e > start_update]
    compile_started = time.perf_counter()
    compiled = {}

    def compiled_chunk(size):
        if size not in compiled:
            compiled[size] = chunk_jit.lower(runner, size).compile(compiler_options(config))
        return compiled[size]

    sizes = [end - begin for begin, end in zip([start_update] + ends[:-1], ends)]
    compiled_chunk(sizes[0])
    compile_time = time.perf_counter() - compile_started

    reward_spec = program.reward_spec
    attrs_static = {
        "config": config_to_json(config),
        **provenance(),
        "compile_time_s": float(prior_attrs.get("compile_time_s", 0.0)) + compile_time,
        "updates_planned": num_updates,
        "steps_per_update": steps_per_update,
        "checkpoint_dir": checkpoint_dir(out).name,
        "event_achievement": json.dumps(dict(program.spec.event_achievement), sort_keys=True),
        "reward": json.dumps(
            {
                "first_unlock_weights": dict(zip(program.spec.achievements, reward_spec.first_weights)),
                "every_occurrence": {program.spec.events[i]: w for i, w in zip(reward_spec.every_events, reward_spec.every_weights)},
                "health_term": reward_spec.health,
            },
            sort_keys=True,
        ),
    }

    from tqdm import tqdm

    bar = tqdm(
        total=num_updates * steps_per_update * config.seeds,
        initial=start_update * steps_per_update * config.seeds,
        unit="step",
        unit_scale=True,
        desc="valuedyn train",
        disable=not (config.progress and is_writer),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    loop_started = time.perf_counter()
    previous_end = start_update
    # checkpoints are serialised and written by one background thread while training goes on
    saver = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    saving = None
    has_checkpoint = checkpoint is not None
    pending = compiled_chunk(sizes[0])(runner)
    try:
        for index, end in enumerate(ends):
            runner, metrics = pending
            if index + 1 < len(ends):  # dispatch the next chunk before touching files
                pending = compiled_chunk(sizes[index + 1])(runner)
            metrics = _to_host(metrics)
            parts.append(metrics)
            trained_s = time.perf_counter() - loop_started
            done_steps = (end - start_update) * steps_per_update * config.seeds
            attrs = {
                **attrs_static,
                "wall_time_s": float(prior_attrs.get("wall_time_s", 0.0)) + time.perf_counter() - started,
                "steps_per_second": done_steps / trained_s if trained_s > 0 else 0.0,
                "updates_completed": end,
                "complete": int(end == num_updates),
            }
            metrics_so_far = concat_metrics(parts)
            if checkpoint_due(previous_end, end, num_updates, config.checkpoint_every):
                runner_host = _to_host(runner)
                if saving is not None:
                    saving.result()  # one checkpoint in flight at a time; re-raises its errors
                if is_writer:
                    saving = saver.submit(save_checkpoint, out, config, end, end * steps_per_update, runner_host, metrics_so_far)
                    if not has_checkpoint:
                        # the run's first checkpoint lands before its first trajectory file, so a
                        # trajectory file always has a checkpoint to resume from
                        saving.result()
                        has_checkpoint = True
            if is_writer:
                write_dataset_atomic(
                    build_trajectory(metrics_so_far, program.names, steps_per_update, config.placement_bins, attrs), out
                )
            bar.update((end - previous_end) * steps_per_update * config.seeds)
            previous_end = end
            if stop_after_chunks is not None and index + 1 >= stop_after_chunks:
                break
    finally:
        saver.shutdown(wait=True)  # a started checkpoint is always finished (or its temp file removed)
        bar.close()
    if saving is not None:
        saving.result()
    if stop_after_chunks is not None and previous_end < num_updates:
        return 0
    if is_writer:
        print(
            f"valuedyn train: wrote {out} ({num_updates} updates x {config.seeds} seeds, "
            f"{attrs['steps_per_second']:.0f} steps/s, compile {compile_time:.1f} s)",
            file=sys.stderr,
        )
    return 0
