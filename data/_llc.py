"""Local learning coefficient (LLC) by stochastic-gradient Langevin dynamics (SGLD).

The LLC ``lambda(w*)`` of a loss ``L_n`` at a parameter ``w*`` measures the local
degeneracy of the loss landscape: a regular model with ``d`` parameters has
``lambda = d / 2``, a singular one less. Estimator (Lau et al. 2023, "Quantifying
degeneracy in singular models via the learning coefficient"):

    llc_hat = n * beta * (E_w[L_n(w)] - L_n(w*))

where the expectation is over the *localised, tempered* posterior

    p(w) ~ exp(-n * beta * L_n(w) - gamma / 2 * ||w - w*||^2),   beta = 1 / log n,

sampled with SGLD on minibatches of size ``m``:

    w <- w - eps / 2 * (n * beta * grad L_m(w) + gamma * (w - w*)) + N(0, eps).

Two choices reduce variance without changing the target:

- each step's loss difference ``L_m(w_t) - L_m(w*)`` is taken on the *same* minibatch
  (paired), so minibatch noise in ``L_m(w*)`` cancels;
- the draws after ``num_burnin`` steps are averaged per chain; chains are independent,
  so the standard error is ``std(chain estimates) / sqrt(num_chains)``.

The gradient step is an optax ``GradientTransformation`` (:func:`sgld`), so it composes
with other optax transforms (clipping, preconditioning) if a caller needs them.

Assumptions the user must keep: ``loss_fn`` is a *per-sample mean* loss (an average
negative log-likelihood up to scale and constant), ``w*`` is a (local) minimum of it, and
``gamma`` is small next to ``n * beta`` times the loss curvature (otherwise the
localisation, not the loss, confines the chain and ``llc_hat`` is biased low, by the
factor ``n beta h / (n beta h + gamma)`` for curvature ``h``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from valuedyn._errors import ValuedynError

PyTree = Any


@dataclasses.dataclass(frozen=True)
class SGLDSettings:
    """Hyperparameters of the LLC estimator (all stored in output attributes).

    step_size: SGLD step ``eps``. num_steps: SGLD steps per chain, burn-in included.
    num_burnin: leading steps discarded. num_chains: independent chains (vmapped).
    gamma: localisation strength. batch_size: minibatch size ``m`` (``None``: full batch).
    beta: inverse temperature (``None``: ``1 / log n``, the WBIC temperature).
    """

    step_size: float = 1e-4
    num_steps: int = 200
    num_burnin: int = 50
    num_chains: int = 4
    gamma: float = 1.0
    batch_size: int | None = None
    beta: float | None = None

    def validate(self, n: int) -> None:
        if n < 2:
            raise ValuedynError(f"the LLC needs at least 2 data points, received n={n}; use a larger probe set")
        if not self.step_size > 0:
            raise ValuedynError(f"SGLD step size must be > 0, received {self.step_size}; pass e.g. 1e-4")
        if self.num_chains < 1:
            raise ValuedynError(f"the LLC needs at least one chain, received {self.num_chains}")
        if not 0 <= self.num_burnin < self.num_steps:
            raise ValuedynError(
                f"burn-in must be in [0, num_steps), received burn-in {self.num_burnin} with {self.num_steps} steps; "
                "lower the burn-in or raise the step count"
            )
        if self.gamma < 0:
            raise ValuedynError(f"localisation gamma must be >= 0, received {self.gamma}")
        if self.batch_size is not None and not 1 <= self.batch_size:
            raise ValuedynError(f"SGLD batch size must be >= 1, received {self.batch_size}")
        if self.beta is not None and not self.beta > 0:
            raise ValuedynError(f"inverse temperature beta must be > 0, received {self.beta}")

    def effective_beta(self, n: int) -> float:
        return self.beta if self.beta is not None else 1.0 / math.log(n)

    def effective_batch_size(self, n: int) -> int:
        return n if self.batch_size is None else min(self.batch_size, n)

    def as_attrs(self, n: int, prefix: str = "llc_") -> dict[str, float | int]:
        """Attributes for a netCDF file: every setting, with ``beta`` and batch size resolved."""
        return {
            f"{prefix}step_size": float(self.step_size),
            f"{prefix}num_steps": int(self.num_steps),
            f"{prefix}num_burnin": int(self.num_burnin),
            f"{prefix}num_chains": int(self.num_chains),
            f"{prefix}gamma": float(self.gamma),
            f"{prefix}batch_size": int(self.effective_batch_size(n)),
            f"{prefix}beta": float(self.effective_beta(n)),
            f"{prefix}n": int(n),
        }


class SGLDState(NamedTuple):
    rng: jax.Array


def sgld(step_size: float, rng: jax.Array) -> optax.GradientTransformation:
    """SGLD as an optax transform: ``updates = -eps / 2 * g + sqrt(eps) * xi``, xi ~ N(0, I).

    ``g`` must be the gradient of the potential (negative log density), here
    ``n beta grad L_m(w) + gamma (w - w*)``. The noise key lives in the optimiser state.
    """

    def init_fn(params):
        del params
        return SGLDState(rng=rng)

    def update_fn(grads, state, params=None):
        del params
        rng, key = jax.random.split(state.rng)
        leaves, treedef = jax.tree_util.tree_flatten(grads)
        keys = jax.random.split(key, len(leaves))
        noise = [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
        updates = [-0.5 * step_size * g + math.sqrt(step_size) * xi for g, xi in zip(leaves, noise)]
        return jax.tree_util.tree_unflatten(treedef, updates), SGLDState(rng=rng)

    return optax.GradientTransformation(init_fn, update_fn)


class LLCEstimate(NamedTuple):
    """``llc``/``llc_se``: scalars; ``llc_chains[chain]``; ``trace[step]``: chain-mean of
    ``n beta (L_m(w_t) - L_m(w*))`` at each SGLD step (burn-in included) for diagnostics."""

    llc: jax.Array
    llc_se: jax.Array
    llc_chains: jax.Array
    trace: jax.Array


def _tree_sq_dist(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jnp.sum(jnp.square(x - y)) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def make_llc_estimator(
    loss_fn: Callable[[PyTree, PyTree], jax.Array], n: int, settings: SGLDSettings
) -> Callable[[jax.Array, PyTree, PyTree], LLCEstimate]:
    """Build ``estimate(rng, params_star, data) -> LLCEstimate`` (pure, jit- and vmap-able).

    ``loss_fn(params, batch) -> scalar`` is the per-sample mean loss on ``batch``;
    ``data`` is a pytree of arrays whose leading axis has length ``n`` (the data points).
    Validates ``settings`` here, outside any jit.
    """
    settings.validate(n)
    beta = settings.effective_beta(n)
    nbeta = n * beta
    batch_size = settings.effective_batch_size(n)
    full_batch = batch_size == n
    step_size, gamma = settings.step_size, settings.gamma
    num_steps, num_burnin = settings.num_steps, settings.num_burnin

    def take(data, key):
        if full_batch:
            return data
        index = jax.random.randint(key, (batch_size,), 0, n)
        return jax.tree_util.tree_map(lambda x: x[index], data)

    def one_chain(rng, params_star, data):
        noise_key, batch_key = jax.random.split(rng)
        optimiser = sgld(step_size, noise_key)

        def potential(params, batch):
            loss = loss_fn(params, batch)
            return nbeta * loss + 0.5 * gamma * _tree_sq_dist(params, params_star), loss

        def step(carry, key):
            params, opt_state = carry
            batch = take(data, key)
            (_, loss), grads = jax.value_and_grad(potential, has_aux=True)(params, batch)
            loss_star = loss_fn(params_star, batch)
            updates, opt_state = optimiser.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), nbeta * (loss - loss_star)

        keys = jax.random.split(batch_key, num_steps)
        _, draws = jax.lax.scan(step, (params_star, optimiser.init(params_star)), keys)
        return draws

    def estimate(rng, params_star, data):
        chain_keys = jax.random.split(rng, settings.num_chains)
        draws = jax.vmap(one_chain, in_axes=(0, None, None))(chain_keys, params_star, data)  # [chain, step]
        llc_chains = draws[:, num_burnin:].mean(axis=1)
        llc = llc_chains.mean()
        if settings.num_chains > 1:
            llc_se = llc_chains.std(ddof=1) / jnp.sqrt(settings.num_chains)
        else:
            llc_se = jnp.full((), jnp.nan, llc.dtype)
        return LLCEstimate(llc=llc, llc_se=llc_se, llc_chains=llc_chains, trace=draws.mean(axis=0))

    return estimate


def estimate_llc(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params_star: PyTree,
    data: PyTree,
    rng: jax.Array,
    settings: SGLDSettings = SGLDSettings(),
) -> LLCEstimate:
    """Estimate the LLC of ``loss_fn`` at ``params_star`` on ``data`` (one model; jitted)."""
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValuedynError("the LLC needs data; received an empty pytree")
    n = int(leaves[0].shape[0])
    if any(leaf.shape[0] != n for leaf in leaves):
        raise ValuedynError(
            f"every data array needs the same leading (data point) axis, received lengths {[l.shape[0] for l in leaves]}"
        )
    return jax.jit(make_llc_estimator(loss_fn, n, settings))(rng, params_star, data)


# --------------------------------------------------------------------------- known answers


def reduced_rank_regression_rlct(num_inputs: int, num_hidden: int, num_outputs: int, true_rank: int) -> float:
    """Learning coefficient of a two-layer linear network ``x -> B A x`` (reduced-rank regression).

    ``A`` is ``num_hidden x num_inputs``, ``B`` is ``num_outputs x num_hidden``; the true map
    has rank ``true_rank <= num_hidden``. Aoyagi & Watanabe (2005), "Stochastic complexities of
    reduced rank regression in Bayesian estimation", Neural Networks 18, Main Theorem, with
    M inputs, N outputs, H hidden units and true rank r.
    """
    M, H, N, r = num_inputs, num_hidden, num_outputs, true_rank
    if not (min(M, H, N) >= 1 and 0 <= r <= min(H, M, N)):
        raise ValuedynError(
            f"reduced-rank regression needs positive sizes and 0 <= rank <= min(sizes), received M={M}, H={H}, N={N}, r={r}"
        )
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        value = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
        if (M + H + N + r) % 2 == 1:
            value += 1
        return value / 8
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2
    return M * N / 2  # M + N < H + r
