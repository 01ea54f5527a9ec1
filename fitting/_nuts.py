"""Compile once, fit many: MAP (optax) start + NUTS chains over the CPU cores.

:class:`CompiledPosterior` holds, for one numpyro model and one data shape, the jitted
MAP optimiser, the NUTS init and chunk kernels, and the postprocessing; the data are
arguments of every jitted function, so a second fit of the same shapes (another seed
selection, another behaviour, a leave-future-out refit, an SBC replicate) reuses the
compiled code. :func:`compiled_posterior` caches them by (model, observation model,
pooling, observable, shapes, sampler settings).

Chains: the chains are split over the available JAX CPU devices with ``pmap`` and
vectorised with ``vmap`` inside each device. JAX exposes one CPU device unless told
otherwise before it initialises; the command line (``valuedyn fit``) asks for one device
per core (``jax_num_cpu_devices``) when JAX is not yet initialised, so chains run in
parallel on the cores. Inside an already-running process (tests, the report), chains
share whatever devices exist (one device: vectorised chains).

Sampling runs as a Python loop over jitted chunks of NUTS transitions, so a tqdm
progress bar (stderr) can follow it.
"""

from __future__ import annotations

import dataclasses
import sys
import zlib
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.hmc import hmc
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import constrain_fn, potential_energy

from valuedyn.fitting._model import FitData, failed_solves, reset_failed_solves


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    num_warmup: int = 1000
    num_draws: int = 1000
    num_chains: int = 4
    max_tree_depth: int = 10
    target_accept: float = 0.8
    dense_mass: bool = False
    map_steps: int = 1000
    map_starts: int = 8
    init_jitter: float = 1.0


def _tag(name: str) -> int:
    """A stable integer per site name (Python's hash() changes between processes)."""
    return zlib.crc32(name.encode()) % (2**31)


def _device_split(num_chains: int) -> int:
    devices = len(jax.devices())
    for d in range(min(devices, num_chains), 0, -1):
        if num_chains % d == 0:
            return d
    return 1


