"""PPO on Craftax in the PureJaxRL style, with per-update behavioural recording.

``make_train(config)`` returns a :class:`TrainProgram` whose pure functions are
vmapped over seeds (leading axis ``seed`` on every leaf):

    init(seed_keys [S, 2])                 -> runner          (a pytree, see below)
    chunk(runner, num_updates: static int) -> (runner, metrics [S, num_updates, ...])

``chunk`` is ``num_updates`` PPO updates inside one ``lax.scan``; the long-run loop in
:mod:`valuedyn.data._train_cli` calls jitted chunks from Python.

One update = ``num_steps`` steps of ``num_envs`` environments (per seed), then
``update_epochs`` epochs of ``num_minibatches`` minibatches of PPO. Environments are
stepped with ``env.step_env`` (no automatic reset) so that the terminal state of an
episode is seen before the reset: events are counted on every transition with the
event spec of :mod:`valuedyn.data._events`, summed per episode, and added to the update's
accumulators when the episode finishes. Resets are optimistic (see ``_envs``).

The reward is computed here from the transition (an experimental knob, see
:class:`RewardSpec`); with the defaults it equals Craftax's own reward exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from valuedyn._errors import ValuedynError
from valuedyn.data._envs import make_env, num_resets, optimistic_reset
from valuedyn.data._networks import init_hidden, make_networks
from valuedyn.data._schema import METRIC_TRAILING_DIMS

def strong_types(tree):
    """Drop JAX's weak types (Craftax states hold weakly typed scalars): a runner restored
    from a checkpoint (numpy, strongly typed) then has exactly the avals of a fresh one, so
    the compiled chunk is reused instead of recompiled."""
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype) if getattr(x, "weak_type", False) else x, tree)


def event_spec_for(env_name: str):
    """The event spec of :mod:`valuedyn.data._events` for ``env_name``."""
    from valuedyn.data._events import event_spec

    return event_spec(env_name)


# ---------------------------------------------------------------------------
# REWARD (an experimental knob)
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """How a transition is rewarded.

    ``first_weights[a]``: paid once per episode when achievement ``a`` is first unlocked
    (0 for the achievements paid per occurrence instead). ``every_events``: indices into
    the event list whose every occurrence pays ``every_weights`` (the weight of the
    event's achievement). ``health``: add 0.1 x the change of health (Craftax's term).
    """

    first_weights: tuple[float, ...]
    every_events: tuple[int, ...]
    every_weights: tuple[float, ...]
    health: bool


def default_achievement_weights(env_name: str, num_achievements: int) -> np.ndarray:
    """Craftax's own per-achievement reward: 1 in Classic, 1/3/5/8 by tier in Craftax."""
    if env_name == "Craftax-Symbolic-v1":
        from craftax.craftax.constants import ACHIEVEMENT_REWARD_MAP

        weights = np.asarray(ACHIEVEMENT_REWARD_MAP, dtype=np.float32)
        if weights.shape != (num_achievements,):
            raise ValuedynError(f"Craftax reward map has {weights.shape} entries, event spec has {num_achievements} achievements")
        return weights
    return np.ones(num_achievements, np.float32)


def parse_reward_spec(config, spec) -> RewardSpec:
    """Build the :class:`RewardSpec` from ``--reward-weights`` / ``--reward-every`` / ``--health-reward``."""
    achievements = list(spec.achievements)
    weights = default_achievement_weights(config.env, len(achievements))
    for item in config.reward_weights:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValuedynError(f"--reward-weights takes NAME=WEIGHT items, received {item!r}; e.g. --reward-weights place_plant=2")
        if name not in achievements:
            raise ValuedynError(
                f"--reward-weights: unknown achievement {name!r} for {config.env}; known: {', '.join(achievements)}"
            )
        try:
            weights[achievements.index(name)] = float(value)
        except ValueError:
            raise ValuedynError(f"--reward-weights: weight of {name!r} must be a number, received {value!r}") from None
    first = weights.copy()
    every_events, every_weights = [], []
    for event in config.reward_every:
        if event not in spec.events:
            raise ValuedynError(f"--reward-every: unknown event {event!r} for {config.env}; known: {', '.join(spec.events)}")
        achievement = spec.event_achievement.get(event)
        if achievement is None:
            raise ValuedynError(
                f"--reward-every: event {event!r} has no matching achievement, so it has no reward weight; "
                f"choose one of {', '.join(e for e in spec.events if e in spec.event_achievement)}"
            )
        index = achievements.index(achievement)
        every_events.append(spec.events.index(event))
        every_weights.append(float(weights[index]))
        first[index] = 0.0  # the first unlock is one of the occurrences: not paid twice
    return RewardSpec(tuple(float(w) for w in first), tuple(every_events), tuple(every_weights), bool(config.health_reward))


