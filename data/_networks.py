"""Actor and critic networks (flax.linen), as in Craftax's PPO baseline.

Feed-forward (default): separate actor and critic MLPs, each ``num_layers`` dense
layers of ``layer_size`` units with tanh, orthogonal initialisation (gain sqrt(2) for
hidden layers, 0.01 for the policy logits, 1.0 for the value), zero biases.

The orthogonal matrices come from :func:`orthogonal`, which equals
``jax.nn.initializers.orthogonal`` but never makes a *batched* LAPACK call: the seeds'
parameters are initialised inside one program vmapped over seeds, and a batched QR
there deadlocks XLA's CPU backend. Since jax 0.10 a batched LAPACK call on the CPU
splits its batch over the intra-op thread pool it runs on; when every pool thread is
inside such a call (the actor's and the critic's QRs run concurrently), each waits for
sub-tasks that no free thread is left to run, and training waits forever at 0 % CPU.
A single matrix is factorised inline on the calling thread, so under ``vmap`` the
matrices are factorised one after the other.

    actor.apply({"params": p}, obs)  -> logits [..., num_actions]
    critic.apply({"params": p}, obs) -> value  [...]

Recurrent (``--recurrent``): actor and critic each get their own GRU core (hidden size
``gru_hidden``) between a dense embedding and the MLP head; the hidden state is reset
to zeros where ``reset`` is true (the first step of an episode):

    actor.apply({"params": p}, hidden, obs, reset)  -> (hidden', logits)
    critic.apply({"params": p}, hidden, obs, reset) -> (hidden', value)

with ``hidden [batch, gru_hidden]`` and ``obs [time, batch, obs_dim]``,
``reset [time, batch]`` (a scan over time inside the module).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant


@jax.custom_batching.custom_vmap
def orthonormal_columns(matrix: jax.Array) -> jax.Array:
    """Q of the QR factorisation ``matrix = Q R`` with ``sign(diag(R))`` folded into Q
    (the unique Q with ``diag(R) > 0``), exactly as ``jax.random.orthogonal`` computes it.

    ``matrix [rows, cols]`` with ``rows >= cols`` -> ``Q [rows, cols]`` (orthonormal columns).
    Under ``vmap`` the matrices are factorised one after the other (``lax.map``), so every
    LAPACK call in the compiled program sees a single matrix (see the module docstring).
    """
    q, r = jnp.linalg.qr(matrix)
    return q * jnp.expand_dims(jnp.sign(jnp.diagonal(r)), -2)


@orthonormal_columns.def_vmap
def _orthonormal_columns_vmap(axis_size, in_batched, matrices):
    (batched,) = in_batched
    if not batched:
        return orthonormal_columns(matrices), False
    return jax.lax.map(orthonormal_columns, matrices), True


def orthogonal(scale: float = 1.0):
    """Orthogonal initialiser (flax signature ``init(key, shape, dtype)``): the values of
    ``jax.nn.initializers.orthogonal(scale)`` (columns along the last axis), without a
    batched LAPACK call when vmapped.

    ``shape [..., out]``: the matrix ``[prod(shape[:-1]), out]`` has orthonormal columns
    if it is tall, orthonormal rows if it is wide, times ``scale``.
    """

    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initialiser needs a shape of at least 2 dimensions, received {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        draws = jax.random.normal(key, (max(rows, cols), min(rows, cols)), dtype)
        q = orthonormal_columns(draws)
        if rows < cols:
            q = q.T
        return (jnp.asarray(scale, dtype) * q).reshape(shape)

    return init


class MLPHead(nn.Module):
    """``num_layers`` x Dense(layer_size)+tanh, then Dense(out) (out=1 is squeezed)."""

    layer_size: int
    num_layers: int
    out: int
    out_gain: float

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.Dense(self.layer_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x)
            x = nn.tanh(x)
        x = nn.Dense(self.out, kernel_init=orthogonal(self.out_gain), bias_init=constant(0.0))(x)
        return jnp.squeeze(x, -1) if self.out == 1 else x


class Actor(nn.Module):
    num_actions: int
    layer_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs):
        return MLPHead(self.layer_size, self.num_layers, self.num_actions, 0.01)(obs)


class Critic(nn.Module):
    layer_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs):
        return MLPHead(self.layer_size, self.num_layers, 1, 1.0)(obs)


class _GRUStep(nn.Module):
    """One GRU step whose carry is zeroed where ``reset`` is true (episode start)."""

    hidden_size: int

    @nn.compact
    def __call__(self, carry, inputs):
        x, reset = inputs
        carry = jnp.where(reset[:, None], jnp.zeros_like(carry), carry)
        carry, y = nn.GRUCell(self.hidden_size, recurrent_kernel_init=orthogonal())(carry, x)
        return carry, y


#: The GRU step scanned over the leading (time) axis, parameters shared across time.
ScanGRU = nn.scan(_GRUStep, variable_broadcast="params", split_rngs={"params": False}, in_axes=0, out_axes=0)


class RecurrentHead(nn.Module):
    hidden_size: int
    layer_size: int
    num_layers: int
    out: int
    out_gain: float

    @nn.compact
    def __call__(self, hidden, obs, reset):
        x = nn.Dense(self.layer_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(obs)
        x = nn.tanh(x)
        hidden, x = ScanGRU(self.hidden_size)(hidden, (x, reset))
        return hidden, MLPHead(self.layer_size, self.num_layers - 1, self.out, self.out_gain)(x)


class RecurrentActor(nn.Module):
    num_actions: int
    hidden_size: int = 256
    layer_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, hidden, obs, reset):
        return RecurrentHead(self.hidden_size, self.layer_size, self.num_layers, self.num_actions, 0.01)(hidden, obs, reset)


class RecurrentCritic(nn.Module):
    hidden_size: int = 256
    layer_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, hidden, obs, reset):
        return RecurrentHead(self.hidden_size, self.layer_size, self.num_layers, 1, 1.0)(hidden, obs, reset)


def make_networks(config):
    """``(actor_module, critic_module)`` for a :class:`TrainConfig` (see module docstring)."""
    from valuedyn.data._envs import make_env

    env, _ = make_env(config.env)
    num_actions = env.num_actions
    if config.recurrent:
        return (
            RecurrentActor(num_actions, config.gru_hidden, config.layer_size, config.num_layers),
            RecurrentCritic(config.gru_hidden, config.layer_size, config.num_layers),
        )
    return Actor(num_actions, config.layer_size, config.num_layers), Critic(config.layer_size, config.num_layers)


def init_hidden(config, batch: int):
    """Zero GRU state ``[batch, gru_hidden]`` (float32)."""
    return jnp.zeros((batch, config.gru_hidden), jnp.float32)
