"""Craftax environments by name, and optimistic resets.

The trainer steps environments itself with ``env.step_env`` (no automatic reset), so
that it can look at the terminal state of an episode (for recording) before the
environment is reset. Resets are *optimistic* (the idea of Craftax's
``OptimisticResetVecEnvWrapper``): generating a world is far more expensive than a
step, so each step generates only ``num_envs // reset_ratio`` fresh worlds and hands
them to the environments that finished; if more environments finish in one step than
worlds were generated, some of them start from the same world (their step keys differ,
so they diverge at once).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from valuedyn._errors import ValuedynError

#: The environments the trainer supports (symbolic observations only).
ENV_NAMES: tuple[str, ...] = ("Craftax-Classic-Symbolic-v1", "Craftax-Symbolic-v1")

#: Craftax's PPO baseline resets at most one world per 16 environments per step.
DEFAULT_RESET_RATIO = 16


def check_env_name(env_name: str) -> str:
    if env_name not in ENV_NAMES:
        raise ValuedynError(
            f"unknown environment {env_name!r}; known environments: {', '.join(ENV_NAMES)}; pass one of them to --env"
        )
    return env_name


def make_env(env_name: str):
    """``(env, env_params)`` for a known environment name, without automatic resets.

    Unknown names raise :class:`ValuedynError` listing the known ones.
    """
    check_env_name(env_name)
    if env_name == "Craftax-Classic-Symbolic-v1":
        from craftax.craftax_classic.envs.craftax_symbolic_env import CraftaxClassicSymbolicEnvNoAutoReset

        env = CraftaxClassicSymbolicEnvNoAutoReset()
    else:
        from craftax.craftax.envs.craftax_symbolic_env import CraftaxSymbolicEnvNoAutoReset

        env = CraftaxSymbolicEnvNoAutoReset()
    return env, env.default_params


def num_resets(num_envs: int, reset_ratio: int = DEFAULT_RESET_RATIO) -> int:
    """Fresh worlds generated per step for ``num_envs`` environments (at least one)."""
    return max(1, num_envs // max(1, reset_ratio))


def optimistic_reset(rng, env, env_params, done, obs, state, resets: int):
    """Replace the finished environments' ``(obs, state)`` by freshly generated ones.

    ``done``: bool[num_envs]; ``obs``/``state``: batched over num_envs. Only ``resets``
    worlds are generated; the k-th finished environment (in index order) receives world
    ``k mod resets``. Unfinished environments keep their obs and state.
    """
    keys = jax.random.split(rng, resets)
    obs_reset, state_reset = jax.vmap(env.reset_env, in_axes=(0, None))(keys, env_params)
    rank = jnp.cumsum(done.astype(jnp.int32)) - 1
    source = jnp.where(done, rank % resets, 0)

    def pick(fresh, current):
        chosen = fresh[source]
        mask = done.reshape(done.shape + (1,) * (current.ndim - 1))
        return jnp.where(mask, chosen, current)

    return pick(obs_reset, obs), jax.tree.map(pick, state_reset, state)