def transition_reward(reward_spec: RewardSpec, prev_state, next_state, event_counts):
    """Reward of one transition (one env, unbatched); Craftax's formula when defaults are used."""
    delta = next_state.achievements.astype(jnp.float32) - prev_state.achievements.astype(jnp.float32)
    reward = (delta * jnp.asarray(reward_spec.first_weights, jnp.float32)).sum()
    if reward_spec.every_events:
        occurrences = event_counts[jnp.asarray(reward_spec.every_events)].astype(jnp.float32)
        reward = reward + (occurrences * jnp.asarray(reward_spec.every_weights, jnp.float32)).sum()
    if reward_spec.health:
        reward = reward + (next_state.player_health - prev_state.player_health) * 0.1
    return reward.astype(jnp.float32)


# ---------------------------------------------------------------------------
# THE PROGRAM
# ---------------------------------------------------------------------------


class Transition(NamedTuple):
    obs: jax.Array
    reset: jax.Array  # this step is the first of an episode (recurrent hidden reset)
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """Pure functions of one training configuration (vmapped over seeds, not jitted)."""

    config: Any
    spec: Any
    reward_spec: RewardSpec
    num_updates: int
    steps_per_update: int
    init: Any
    chunk: Any
    names: dict


def make_train(config, *, record: bool = True) -> TrainProgram:
    """Build the training functions for ``config`` (a :class:`TrainConfig`).

    ``record=False`` skips the behavioural recording (event counts, accumulators); it
    exists only to measure what recording costs (benchmarks/bench_train.py). The reward
    still needs the event counts when ``--reward-every`` is used.
    """
    env, env_params = make_env(config.env)
    spec = event_spec_for(config.env)
    reward_spec = parse_reward_spec(config, spec)
    actor, critic = make_networks(config)

    num_envs, num_steps = config.num_envs, config.num_steps
    steps_per_update = num_envs * num_steps
    num_updates = config.total_steps // steps_per_update
    minibatch_envs = num_envs // config.num_minibatches
    minibatch_size = steps_per_update // config.num_minibatches
    resets = num_resets(num_envs, config.reset_ratio)
    num_actions = env.num_actions
    num_events = len(spec.events)
    placement_index = jnp.asarray([spec.events.index(e) for e in spec.placement_events], jnp.int32)
    bins = config.placement_bins
    need_counts = record or bool(reward_spec.every_events)
    recurrent = config.recurrent
    obs_dim = env.observation_space(env_params).shape[0]

    def lr_schedule(count):
        # linear annealing over the whole run, in optimizer steps (count lives in the
        # optimizer state, so a resumed run continues the same schedule)
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / num_updates
        return config.lr * frac if config.anneal_lr else config.lr

    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(learning_rate=lr_schedule, eps=config.adam_eps),
    )

    # -- network calls over one step [num_envs] or a sequence [time, batch] --------
    def policy_step(params, hidden, obs, reset):
        if recurrent:
            h_actor, h_critic = hidden
            h_actor, logits = actor.apply({"params": params["actor"]}, h_actor, obs[None], reset[None])
            h_critic, value = critic.apply({"params": params["critic"]}, h_critic, obs[None], reset[None])
            return (h_actor, h_critic), logits[0], value[0]
        return hidden, actor.apply({"params": params["actor"]}, obs), critic.apply({"params": params["critic"]}, obs)

    def policy_sequence(params, hidden, obs, reset):
        if recurrent:
            h_actor, h_critic = hidden
            _, logits = actor.apply({"params": params["actor"]}, h_actor, obs, reset)
            _, value = critic.apply({"params": params["critic"]}, h_critic, obs, reset)
            return logits, value
        return actor.apply({"params": params["actor"]}, obs), critic.apply({"params": params["critic"]}, obs)

    # ---------------------------------------------------------------------------
    # INIT
    # ---------------------------------------------------------------------------
    def init(rng):
        rng, k_actor, k_critic, k_env = jax.random.split(rng, 4)
        dummy_obs = jnp.zeros((1, obs_dim), jnp.float32)
        if recurrent:
            h0 = init_hidden(config, 1)
            dummy_reset = jnp.zeros((1, 1), bool)
            params = {
                "actor": actor.init(k_actor, h0, dummy_obs[None], dummy_reset)["params"],
                "critic": critic.init(k_critic, h0, dummy_obs[None], dummy_reset)["params"],
            }
        else:
            params = {"actor": actor.init(k_actor, dummy_obs)["params"], "critic": critic.init(k_critic, dummy_obs)["params"]}
        obs, env_state = jax.vmap(env.reset_env, in_axes=(0, None))(jax.random.split(k_env, num_envs), env_params)
        runner = {
            "params": params,
            "opt_state": optimizer.init(params),
            "env_state": env_state,
            "obs": obs,
            "reset": jnp.ones((num_envs,), bool),
            "episode": {
                "events": jnp.zeros((num_envs, num_events), jnp.int32),
                "return": jnp.zeros((num_envs,), jnp.float32),
                "length": jnp.zeros((num_envs,), jnp.int32),
            },
            "rng": rng,
            "update": jnp.zeros((), jnp.int32),
        }
        if recurrent:
            runner["hidden"] = (init_hidden(config, num_envs), init_hidden(config, num_envs))
        return strong_types(runner)

    def empty_accumulators():
        return {
            "episodes_finished": jnp.zeros((), jnp.int32),
            "achievement_unlocks": jnp.zeros((len(spec.achievements),), jnp.int32),
            "event_total": jnp.zeros((num_events,), jnp.int32),
            "return_sum": jnp.zeros((), jnp.float32),
            "length_sum": jnp.zeros((), jnp.int32),
            "placement_histogram": jnp.zeros((len(spec.placement_events), bins), jnp.int32),
        }

    def update_step(runner, _):
        # ---------------------------------------------------------------------------
        # COLLECT TRAJECTORIES
        # ---------------------------------------------------------------------------
        def env_step(carry, _):
            runner, acc = carry
            rng, k_action, k_step, k_reset = jax.random.split(runner["rng"], 4)
            params, env_state, obs = runner["params"], runner["env_state"], runner["obs"]
            hidden, logits, value = policy_step(params, runner.get("hidden"), obs, runner["reset"])
            action = jax.random.categorical(k_action, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]

            step_keys = jax.random.split(k_step, num_envs)
            next_obs, next_state, _, done, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
                step_keys, env_state, action, env_params
            )
            if need_counts:
                counts = jax.vmap(spec.count)(env_state, action, next_state).astype(jnp.int32)
            else:
                counts = jnp.zeros((num_envs, num_events), jnp.int32)
            reward = jax.vmap(functools.partial(transition_reward, reward_spec))(env_state, next_state, counts)

            # RECORD: per-episode running sums, added to the update's totals at the end
            # of an episode (the terminal state is next_state, before the reset)
            episode = runner["episode"]
            ep_return = episode["return"] + reward
            ep_length = episode["length"] + 1
            if record:
                ep_events = episode["events"] + counts
                done_i = done.astype(jnp.int32)
                placed = ep_events[:, placement_index]  # [envs, placements]
                histogram = jax.nn.one_hot(jnp.minimum(placed, bins - 1), bins, dtype=jnp.int32)
                acc = {
                    "episodes_finished": acc["episodes_finished"] + done_i.sum(),
                    "achievement_unlocks": acc["achievement_unlocks"]
                    + (next_state.achievements & done[:, None]).astype(jnp.int32).sum(0),
                    "event_total": acc["event_total"] + (ep_events * done_i[:, None]).sum(0),
                    "return_sum": acc["return_sum"] + jnp.where(done, ep_return, 0.0).sum(),
                    "length_sum": acc["length_sum"] + (ep_length * done_i).sum(),
                    "placement_histogram": acc["placement_histogram"] + (histogram * done_i[:, None, None]).sum(0),
                }
                ep_events = jnp.where(done[:, None], 0, ep_events)
            else:
                ep_events = episode["events"]
            episode = {
                "events": ep_events,
                "return": jnp.where(done, 0.0, ep_return),
                "length": jnp.where(done, 0, ep_length),
            }

            next_obs, next_state = optimistic_reset(k_reset, env, env_params, done, next_obs, next_state, resets)
            next_state = strong_types(next_state)
            transition = Transition(obs, runner["reset"], action, log_prob, value, reward, done)
            runner = {**runner, "env_state": next_state, "obs": next_obs, "reset": done, "episode": episode, "rng": rng}
            if recurrent:
                runner["hidden"] = hidden
            return (runner, acc), transition

        start_hidden = runner.get("hidden")
        (runner, acc), traj = jax.lax.scan(env_step, (runner, empty_accumulators()), None, num_steps)
        action_count = jax.nn.one_hot(traj.action, num_actions, dtype=jnp.int32).sum((0, 1))

        # ---------------------------------------------------------------------------
        # CALCULATE ADVANTAGE
        # ---------------------------------------------------------------------------
        _, _, last_value = policy_step(runner["params"], runner.get("hidden"), runner["obs"], runner["reset"])

        def gae_step(carry, transition):
            gae, next_value = carry
            nonterminal = 1.0 - transition.done.astype(jnp.float32)
            delta = transition.reward + config.gamma * next_value * nonterminal - transition.value
            gae = delta + config.gamma * config.gae_lambda * nonterminal * gae
            return (gae, transition.value), gae

        _, advantages = jax.lax.scan(
            gae_step, (jnp.zeros_like(last_value), last_value), traj, reverse=True, unroll=16
        )
        targets = advantages + traj.value

        # ---------------------------------------------------------------------------
        # UPDATE NETWORK
        # ---------------------------------------------------------------------------
        def loss_fn(params, hidden, batch, advantages, targets):
            logits, value = policy_sequence(params, hidden, batch.obs, batch.reset)
            log_probs_all = jax.nn.log_softmax(logits)
            log_prob = jnp.take_along_axis(log_probs_all, batch.action[..., None], axis=-1)[..., 0]
            value_clipped = batch.value + jnp.clip(value - batch.value, -config.clip_eps, config.clip_eps)
            value_loss = 0.5 * jnp.maximum(jnp.square(value - targets), jnp.square(value_clipped - targets)).mean()
            log_ratio = log_prob - batch.log_prob
            ratio = jnp.exp(log_ratio)
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            policy_loss = -jnp.minimum(
                ratio * advantages, jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps) * advantages
            ).mean()
            entropy = -(jnp.exp(log_probs_all) * log_probs_all).sum(-1).mean()
            total = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
            approx_kl = ((ratio - 1.0) - log_ratio).mean()
            clip_fraction = (jnp.abs(ratio - 1.0) > config.clip_eps).mean()
            return total, jnp.stack([policy_loss, value_loss, entropy, approx_kl, clip_fraction])

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def epoch(carry, _):
            params, opt_state, rng = carry
            rng, k_perm = jax.random.split(rng)
            if recurrent:
                # minibatches of whole environments: the GRU re-runs each sequence
                perm = jax.random.permutation(k_perm, num_envs)

                def split_envs(x):
                    x = jnp.take(x, perm, axis=1)
                    return jnp.swapaxes(x.reshape((num_steps, config.num_minibatches, minibatch_envs) + x.shape[2:]), 0, 1)

                batches = jax.tree.map(split_envs, (traj, advantages, targets))
                hiddens = jax.tree.map(
                    lambda h: jnp.take(h, perm, axis=0).reshape((config.num_minibatches, minibatch_envs) + h.shape[1:]),
                    start_hidden,
                )
            else:
                perm = jax.random.permutation(k_perm, steps_per_update)

                def split_flat(x):
                    x = x.reshape((steps_per_update,) + x.shape[2:])
                    return jnp.take(x, perm, axis=0).reshape((config.num_minibatches, minibatch_size) + x.shape[1:])

                batches = jax.tree.map(split_flat, (traj, advantages, targets))
                hiddens = jnp.zeros((config.num_minibatches,), jnp.int32)  # unused

            def minibatch(carry, inputs):
                params, opt_state = carry
                hidden, (batch, adv, tgt) = inputs
                (_, stats), grads = grad_fn(params, hidden if recurrent else None, batch, adv, tgt)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), stats

            (params, opt_state), stats = jax.lax.scan(minibatch, (params, opt_state), (hiddens, batches))
            return (params, opt_state, rng), stats

        rng, k_update = jax.random.split(runner["rng"])
        (params, opt_state, _), stats = jax.lax.scan(
            epoch, (runner["params"], runner["opt_state"], k_update), None, config.update_epochs
        )
        stats = stats.mean((0, 1))
        runner = {**runner, "params": params, "opt_state": opt_state, "rng": rng, "update": runner["update"] + 1}
        metrics = {
            **acc,
            "action_count": action_count,
            "policy_loss": stats[0],
            "value_loss": stats[1],
            "entropy": stats[2],
            "approx_kl": stats[3],
            "clip_fraction": stats[4],
        }
        return runner, {name: metrics[name] for name in METRIC_TRAILING_DIMS}  # the contract's variables, in its order

    def chunk(runner, num_updates_in_chunk: int):
        return jax.lax.scan(update_step, runner, None, num_updates_in_chunk)

    names = {
        "achievement": tuple(spec.achievements),
        "event": tuple(spec.events),
        "action": tuple(spec.actions),
        "placement": tuple(spec.placement_events),
    }
    return TrainProgram(
        config=config,
        spec=spec,
        reward_spec=reward_spec,
        num_updates=num_updates,
        steps_per_update=steps_per_update,
        init=jax.vmap(init),
        chunk=lambda runner, n: jax.vmap(functools.partial(chunk, num_updates_in_chunk=n))(runner),
        names=names,
    )


def seed_keys(config) -> jax.Array:
    """One PRNG key per seed, ``fold_in(PRNGKey(seed), i)``: seed i does not depend on --seeds."""
    base = jax.random.PRNGKey(config.seed)
    return jnp.stack([jax.random.fold_in(base, i) for i in range(config.seeds)])
