"""``valuedyn probe RUN``: developmental-interpretability measures over a run's checkpoints.

Writes ``<RUN stem>.probe.nc`` next to the trajectory file ``RUN`` (and, unless
``--probe-set`` names an existing one, the probe set ``<RUN stem>.probeset.nc``).

``valuedyn probe RUN --memory`` measures environmental memory instead
(:mod:`valuedyn.data._memory`) and writes ``<RUN stem>.memory.nc``: its own file, since
its measures come from rollouts of each checkpoint rather than from a probe set of
single states, have their own dims (``feature``, ``lag``), and are the only measures a
recurrent run has (context size, essential dynamics and the LLC read a policy on
single states, which a GRU's history-dependent output does not allow); a run can hold
both files without one replacing the other.

The output is a trajectory in the sense of the file contract: dims ``seed`` and
``checkpoint`` with coords ``update[checkpoint]`` and ``env_step[checkpoint]``, integer
counts where the measure is a count, and provenance attributes. To fit it like a
trajectory file, ``ds.swap_dims(checkpoint="update")`` gives the ``(seed, update)``
layout; ``context_count[seed, checkpoint, behaviour]`` out of ``num_probe_states`` is a
binomial count (``context_states[behaviour]`` is the count of states where the behaviour
is possible at all), and ``llc_*`` / ``pc_coords`` are real-valued series.

LLC losses (each minimised exactly at the checkpoint, so ``w*`` is a minimum):

- policy: mean over probe states of KL(pi_{w*}(.|s) || pi_w(.|s)), i.e. the cross entropy
  of the policy against the checkpoint's own action distribution, minus its entropy;
- value: mean over probe states of 0.5 * (V_w(s) - V_{w*}(s))^2, a unit-variance Gaussian
  negative log-likelihood of the checkpoint's own value predictions.

``n`` is the number of probe states; ``beta = 1 / log n``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from valuedyn._config import config_to_json, option
from valuedyn._errors import ValuedynError
from valuedyn.data._memory import MemorySettings


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Developmental-interpretability measures for every checkpoint of a run (RUN.ckpt/):
context size of each action and event-producing behaviour on a fixed probe set of states,
essential dynamics (PCA of the policy's log-probabilities through training) and the local
learning coefficient (SGLD) of the policy and of the value network.

Writes <RUN stem>.probe.nc next to RUN, and the probe set <RUN stem>.probeset.nc unless
--probe-set reuses one (reuse it to compare runs on the same states).
A tiny CPU example (after the tiny `valuedyn train` demo):
  valuedyn probe demo.nc --num-probe-states 128 --rollout-steps 32 --llc-steps 100 --llc-burnin 25

--memory measures environmental memory instead (the only measures of a --recurrent run):
each checkpoint is rolled out on its own behaviour, and linear decoders read from the
policy's state whether water, a table, a tree were in view k steps ago, the direction
back to the last water seen and the steps since the last drink, against a decoder given
only what the current observation holds; the memory horizon of a feature is the largest
lag k at which the state beats it by a margin. Writes <RUN stem>.memory.nc:
  valuedyn probe run.nc --memory --memory-lags 32"""

    run: str = option(help="trajectory file of a run; its checkpoints are read from <RUN>.ckpt/", positional=True, metavar="RUN")
    out: str | None = option(None, "output file (default: <RUN stem>.probe.nc next to RUN; with --memory <RUN stem>.memory.nc)", metavar="PATH")
    probe_set: str | None = option(
        None, "reuse this probe set file instead of sampling one (default: sample one and write <RUN stem>.probeset.nc)", metavar="PATH"
    )
    force: bool = option(False, "replace existing output files instead of refusing")
    seed: int = option(0, "seed of the probe-set sampling and of the SGLD chains")
    num_probe_states: int = option(512, "states in the probe set")
    rollout_envs: int = option(16, "environments per rollout when sampling the probe set")
    rollout_steps: int = option(128, "steps per rollout when sampling the probe set")
    rollout_checkpoints: int = option(3, "checkpoints (evenly spaced, last included) rolled out besides the random policy")
    stratified_share: float = option(0.5, "share of the probe set split evenly over the strata (rare features and behaviour contexts)")
    threshold: float = option(0.1, "a behaviour is chosen in a state when its probability exceeds this (uniform policy: 1/17)")
    num_components: int = option(8, "principal components kept for the essential dynamics")
    llc: bool = option(True, "estimate local learning coefficients (--no-llc: skip them)")
    llc_steps: int = option(400, "SGLD steps per chain, burn-in included")
    llc_burnin: int = option(150, "SGLD steps discarded at the start of each chain")
    llc_chains: int = option(4, "independent SGLD chains per network and checkpoint")
    llc_step_size: float = option(1e-3, "SGLD step size for the policy (lower it if llc values come out NaN)")
    llc_value_step_size: float | None = option(None, "SGLD step size for the value network (default: --llc-step-size)")
    llc_gamma: float = option(10.0, "SGLD localisation strength gamma")
    llc_batch_size: int = option(256, "SGLD minibatch of probe states (capped at the probe set)")
    progress: bool = option(True, "show a progress bar over checkpoints on stderr")
    memory: bool = option(
        False, "measure environmental memory instead (recurrent runs: the GRU's hidden state; feed-forward: the last hidden "
        "layer, a control without memory) and write <RUN stem>.memory.nc; --seed then seeds its rollouts, folds and bootstrap"
    )
    memory_envs: int = option(MemorySettings.num_envs, "with --memory: environments per rollout of each checkpoint")
    memory_steps: int = option(MemorySettings.num_steps, "with --memory: steps per rollout of each checkpoint")
    memory_lags: int = option(MemorySettings.num_lags, "with --memory: decode each feature at lags 1..K steps back; the horizon is a count out of K")
    memory_folds: int = option(MemorySettings.num_folds, "with --memory: cross-validation folds of whole episodes (>= 3)")
    memory_bootstrap: int = option(MemorySettings.num_bootstrap, "with --memory: bootstrap resamples of episodes for the interval of the state's advantage")
    memory_components: int = option(
        MemorySettings.max_components, "with --memory: decoder inputs wider than this are projected on their leading principal components"
    )


