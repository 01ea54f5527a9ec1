"""Checkpoints of a training run: everything needed to continue it bit for bit.

A run writing ``<out>`` keeps its checkpoints in the folder ``<out>.ckpt/``, one file
per checkpointed update, ``update_00000123.ckpt``. A file is::

    b"VALUEDYN-CHECKPOINT 2\\n" + header (one JSON line) + b"\\n" + payload

The header holds the config JSON, the update and env step reached, the payload's
length and its sha256; the payload is flax msgpack of ``{"runner": ..., "metrics": ...}``:
the whole runner state (parameters, optimizer state, environment states, observations,
per-episode running counts, PRNG keys; every leaf with a leading ``seed`` axis) and the
recorded metrics of every update up to the checkpoint (``[seed, update, ...]``, the
trajectory file's variables). A checkpoint alone therefore continues a run: the
trajectory file may be behind it or missing after a kill. Version 1 files (runner only)
still load, with ``metrics`` None. Files are written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from valuedyn._errors import ValuedynError
from valuedyn._io import atomic_path

MAGIC = b"VALUEDYN-CHECKPOINT 2\n"
#: Version 1 held the runner state alone (no metrics).
MAGIC_V1 = b"VALUEDYN-CHECKPOINT 1\n"
_NAME = re.compile(r"^update_(\d{8})\.ckpt$")


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint. Arrays are numpy with a leading seed axis."""

    path: Path
    config: Any  # TrainConfig
    update: int  # PPO updates completed
    env_step: int  # env steps per seed completed (= update x num_envs x num_steps)
    runner: dict  # the whole runner state (see valuedyn.data._train)
    metrics: dict | None = None  # name -> [seed, update, ...] for updates 1..update; None in version 1 files

    @property
    def params(self) -> dict:
        """``{"actor": ..., "critic": ...}`` flax params, leading seed axis."""
        return self.runner["params"]

    @property
    def opt_state(self):
        return self.runner["opt_state"]

    @property
    def env_state(self):
        return self.runner["env_state"]

    @property
    def rng(self):
        return self.runner["rng"]


def checkpoint_dir(trajectory_path: str | Path) -> Path:
    """``<out>.ckpt``: the checkpoint folder of the run writing ``trajectory_path``."""
    path = Path(trajectory_path)
    return path.with_name(path.name + ".ckpt")


def checkpoint_path(trajectory_path: str | Path, update: int) -> Path:
    return checkpoint_dir(trajectory_path) / f"update_{update:08d}.ckpt"


def checkpoint_coords(num_seeds: int, updates, env_steps) -> dict:
    """The coordinates every per-checkpoint probe file shares (``valuedyn probe`` and
    ``probe --memory``): ``seed`` [S], ``checkpoint`` [C] and, on ``checkpoint``, the
    ``update`` and the ``env_step`` (env steps per seed) each checkpoint was taken at."""
    updates = np.asarray(updates, np.int64)
    return {
        "seed": np.arange(num_seeds),
        "checkpoint": np.arange(len(updates)),
        "update": ("checkpoint", updates),
        "env_step": ("checkpoint", np.asarray(env_steps, np.int64)),
    }


def same_run(a, b) -> bool:
    """Whether two checkpoints' TrainConfigs describe one run: equal in every field that
    changes what is computed (``RUN_ONLY_FIELDS`` aside: a run resumed with ``--resume``
    writes its later checkpoints with ``resume=True, force=False``)."""
    from valuedyn.data._train_cli import program_key

    return program_key(a) == program_key(b)


def list_checkpoints(trajectory_path: str | Path) -> list[Path]:
    """Checkpoint files of the run writing ``trajectory_path``, sorted by update (may be empty)."""
    folder = checkpoint_dir(trajectory_path)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def refuse_run_outputs(outputs, force: bool, *, flag: str = "--force", inputs=(), checkpoints: bool = False) -> None:
    """Refuse, before any work, outputs that would destroy something (the data commands' one check).

    Unless ``force``: an output file that exists; with ``checkpoints`` (the outputs are
    runs), also an output's checkpoint folder (:func:`checkpoint_dir`) that holds
    checkpoints. Always, since ``force`` cannot make it right: an output that is one of
    the ``inputs``, or one path named for two outputs. ``flag`` is what the message tells
    the user to pass.
    """
    from valuedyn._io import refuse_overwrite

    outputs = [Path(path) for path in outputs]
    resolved = [path.resolve() for path in outputs]
    input_paths = {Path(path).resolve() for path in inputs}
    for path, key in zip(outputs, resolved):
        if key in input_paths:
            raise ValuedynError(f"output {path} is also an input of this command; choose another --out")
        if resolved.count(key) > 1:
            raise ValuedynError(f"output {path} would be written twice (it names two outputs of this command); choose another --out")
        refuse_overwrite(path, force, flag=flag)
        held = list_checkpoints(path) if checkpoints else []
        if held and not force:
            raise ValuedynError(
                f"checkpoint folder {checkpoint_dir(path)} already holds {len(held)} checkpoints; "
                f"pass {flag} to replace them, or choose another --out"
            )