class CompiledPosterior:
    """Jitted pieces of inference for one numpyro model and one data shape."""

    def __init__(self, numpyro_model, example_data: FitData, settings: SamplerSettings):
        self.model = numpyro_model
        self.settings = settings
        # potential_energy(model, args, kwargs, unconstrained) maps to the supports itself;
        # the data stay an argument, so one compiled sampler serves every data set of this shape
        self.potential_gen = lambda data: partial(potential_energy, numpyro_model, (data,), {})
        self.median_init = self._prior_median(example_data)
        self.n_devices = _device_split(settings.num_chains)
        self.per_device = settings.num_chains // self.n_devices
        total = settings.num_warmup + settings.num_draws
        self.chunk = int(min(max(total // 25, 10), 200))
        self._build()

    def _prior_median(self, example_data: FitData, n: int = 31) -> dict:
        """Median of ``n`` prior draws of every latent site, in the unconstrained space
        (jitted: running the model op by op would compile every primitive separately)."""
        model = self.model

        def one(key, data):
            trace = handlers.trace(handlers.seed(model, key)).get_trace(data)
            return {
                name: biject_to(site["fn"].support).inv(site["value"])
                for name, site in trace.items()
                if site["type"] == "sample" and not site["is_observed"]
            }

        draws = jax.jit(jax.vmap(one, in_axes=(0, None)))(jax.random.split(jax.random.PRNGKey(0), n), example_data)
        return {name: jnp.nanmedian(value, axis=0) for name, value in draws.items()}

    # ------------------------------------------------------------------ jitted pieces
    def _build(self) -> None:
        s = self.settings
        potential_gen = self.potential_gen

        def map_one(u0, data):
            potential = potential_gen(data)
            schedule = optax.cosine_decay_schedule(0.05, s.map_steps, alpha=0.02)
            optimiser = optax.chain(optax.zero_nans(), optax.clip_by_global_norm(10.0), optax.adam(schedule))

            def step(carry, _):
                u, opt_state = carry
                value, grad = jax.value_and_grad(potential)(u)
                updates, opt_state = optimiser.update(grad, opt_state, u)
                return (optax.apply_updates(u, updates), opt_state), value

            (u, _), _ = jax.lax.scan(step, (u0, optimiser.init(u0)), None, length=s.map_steps)
            return u, potential(u)

        self._map = jax.jit(jax.vmap(map_one, in_axes=(0, None)))

        def laplace(u, data):
            """Inverse mass matrix from the Hessian of the potential at the MAP (Laplace
            approximation): warmup starts from the right scales instead of the identity."""
            flat, unravel = ravel_pytree(u)
            gradient = jax.grad(lambda f: potential_gen(data)(unravel(f)))
            # Central differences of the reverse-mode gradient, not jax.hessian: forward mode
            # cannot pass through diffrax's custom_vjp adjoint, so ODE models would crash here.
            # The Hessian only seeds the mass matrix, so this accuracy is plenty.
            step = 1e-2 * jnp.maximum(1.0, jnp.abs(flat))
            basis = jnp.diag(step)
            hessian = jax.vmap(lambda e: gradient(flat + e) - gradient(flat - e))(basis) / (2.0 * step[:, None])
            hessian = 0.5 * (hessian + hessian.T)
            eigenvalues, vectors = jnp.linalg.eigh(hessian)
            ok = jnp.all(jnp.isfinite(eigenvalues))
            # clip: flat or non-convex directions get unit scale, very sharp ones a floor
            eigenvalues = jnp.clip(jnp.where(eigenvalues > 1e-3, eigenvalues, 1.0), 1e-2, 1e8)
            covariance = (vectors / eigenvalues) @ vectors.T
            covariance = jnp.where(ok, covariance, jnp.eye(flat.shape[0]))
            if s.dense_mass:
                return covariance
            return jnp.clip(jnp.diag(covariance), 1e-8, 1e2)

        self._laplace = jax.jit(laplace)

        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")

        def init_one(key, u, inverse_mass, data):
            return init_kernel(
                u,
                s.num_warmup,
                inverse_mass_matrix=inverse_mass,
                dense_mass=s.dense_mass,
                target_accept_prob=s.target_accept,
                max_tree_depth=s.max_tree_depth,
                model_args=(data,),
                rng_key=key,
            )

        chunk = self.chunk

        def chunk_one(state, data, n_active):
            def body(state, i):
                new = jax.lax.cond(
                    i < n_active, lambda st: sample_kernel(st, model_args=(data,)), lambda st: st, state
                )
                return new, (
                    new.z,
                    new.potential_energy,
                    new.energy,
                    new.diverging,
                    new.num_steps,
                    new.accept_prob,
                    new.adapt_state.step_size,
                )

            return jax.lax.scan(body, state, jnp.arange(chunk))

        if self.n_devices > 1:
            self._init = jax.pmap(jax.vmap(init_one, in_axes=(0, 0, None, None)), in_axes=(0, 0, None, None))
            self._chunk = jax.pmap(jax.vmap(chunk_one, in_axes=(0, None, None)), in_axes=(0, None, None))
        else:
            self._init = jax.jit(jax.vmap(init_one, in_axes=(0, 0, None, None)))
            self._chunk = jax.jit(jax.vmap(chunk_one, in_axes=(0, None, None)))

        model = self.model

        def draw_outputs(z, key, data):
            constrained = constrain_fn(model, (data,), {}, z, return_deterministic=True)
            trace = handlers.trace(handlers.seed(handlers.substitute(model, data=constrained), key)).get_trace(
                data, observe=False
            )
            site = trace["y"]
            log_lik = site["fn"].base_dist.log_prob(jnp.where(data.mask, data.y, site["value"]))
            y_rep = jnp.where(data.mask, site["value"], 0.0)
            return constrained, log_lik, y_rep

        self._outputs = jax.jit(jax.vmap(draw_outputs, in_axes=(0, 0, None)))

    # ------------------------------------------------------------------ public
    def find_map(self, data: FitData, key) -> tuple[dict, float]:
        """Best of ``map_starts`` Adam runs (from the prior median and jittered copies)."""
        k = self.settings.map_starts
        keys = jax.random.split(key, k)

        def start(i, name, value):
            noise = jax.random.uniform(jax.random.fold_in(keys[i], _tag(name)), jnp.shape(value), minval=-1.5, maxval=1.5)
            return value if i == 0 else value + noise

        starts = {name: jnp.stack([start(i, name, v) for i in range(k)]) for name, v in self.median_init.items()}
        u, values = self._map(starts, data)
        values = np.asarray(values)
        values = np.where(np.isfinite(values), values, np.inf)
        best = int(np.argmin(values))
        return {name: v[best] for name, v in u.items()}, float(values[best])

    def sample(self, data: FitData, key, init: dict, *, progress: bool = True, desc: str = "NUTS") -> dict[str, Any]:
        """Run all chains; returns unconstrained draws ``z`` [chain, draw, ...] and stats."""
        s = self.settings
        n_dev, per = self.n_devices, self.per_device
        key_init, key_jitter = jax.random.split(key)
        chain_keys = jax.random.split(key_init, s.num_chains)
        jitter_keys = jax.random.split(key_jitter, s.num_chains)

        inverse_mass = self._laplace(init, data)
        flat, unravel = ravel_pytree(init)
        scale = jnp.sqrt(jnp.diag(inverse_mass) if inverse_mass.ndim == 2 else inverse_mass)
        noise = jax.vmap(lambda k: jax.random.normal(k, flat.shape))(jitter_keys)
        # chains start around the MAP, init_jitter Laplace standard deviations apart
        inits = jax.vmap(unravel)(flat[None] + s.init_jitter * scale[None] * noise)
        if n_dev > 1:
            shape = lambda x: x.reshape((n_dev, per) + x.shape[1:])  # noqa: E731
            chain_keys = shape(chain_keys)
            inits = jax.tree_util.tree_map(shape, inits)
        reset_failed_solves()
        state = self._init(chain_keys, inits, inverse_mass, data)
        total = s.num_warmup + s.num_draws
        collected = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=desc, file=sys.stderr, unit="it", leave=False, dynamic_ncols=True)
        done = 0
        try:
            while done < total:
                n_active = min(self.chunk, total - done)
                state, out = self._chunk(state, data, jnp.asarray(n_active, jnp.int32))
                out = jax.tree_util.tree_map(lambda x: np.asarray(x), out)
                collected.append((n_active, out))
                done += n_active
                if bar is not None:
                    bar.update(n_active)
        finally:
            if bar is not None:
                bar.close()
        failures = failed_solves()

        def gather(index):
            parts = []
            for n_active, out in collected:
                x = out[index]
                if n_dev > 1:
                    x = jax.tree_util.tree_map(lambda a: a.reshape((n_dev * per,) + a.shape[2:]), x)
                parts.append(jax.tree_util.tree_map(lambda a: a[:, :n_active], x))
            joined = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *parts)
            return jax.tree_util.tree_map(lambda a: a[:, s.num_warmup :], joined)

        z = gather(0)
        num_steps = gather(4).astype(np.int64)
        return {
            "z": z,
            "potential_energy": gather(1),
            "energy": gather(2),
            "diverging": gather(3).astype(bool),
            "n_steps": num_steps,
            "tree_depth": np.ceil(np.log2(num_steps + 1)).astype(np.int64),
            "acceptance_rate": gather(5),
            "step_size": gather(6),
            "failed_solves": int(failures),
            "max_tree_depth": s.max_tree_depth,
        }

    def outputs(self, data: FitData, z: dict, key, batch: int = 1000) -> tuple[dict, np.ndarray, np.ndarray]:
        """Constrained parameters (+ deterministics), pointwise log-likelihood [n, S, U] and
        posterior predictive ``y`` [n, S, U] for flat draws ``z`` [n, ...]."""
        n = next(iter(z.values())).shape[0]
        keys = jax.random.split(key, n)
        parts = []
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            piece = {k: jnp.asarray(v[start:stop]) for k, v in z.items()}
            if stop - start < batch:  # pad to one compiled shape
                pad = batch - (stop - start)
                piece = {k: jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)]) for k, v in piece.items()}
                sub_keys = jnp.concatenate([keys[start:stop], jnp.repeat(keys[stop - 1 : stop], pad, axis=0)])
            else:
                sub_keys = keys[start:stop]
            constrained, log_lik, y_rep = self._outputs(piece, sub_keys, data)
            keep = stop - start
            parts.append(
                jax.tree_util.tree_map(lambda a: np.asarray(a)[:keep], (constrained, log_lik, y_rep))
            )
        constrained = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        log_lik = np.concatenate([p[1] for p in parts])
        y_rep = np.concatenate([p[2] for p in parts])
        return constrained, log_lik, y_rep


_CACHE: dict[tuple, CompiledPosterior] = {}


def compiled_posterior(key: tuple, build_model, example_data: FitData, settings: SamplerSettings) -> CompiledPosterior:
    """Cached :class:`CompiledPosterior`; ``key`` names the model structure, shapes are added here."""
    full_key = key + (tuple(example_data.y.shape), dataclasses.astuple(settings), len(jax.devices()))
    if full_key not in _CACHE:
        _CACHE[full_key] = CompiledPosterior(build_model(), example_data, settings)
    return _CACHE[full_key]