def default_outputs(run: Path) -> tuple[Path, Path]:
    """``(<stem>.probe.nc, <stem>.probeset.nc)`` beside the trajectory file."""
    return run.with_name(run.stem + ".probe.nc"), run.with_name(run.stem + ".probeset.nc")


#: Options of the probe-set measures only, and of --memory only: the other mode refuses them.
PROBE_SET_FIELDS = (
    "probe_set", "num_probe_states", "rollout_envs", "rollout_steps", "rollout_checkpoints", "stratified_share", "threshold",
    "num_components", "llc", "llc_steps", "llc_burnin", "llc_chains", "llc_step_size", "llc_value_step_size", "llc_gamma",
    "llc_batch_size",
)
MEMORY_FIELDS = ("memory_envs", "memory_steps", "memory_lags", "memory_folds", "memory_bootstrap", "memory_components")


def memory_output(run: Path) -> Path:
    """``<stem>.memory.nc`` beside the trajectory file."""
    return run.with_name(run.stem + ".memory.nc")


def memory_settings(config: ProbeConfig) -> MemorySettings:
    return MemorySettings(
        num_envs=config.memory_envs, num_steps=config.memory_steps, num_lags=config.memory_lags, num_folds=config.memory_folds,
        num_bootstrap=config.memory_bootstrap, max_components=config.memory_components, seed=config.seed,
    )


def _refuse_other_mode(config: ProbeConfig) -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(ProbeConfig)}
    names, other = (PROBE_SET_FIELDS, "the probe-set measures") if config.memory else (MEMORY_FIELDS, "--memory")
    given = [name for name in names if getattr(config, name) != defaults[name]]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        fix = "drop them or drop --memory" if config.memory else "add --memory or drop them"
        raise ValuedynError(f"{flags} only apply to {other}; {fix}")