def save_checkpoint(trajectory_path: str | Path, config, update: int, env_step: int, runner_host, metrics_host) -> Path:
    """Write the runner state and the metrics of updates 1..``update`` (already on the host,
    numpy leaves) atomically; return the path."""
    from flax import serialization

    from valuedyn._config import config_to_json

    metrics = {name: np.asarray(values) for name, values in metrics_host.items()}
    if any(values.shape[1] != update for values in metrics.values()):
        raise ValueError(f"checkpoint at update {update} given metrics of {[v.shape[1] for v in metrics.values()]} updates")
    state = {"runner": serialization.to_state_dict(runner_host), "metrics": metrics}
    payload = serialization.msgpack_serialize(state)
    header = {
        "config": config_to_json(config),
        "update": int(update),
        "env_step": int(env_step),
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    path = checkpoint_path(trajectory_path, update)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(MAGIC)
            handle.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            handle.write(payload)
    return path


def read_checkpoint_header(path: str | Path) -> tuple[dict, bytes]:
    """``(header, payload)`` of a checkpoint file; checks magic, length and checksum.

    ``header["version"]`` is the file's format version (1 or 2)."""
    path = Path(path)
    if not path.is_file():
        raise ValuedynError(f"checkpoint {path} does not exist; check the path (checkpoints live in <out>.ckpt/)")
    data = path.read_bytes()
    fix = "delete it to resume from the previous checkpoint, or start again with --force"
    version = 2 if data.startswith(MAGIC) else 1 if data.startswith(MAGIC_V1) else None
    if version is None:
        raise ValuedynError(f"checkpoint {path} is corrupt (not a valuedyn checkpoint); {fix}")
    head_end = data.find(b"\n", len(MAGIC))
    try:
        header = {**json.loads(data[len(MAGIC) : head_end]), "version": version}
        expected_bytes, expected_sha = int(header["payload_bytes"]), header["sha256"]
    except (ValueError, KeyError, TypeError):
        raise ValuedynError(f"checkpoint {path} is corrupt (unreadable header); {fix}") from None
    payload = data[head_end + 1 :]
    if len(payload) != expected_bytes:
        raise ValuedynError(
            f"checkpoint {path} is corrupt (truncated: {len(payload)} of {expected_bytes} payload bytes); {fix}"
        )
    if hashlib.sha256(payload).hexdigest() != expected_sha:
        raise ValuedynError(f"checkpoint {path} is corrupt (checksum mismatch); {fix}")
    return header, payload


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by ``valuedyn train``; corrupt or missing -> ValuedynError.

    The runner's structure is rebuilt from the stored config (``make_train``), so the
    environment and event spec of that config must be importable.
    """
    from flax import serialization

    from valuedyn._config import config_from_json
    from valuedyn.data._train_cli import TrainConfig, runner_template

    header, payload = read_checkpoint_header(path)
    config = config_from_json(TrainConfig, header["config"])
    try:
        state = serialization.msgpack_restore(payload)
    except Exception as err:  # msgpack raises several types
        raise ValuedynError(f"checkpoint {path} is corrupt ({type(err).__name__}); delete it or start again with --force") from None
    metrics = None
    if header["version"] >= 2:
        if not isinstance(state, dict) or set(state) != {"runner", "metrics"}:
            raise ValuedynError(f"checkpoint {path} is corrupt (no runner state and metrics); delete it or start again with --force")
        state, metrics = state["runner"], {name: np.asarray(values) for name, values in state["metrics"].items()}
        from valuedyn.data._schema import METRIC_TRAILING_DIMS

        update = int(header["update"])
        if set(metrics) != set(METRIC_TRAILING_DIMS) or any(v.shape[1] != update for v in metrics.values()):
            raise ValuedynError(
                f"checkpoint {path} holds metrics that do not cover updates 1..{update}; it was written by another valuedyn version"
            )
    template = runner_template(config)
    try:
        runner = serialization.from_state_dict(template, state)
    except (ValueError, KeyError, TypeError) as err:
        raise ValuedynError(f"checkpoint {path} does not match its config's runner state ({err}); it was written by another valuedyn version") from None

    def check(want, got):
        got = np.asarray(got)
        if tuple(want.shape) != got.shape or np.dtype(want.dtype) != got.dtype:
            raise ValuedynError(
                f"checkpoint {path} holds an array of shape {got.shape} {got.dtype} where {tuple(want.shape)} {want.dtype} was expected; "
                "it was written by another valuedyn version"
            )
        return got

    import jax

    runner = jax.tree.map(check, template, runner)
    return Checkpoint(Path(path), config, int(header["update"]), int(header["env_step"]), runner, metrics)
