"""Actor and critic networks (flax.linen), as in Craftax's PPO baseline.

Feed-forward (default): separate actor and critic MLPs, each ``num_layers`` dense
layers of ``layer_size`` units with tanh, orthogonal initialisation (gain sqrt(2) for
hidden layers, 0.01 for the policy logits, 1.0 for the value), zero biases.

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

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal


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
        carry, y = nn.GRUCell(self.hidden_size)(carry, x)
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