def validate_config(config: ProbeConfig) -> None:
    _refuse_other_mode(config)
    if config.memory:
        memory_settings(config).validate()
        return
    checks = [
        (config.num_probe_states >= 2, "--num-probe-states must be >= 2", config.num_probe_states),
        (config.rollout_envs >= 1, "--rollout-envs must be >= 1", config.rollout_envs),
        (config.rollout_steps >= 1, "--rollout-steps must be >= 1", config.rollout_steps),
        (config.rollout_checkpoints >= 0, "--rollout-checkpoints must be >= 0", config.rollout_checkpoints),
        (0.0 <= config.stratified_share <= 1.0, "--stratified-share must be in [0, 1]", config.stratified_share),
        (0.0 < config.threshold < 1.0, "--threshold must be in (0, 1)", config.threshold),
        (config.num_components >= 1, "--num-components must be >= 1", config.num_components),
        (config.llc_batch_size >= 1, "--llc-batch-size must be >= 1", config.llc_batch_size),
    ]
    for ok, rule, received in checks:
        if not ok:
            raise ValuedynError(f"{rule}, received {received}; pass a value in range")
    for settings in llc_settings(config):
        settings.validate(config.num_probe_states)


def llc_settings(config: ProbeConfig):
    from valuedyn.data._llc import SGLDSettings

    common = dict(num_steps=config.llc_steps, num_burnin=config.llc_burnin, num_chains=config.llc_chains,
                  gamma=config.llc_gamma, batch_size=config.llc_batch_size)
    value_step = config.llc_step_size if config.llc_value_step_size is None else config.llc_value_step_size
    return SGLDSettings(step_size=config.llc_step_size, **common), SGLDSettings(step_size=value_step, **common)


def _checked_inputs(config: ProbeConfig):
    """Everything that can be refused is refused here, before any work or writing."""
    from valuedyn._io import require_file
    from valuedyn.data._checkpoint import checkpoint_dir, list_checkpoints, refuse_run_outputs

    validate_config(config)
    run = require_file(config.run, "trajectory file")
    out, probe_set_out = default_outputs(run)
    if config.out is not None:
        out = Path(config.out)
    if config.probe_set is None:
        refuse_run_outputs([out, probe_set_out], config.force, inputs=[run])
    else:
        probe_set_out = None
        refuse_run_outputs([out], config.force, inputs=[run, config.probe_set])
    checkpoints = list_checkpoints(run)
    if not checkpoints:
        raise ValuedynError(
            f"run {run} has no checkpoints in {checkpoint_dir(run)}/; probe needs the checkpoints `valuedyn train` writes there"
        )
    if config.probe_set is None:
        candidates = config.rollout_envs * config.rollout_steps * (1 + min(config.rollout_checkpoints, len(checkpoints)))
        if config.num_probe_states > candidates:
            raise ValuedynError(
                f"--num-probe-states {config.num_probe_states} exceeds the {candidates} states the rollouts visit; "
                "raise --rollout-envs/--rollout-steps or lower --num-probe-states"
            )
    return run, out, probe_set_out, checkpoints


def _sample_probe_set(config, train_config, actor, checkpoints, rng):
    import jax

    from valuedyn._io import provenance
    from valuedyn.data._checkpoint import load_checkpoint
    from valuedyn.data._probe import RolloutStates, collect_rollout_states, probe_set_dataset

    count = min(config.rollout_checkpoints, len(checkpoints))
    chosen = sorted({int(round(i)) for i in np.linspace(len(checkpoints) - 1, 0, count)}) if count else []
    parts, names = [], []
    for k, which in enumerate(["random", *chosen]):
        key = jax.random.fold_in(rng, k)
        if which == "random":
            states = collect_rollout_states(key, config.rollout_envs, config.rollout_steps, train_config.env, actor, None)
            names.append("random")
        else:
            checkpoint = load_checkpoint(checkpoints[which])
            seed_index = k % train_config.seeds  # spread the rollouts over the run's seeds
            params = jax.tree.map(lambda x: x[seed_index], checkpoint.params["actor"])
            states = collect_rollout_states(key, config.rollout_envs, config.rollout_steps, train_config.env, actor, params)
            names.append(f"update_{checkpoint.update}_seed_{seed_index}")
        parts.append(states)
    candidates = RolloutStates(*(np.concatenate(field) for field in zip(*parts)))
    source = np.concatenate([np.full(len(p.timestep), i) for i, p in enumerate(parts)])
    attrs = {
        "env": train_config.env,
        "seed": int(config.seed),
        "rollout_envs": int(config.rollout_envs),
        "rollout_steps": int(config.rollout_steps),
        "config": config_to_json(config),
        **provenance(),
    }
    return probe_set_dataset(candidates, source, tuple(names), jax.random.fold_in(rng, 10_000), config.num_probe_states,
                             attrs, config.stratified_share)


def run_memory_probe(config: ProbeConfig) -> int:
    """``valuedyn probe RUN --memory``: :func:`valuedyn.data._memory.memory_probe`, written atomically."""
    from valuedyn._io import require_file, write_dataset_atomic
    from valuedyn.data._checkpoint import checkpoint_dir, list_checkpoints, refuse_run_outputs
    from valuedyn.data._memory import memory_probe
    from valuedyn.data._schema import open_trajectory

    validate_config(config)
    run = require_file(config.run, "trajectory file")
    out = memory_output(run) if config.out is None else Path(config.out)
    refuse_run_outputs([out], config.force, inputs=[run])
    if not list_checkpoints(run):
        raise ValuedynError(
            f"run {run} has no checkpoints in {checkpoint_dir(run)}/; probe needs the checkpoints `valuedyn train` writes there"
        )
    open_trajectory(run)  # refuse a file that is not a trajectory before any work
    dataset = memory_probe(run, memory_settings(config), progress=config.progress)
    dataset.attrs["config"] = config_to_json(config)
    write_dataset_atomic(dataset, out)
    horizon = dataset["memory_horizon"]
    summary = ", ".join(f"{name} {int(horizon.sel(feature=name).isel(checkpoint=-1).max())}" for name in dataset["feature"].values)
    print(
        f"valuedyn probe: wrote {out} ({dataset.sizes['checkpoint']} checkpoints x {dataset.sizes['seed']} seeds, "
        f"{dataset.attrs['seconds_per_checkpoint']:.1f} s per checkpoint); memory horizon at the last checkpoint "
        f"(largest over seeds, of {dataset.sizes['lag']} lags): {summary}",
        file=sys.stderr,
    )
    return 0


def run_probe(config: ProbeConfig) -> int:
    if config.memory:
        return run_memory_probe(config)
    start = time.time()
    run, out, probe_set_out, checkpoints = _checked_inputs(config)

    import jax
    import jax.numpy as jnp
    import xarray as xr
    from tqdm import tqdm

    from valuedyn._io import file_sha256, provenance, write_dataset_atomic
    from valuedyn.data._checkpoint import checkpoint_coords, load_checkpoint, same_run
    from valuedyn.data._llc import make_llc_estimator
    from valuedyn.data._networks import make_networks
    from valuedyn.data._probe import BEHAVIOURS, CLASSIC_ENV, behaviour_labels, cheap_compile_options, classic_action_names, context_size, essential_dynamics, open_probe_set
    from valuedyn.data._schema import open_trajectory

    open_trajectory(run)  # refuse a file that is not a trajectory before any work
    first = load_checkpoint(checkpoints[0])
    train_config = first.config
    if train_config.env != CLASSIC_ENV:
        raise ValuedynError(f"probe measures support {CLASSIC_ENV!r} only, the run used {train_config.env!r}")
    if train_config.recurrent:
        raise ValuedynError(
            "the probe-set measures (context size, essential dynamics, LLC) need a feed-forward policy; the run used --recurrent "
            "(a GRU's output depends on each state's history, which a probe set of single states lacks); "
            "pass --memory for the memory measures of a recurrent run"
        )
    actor, critic = make_networks(train_config)
    rng = jax.random.PRNGKey(config.seed)

    # PROBE SET
    if config.probe_set is not None:
        probe_set = open_probe_set(config.probe_set)
        if probe_set.attrs.get("env") != train_config.env:
            raise ValuedynError(f"probe set {config.probe_set} is for {probe_set.attrs.get('env')!r}, the run used {train_config.env!r}")
        if probe_set.sizes["probe_state"] != config.num_probe_states:
            config = dataclasses.replace(config, num_probe_states=int(probe_set.sizes["probe_state"]))
    else:
        probe_set = _sample_probe_set(config, train_config, actor, checkpoints, jax.random.fold_in(rng, 0))
    observation = jnp.asarray(probe_set["observation"].values)
    num_states = observation.shape[0]
    obs_dim = int(first.runner["obs"].shape[-1])
    if observation.shape[1] != obs_dim:
        raise ValuedynError(f"probe set observations have {observation.shape[1]} features, the run's have {obs_dim}; sample a new probe set")
    action_names = classic_action_names()
    labels, kinds, behaviour_action = behaviour_labels(action_names)
    context = np.concatenate(
        [np.ones((num_states, len(action_names)), bool), probe_set["context_flag"].values.astype(bool)], axis=1
    )
    behaviour_action = jnp.asarray(behaviour_action)

    # PER-CHECKPOINT PROGRAMS (compiled once; seeds vmapped)
    def outputs(params, obs):
        logits = actor.apply({"params": params["actor"]}, obs)
        return jax.nn.log_softmax(logits, axis=-1), critic.apply({"params": params["critic"]}, obs)

    def policy_loss(params, batch):
        log_probs = jax.nn.log_softmax(actor.apply({"params": params}, batch["obs"]), axis=-1)
        target = batch["target_log_probs"]
        return jnp.mean(jnp.sum(jnp.exp(target) * (target - log_probs), axis=-1))

    def value_loss(params, batch):
        return 0.5 * jnp.mean(jnp.square(critic.apply({"params": params}, batch["obs"]) - batch["target_value"]))

    seed_outputs = jax.jit(jax.vmap(outputs, in_axes=(0, None)))
    measure = jax.jit(jax.vmap(lambda lp: context_size(lp, context, behaviour_action, config.threshold)))
    policy_settings, value_settings = llc_settings(config)
    if config.llc:
        sgld_work = config.llc_steps * config.llc_chains * policy_settings.effective_batch_size(num_states) * len(checkpoints)
        options = cheap_compile_options(sgld_work <= 50_000)
        policy_llc = jax.jit(jax.vmap(make_llc_estimator(policy_loss, num_states, policy_settings)), compiler_options=options)
        value_llc = jax.jit(jax.vmap(make_llc_estimator(value_loss, num_states, value_settings)), compiler_options=options)

    num_seeds = train_config.seeds
    updates, env_steps, counts, fractions, mean_probs, entropies, log_prob_list = [], [], [], [], [], [], []
    llc_results = {"policy": [], "value": []}
    bar = tqdm(checkpoints, desc="probe", unit="ckpt", file=sys.stderr, disable=not config.progress)
    for index, path in enumerate(bar):
        checkpoint = first if index == 0 else load_checkpoint(path)
        if not same_run(checkpoint.config, train_config):
            raise ValuedynError(f"checkpoint {path} was written with another config than {checkpoints[0]}; one run per folder")
        params = jax.tree.map(jnp.asarray, checkpoint.params)
        log_probs, values = seed_outputs(params, observation)
        size = measure(log_probs)
        updates.append(checkpoint.update)
        env_steps.append(checkpoint.env_step)
        counts.append(np.asarray(size.count))
        fractions.append(np.asarray(size.fraction))
        mean_probs.append(np.asarray(size.mean_prob))
        entropies.append(np.asarray(-(jnp.exp(log_probs) * log_probs).sum(-1).mean(-1)))
        log_prob_list.append(np.asarray(log_probs))
        if config.llc:
            keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(rng, 1), index), 2 * num_seeds)
            obs = jnp.broadcast_to(observation, (num_seeds, *observation.shape))
            llc_results["policy"].append(jax.device_get(policy_llc(keys[:num_seeds], params["actor"], {"obs": obs, "target_log_probs": log_probs})))
            llc_results["value"].append(jax.device_get(value_llc(keys[num_seeds:], params["critic"], {"obs": obs, "target_value": values})))
        bar.set_postfix(update=checkpoint.update)
    bar.close()

    # ESSENTIAL DYNAMICS (seed, checkpoint jointly)
    stacked = jnp.asarray(np.stack(log_prob_list, axis=1))  # [seed, checkpoint, state, action]
    dynamics = essential_dynamics(stacked, config.num_components)
    loading = np.asarray(dynamics.components).reshape(-1, num_states, len(action_names))
    action_weight = np.square(loading).sum(axis=1)  # share of each PC's (unit) squared loading per action

    stack = lambda parts: np.stack(parts, axis=1)  # noqa: E731  [seed, checkpoint, ...]
    sb = ("seed", "checkpoint", "behaviour")
    data = {
        "context_count": (sb, stack(counts).astype(np.int32)),
        "context_fraction": (sb, stack(fractions).astype(np.float32)),
        "context_mean_prob": (sb, stack(mean_probs).astype(np.float32)),
        "context_states": (("behaviour",), context.sum(axis=0).astype(np.int32)),
        "policy_entropy": (("seed", "checkpoint"), stack(entropies).astype(np.float32)),
        "pc_coords": (("seed", "checkpoint", "pc"), np.asarray(dynamics.coords, np.float32)),
        "explained_variance": (("pc",), np.asarray(dynamics.explained_variance, np.float32)),
        "pc_action_weight": (("pc", "action"), action_weight.astype(np.float32)),
    }
    for net, results in llc_results.items():
        if not results:
            continue
        data[f"llc_{net}"] = (("seed", "checkpoint"), stack([r.llc for r in results]).astype(np.float32))
        data[f"llc_{net}_se"] = (("seed", "checkpoint"), stack([r.llc_se for r in results]).astype(np.float32))
        data[f"llc_{net}_chains"] = (("seed", "checkpoint", "chain"), stack([r.llc_chains for r in results]).astype(np.float32))
        data[f"llc_{net}_trace"] = (("seed", "checkpoint", "sgld_step"), stack([r.trace for r in results]).astype(np.float32))

    attrs = {
        "config": config_to_json(config),
        "train_config": config_to_json(train_config),
        "trajectory": str(run),
        "trajectory_sha256": file_sha256(run),
        "num_probe_states": int(num_states),
        "threshold": float(config.threshold),
        "behaviour_contexts": json.dumps({name: action for name, action in BEHAVIOURS}),
        "measures": (
            "context_count: probe states where the behaviour is possible and its action has probability > threshold; "
            "context_fraction = context_count / num_probe_states; context_mean_prob: mean over probe states of "
            "p(action) * [possible]; pc_coords: policy log-probs on the probe set projected on the principal components "
            "of all (seed, checkpoint) points; explained_variance: share of the total variance per component"
        ),
        **provenance(),
    }
    if config.llc:
        attrs.update(policy_settings.as_attrs(num_states, prefix="llc_policy_"))
        attrs.update(value_settings.as_attrs(num_states, prefix="llc_value_"))
        attrs["llc_policy_loss"] = "mean over probe states of KL(pi_checkpoint(.|s) || pi_w(.|s))"
        attrs["llc_value_loss"] = "mean over probe states of 0.5 * (V_w(s) - V_checkpoint(s))^2"
        attrs["llc_estimator"] = "n beta (E[L_m(w)] - L_m(w*)) over SGLD draws after burn-in, localised and tempered (beta = 1/log n)"

    if probe_set_out is not None:
        write_dataset_atomic(probe_set, probe_set_out)
        attrs["probe_set"] = str(probe_set_out)
        attrs["probe_set_sha256"] = file_sha256(probe_set_out)
    else:
        attrs["probe_set"] = str(config.probe_set)
        attrs["probe_set_sha256"] = file_sha256(config.probe_set)
    attrs["wall_time_s"] = float(time.time() - start)

    dataset = xr.Dataset(
        data,
        coords={
            **checkpoint_coords(num_seeds, updates, env_steps),
            "behaviour": list(labels),
            "behaviour_kind": ("behaviour", list(kinds)),
            "behaviour_action": ("behaviour", np.asarray(behaviour_action, np.int32)),
            "pc": np.arange(dynamics.coords.shape[-1]),
            "action": list(action_names),
        },
        attrs=attrs,
    )
    write_dataset_atomic(dataset, out)
    for net in llc_results:
        if f"llc_{net}" in data and not np.all(np.isfinite(data[f"llc_{net}"][1])):
            print(f"valuedyn probe: warning: some llc_{net} estimates are NaN or infinite (SGLD diverged); "
                  "rerun with a smaller --llc-step-size" + (" or --llc-value-step-size" if net == "value" else ""), file=sys.stderr)
    print(f"valuedyn probe: wrote {out} ({len(checkpoints)} checkpoints x {num_seeds} seeds, {num_states} probe states)", file=sys.stderr)
    return 0
