"""Compile once, fit many: MAP (optax) start + NUTS chains over the CPU cores.

:class:`CompiledPosterior` holds, for one numpyro model and one data shape, three jitted
kernels that carry the model: a batch of potential gradients with an Adam step (the MAP,
the Hessian and the chains' starting gradients all call it from the host), the NUTS
chunk, and the postprocessing; the data are arguments of every jitted function, so a
second fit of the same shapes (another seed selection, another behaviour, a
leave-future-out refit, an SBC replicate) reuses the compiled code.
:func:`compiled_posterior` caches them by (model, observation model, pooling, observable,
shapes, sampler settings).

One fit (:meth:`CompiledPosterior.run`):

1. MAP: the best of ``map_starts`` Adam runs (non-centred coordinates, robust).
2. Hierarchical pooling: centring weights from the curvature at the MAP
   (:func:`~valuedyn.fitting.inference._model.centring_weights`), the MAP moved to those coordinates.
3. Laplace: the inverse Hessian at that point seeds the mass matrix, so warmup starts at
   the right scales and correlations instead of the identity.
4. Warmup (Stan's schedule, numpyro's NUTS transition; :func:`warmup_schedule`): a fast
   stage of 75 iterations adapting the step size (dual averaging) under the Laplace mass
   matrix; slow windows of 25, 50, 100, ... iterations after each of which the mass matrix
   is re-estimated from the draws of *all* chains (the mean of the within-chain
   covariances, regularised as Stan does), the step size found afresh and dual averaging
   restarted; a final stage of 50 adapting the step size alone. Pooling the chains gives a
   dense estimate from 4x the draws of numpyro's per-chain windows, whose first windows
   (25-50 draws for tens of dimensions) are what made the default adaptation slow here
   (trees of hundreds of leapfrog steps).
5. Sampling with the final step size (the dual-averaging average of each chain). With
   ``saturated_draws`` set, a warmup whose final stage, or a slow window of at least
   :data:`EARLY_SATURATION_WINDOW` iterations (the warmup then stops there), spent at least
   :data:`SATURATED_SHARE` of its transitions at the tree-depth cap runs only that many
   draws per chain (recorded as ``draws_cut``; the fit cannot pass the gate, and each of
   its draws costs the whole cap). With ``min_draws`` set, sampling runs in pieces and stops
   at the first piece after which the draws pass the diagnostics gate with a margin (bulk
   and tail ESS >= ``STOP_ESS``; recorded as ``draws_stopped``): most of the report's fits
   reach it well before their last draw, and the fit file holds exactly the draws judged.

Chains: split over the JAX CPU devices with ``pmap``, and run one after another inside a
device with ``lax.map`` (not ``vmap``: batched NUTS waits for the longest tree of all
chains at every step and turns every ``cond`` into both branches, which measured 1.4x
slower and made the failed-solve callback run at every gradient). JAX exposes one CPU
device unless told otherwise before it initialises; the command line (``valuedyn fit``)
asks for one device per core (``jax_num_cpu_devices``), so chains run in parallel on the
cores. Inside an already-running process (tests, the report) chains share whatever
devices exist.

Sampling runs as a Python loop over jitted chunks of NUTS transitions, so a tqdm progress
bar (stderr) follows it. Posterior predictive replicates are drawn on the host with numpy
from the level of each draw (numpyro's vmapped Binomial sampler took minutes for a
4000-draw fit).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.hmc import hmc
from numpyro.infer.hmc_util import dual_averaging
from numpyro.infer.util import ParamInfo, constrain_fn, potential_energy

from valuedyn.fitting.inference._deviation import pointwise_log_likelihood, replicate_mean
from valuedyn.fitting.inference._model import (
    FitData,
    centring_weights,
    diagnosed_sites,
    failed_solves,
    fixed_centring,
    initial_point,
    likelihood_variances,
    location_weights,
    population_locations,
    recentre,
    reset_failed_solves,
)
from valuedyn.fitting.inference._timing import mark, waiting_for_compile


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """What the compiled sampler runs. The options a command has are declared, with their
    defaults per use, in :mod:`valuedyn.fitting.settings` (:func:`~valuedyn.fitting.inference._fit.settings_from`
    turns a config into these), so they have no defaults here; the rest are the sampler's own."""

    num_warmup: int
    num_draws: int
    num_chains: int
    max_tree_depth: int
    target_accept: float
    dense_mass: bool
    map_steps: int = 1000
    map_starts: int = 8
    init_jitter: float = 1.0
    #: draws per chain when the warmup saturates the tree depth (0: never cut;
    #: see :data:`SATURATED_SHARE` and :meth:`CompiledPosterior.sample`)
    saturated_draws: int = 0
    #: stop sampling once this many draws per chain (then every half of it, at least 100
    #: more) pass the gate with a margin (:func:`~valuedyn.fitting.inference._diagnostics.passes_with_margin`:
    #: R-hat <= 1.01, bulk and tail ESS >= STOP_ESS, no divergence); ``num_draws`` is then the
    #: most. 0: always run ``num_draws`` (see :meth:`CompiledPosterior.sample`)
    min_draws: int = 0


#: draws per call of the outputs kernel (constrained values and pointwise log-likelihood)
OUTPUTS_BATCH = 500

#: share of the warmup's final-stage transitions at the tree-depth cap from which a fit
#: counts as saturated: NUTS then walks the posterior in steps far smaller than its extent
#: (a curved ridge of parameters the data do not pin), so each draw costs the whole cap and
#: adds little ESS; more draws would not bring the fit through the gate
SATURATED_SHARE = 0.9
#: slow windows at least this long (the third of Stan's, iterations 150-250, after two
#: mass-matrix updates) end the warmup when saturated: on the shipped run (rise only) the
#: overshoot fits of event:place_plant and unlock:collect_wood saturated there (100 % and
#: 97 % at depth 8) as in their last stage, and the one overshoot fit that passes
#: (diversity:actions) is unchanged
EARLY_SATURATION_WINDOW = 100


def _share_at_cap(stage_out, max_tree_depth: int) -> float:
    """Share of a stage's transitions (``run_stage``'s output) at the tree-depth cap."""
    return float(np.mean(np.asarray(stage_out[4]) >= 2**max_tree_depth - 1))


#: Stan's warmup buffers (iterations): the step-size-only stages before and after the
#: mass-matrix windows, and the first window, each next window twice as long
FAST_BUFFER, FINAL_BUFFER, FIRST_WINDOW = 75, 50, 25


def warmup_schedule(num_warmup: int) -> list[tuple[str, int]]:
    """Stages of the warmup: ("fast" | "slow" | "final", iterations), as Stan lays them out:
    a fast stage of 75, slow windows of 25, 50, 100, ... (the last one stretched to the
    final stage) and a final stage of 50. The first mass matrix estimated from draws comes
    after 100 iterations, not after 15 % + 25 % of the warmup: the Laplace mass matrix at the
    MAP is a poor metric for some posteriors (the core overshoot case: 150-180 leapfrog steps
    per iteration under it, 30-50 after the first window), and a short first window leaves
    it early. Warmups under 150 iterations are split 15 / 25 / 45 / 15 %; under 40, one fast
    stage (step size only, Laplace mass matrix)."""
    if num_warmup < 40:
        return [("fast", num_warmup)]
    if num_warmup < FAST_BUFFER + FIRST_WINDOW + FINAL_BUFFER:
        fast = int(round(0.15 * num_warmup))
        slow1 = int(round(0.25 * num_warmup))
        slow2 = int(round(0.45 * num_warmup))
        return [("fast", fast), ("slow", slow1), ("slow", slow2), ("final", num_warmup - fast - slow1 - slow2)]
    slow_total = num_warmup - FAST_BUFFER - FINAL_BUFFER
    windows, size = [], FIRST_WINDOW
    while sum(windows) < slow_total:
        if sum(windows) + 3 * size > slow_total:  # the next window would not fit: this one takes the rest
            size = slow_total - sum(windows)
        windows.append(size)
        size *= 2
    return [("fast", FAST_BUFFER)] + [("slow", w) for w in windows] + [("final", FINAL_BUFFER)]


#: LLVM optimisation levels on the CPU (XLA's default is 2): the pieces that run a few times
#: per fit (Hessian, NUTS init, outputs) at 0, the MAP's 1000 Adam steps and the NUTS chunk
#: at 1. Measured on logistic_onset (beta-binomial, hierarchical, 128 cells): the Hessian
#: compiled in 2.9 s instead of 10.4 s, the gradient in 2.2 s instead of 3.3 s and ran in 0.16
#: instead of 0.27 ms; a cold fit of it took 45 s instead of 61 s.
ONE_SHOT_OPT_LEVEL, HOT_OPT_LEVEL = 0, 1


def _cpu_options(level: int) -> dict | None:
    """XLA compiler options for ``level`` on the CPU backend (None elsewhere: XLA's own)."""
    if jax.default_backend() != "cpu":
        return None
    return {"xla_backend_optimization_level": level}


def _jit(fn, level: int):
    return jax.jit(fn, compiler_options=_cpu_options(level))


def _signature(args) -> tuple:
    """What an executable compiled for ``args`` (arrays or ``jax.ShapeDtypeStruct``) needs of
    a call's arguments: the tree's structure and every leaf's shape, dtype and weak type."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((tuple(np.shape(a)), np.dtype(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves)


def _persistent_cache_on() -> bool:
    """Whether JAX's persistent compilation cache is in use (a folder set and not disabled)."""
    return bool(jax.config.jax_compilation_cache_dir) and bool(getattr(jax.config, "jax_enable_compilation_cache", True))


class _CompiledOnce:
    """A transformed function (``pmap`` or ``jit``) compiled with ``options`` once per
    argument signature (:func:`_signature`): on the first call, or ahead of it on a thread
    (:meth:`compile_in_background`)."""

    def __init__(self, transformed, options):
        self.transformed, self.options = transformed, options
        self.compiled: dict[tuple, Any] = {}
        self._pending: dict[tuple, tuple] = {}

    @property
    def started(self) -> bool:
        """Compiled, or compiling on a thread, for some signature."""
        return bool(self.compiled) or bool(self._pending)

    def compile_in_background(self, *args) -> None:
        """Lower for ``args`` (arrays or ``jax.ShapeDtypeStruct``) here and compile on a
        thread while this one goes on: XLA releases the GIL while it compiles, so on a cold
        fit the NUTS kernel compiles on the second core while the MAP runs on the first.
        Tracing stays on this thread (numpyro's effect handlers keep one global stack).
        While the persistent compilation cache is on (:func:`_persistent_cache_on`, the
        package's default) the compile happens here instead: it may load a cached executable,
        and XLA:CPU loading one on a thread beside a running kernel segfaulted. Nothing
        happens when ``args``' signature is compiled or compiling already."""
        signature = _signature(args)
        if signature in self.compiled or signature in self._pending:
            return
        lowered = self.transformed.lower(*args)
        if _persistent_cache_on():
            # with the persistent cache the "compile" may be a deserialisation of a cached
            # executable, and XLA:CPU deserialising on a thread while this one ran a kernel died
            # of a segmentation fault (twice in the full suite, 2026-12-08): compile here instead
            self.compiled[signature] = lowered.compile(compiler_options=self.options)
            return
        result: dict = {}

        def work():
            try:
                result["compiled"] = lowered.compile(compiler_options=self.options)
            except Exception as err:  # compiled again on the first call, which raises it there
                result["error"] = err

        thread = threading.Thread(target=work, name="valuedyn-compile", daemon=True)
        thread.start()
        self._pending[signature] = (thread, result)

    def __call__(self, *args):
        signature = _signature(args)
        executable = self.compiled.get(signature)
        if executable is None:
            if signature in self._pending:
                thread, result = self._pending.pop(signature)
                with waiting_for_compile():
                    thread.join()
                executable = result.get("compiled")
            if executable is None:
                executable = self.transformed.lower(*args).compile(compiler_options=self.options)
            self.compiled[signature] = executable
        return executable(*args)


def _import_in_background(module: str) -> None:
    """Start importing ``module`` on a thread (a later ``import`` waits for it to finish),
    so that its import time overlaps work that does not hold the GIL."""
    if module not in sys.modules:
        threading.Thread(target=importlib.import_module, args=(module,), name=f"valuedyn-import-{module}",
                         daemon=True).start()


def numpy_rng(key) -> np.random.Generator:
    """A numpy generator seeded by a JAX key: the sampler's host-side noise (MAP starts,
    chain jitter, centring draws, chain keys) drawn without a jitted helper per shape."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key), np.uint32).ravel().tolist())


class _Layout:
    """A site dict <-> flat vector, in the order of ``jax.flatten_util.ravel_pytree`` (the
    leaves of ``jax.tree_util.tree_flatten``), for numpy and traced arrays alike, with any
    leading batch axes: the host never needs a jitted helper to move between the two."""

    def __init__(self, example: dict):
        leaves, self.treedef = jax.tree_util.tree_flatten(example)
        self.shapes = [tuple(np.shape(leaf)) for leaf in leaves]
        self.bounds = np.cumsum([0] + [int(np.prod(shape)) for shape in self.shapes]).tolist()
        self.dim = self.bounds[-1]

    def ravel(self, tree, batch_ndim: int = 0) -> np.ndarray:
        leaves = jax.tree_util.tree_leaves(tree)
        return np.concatenate([np.asarray(leaf, np.float32).reshape(np.shape(leaf)[:batch_ndim] + (-1,))
                               for leaf in leaves], axis=-1)

    def unravel(self, flat):
        batch = tuple(flat.shape[:-1])
        leaves = [flat[..., a:b].reshape(batch + shape)
                  for a, b, shape in zip(self.bounds[:-1], self.bounds[1:], self.shapes)]
        return self.treedef.unflatten(leaves)


def _uncentred(data: FitData) -> FitData:
    """``data`` with zero centring weights and location frames (float32, as sampled)."""
    return data._replace(centring=np.zeros(np.shape(data.centring), np.float32),
                         location=np.zeros(np.shape(data.location), np.float32))


def _device_split(num_chains: int) -> int:
    devices = len(jax.devices())
    for d in range(min(devices, num_chains), 0, -1):
        if num_chains % d == 0:
            return d
    return 1


def pooled_inverse_mass(flat_draws: np.ndarray, dense: bool) -> np.ndarray:
    """Inverse mass matrix from warmup draws [chains, n, D]: the mean of the within-chain
    covariances (robust to chains that sit apart), shrunk towards a small multiple of the
    identity as Stan does: ``(N / (N + 5)) C + 1e-3 (5 / (N + 5)) I`` with N all draws."""
    chains, n, dim = flat_draws.shape
    centred = flat_draws - flat_draws.mean(axis=1, keepdims=True)
    total = chains * n
    if dense:
        covariance = np.einsum("cni,cnj->ij", centred, centred) / max(chains * (n - 1), 1)
        covariance = (total / (total + 5.0)) * covariance + 1e-3 * (5.0 / (total + 5.0)) * np.eye(dim)
        covariance = 0.5 * (covariance + covariance.T)
        return covariance.astype(np.float32)
    variance = (centred**2).sum(axis=(0, 1)) / max(chains * (n - 1), 1)
    return ((total / (total + 5.0)) * variance + 1e-3 * (5.0 / (total + 5.0))).astype(np.float32)


class CompiledPosterior:
    """Jitted pieces of inference for one numpyro model and one data shape."""

    def __init__(self, numpyro_model, example_data: FitData, settings: SamplerSettings, *, observation,
                 spaces=(), pooling: str = "none", count_failures: bool = True):
        self.model = numpyro_model
        self.observation = observation
        self.settings = settings
        self.spaces = spaces
        self.pooling = pooling
        # potential_energy(model, args, kwargs, unconstrained) maps to the supports itself;
        # the data stay an argument, so one compiled sampler serves every data set of this shape
        self.potential_gen = lambda data: partial(potential_energy, numpyro_model, (data,), {})
        # the failed-solve counter is a host callback, and an executable with one cannot enter
        # JAX's persistent compilation cache: closed forms (whose non-finite values are
        # rejected and marked divergent all the same) leave it out, so their NUTS kernels are
        # compiled once per machine, not once per process
        self.nuts_potential_gen = lambda data: partial(potential_energy, numpyro_model, (data,),
                                                       {"count_failures": count_failures})
        n_seeds = int(example_data.y.shape[0])
        self.median_init = (initial_point(spaces, observation, pooling, n_seeds, int(example_data.y.shape[1])) if spaces
                            else self._prior_median(example_data))
        self.layout = _Layout(self.median_init)
        self._loc_sd = np.array([space.loc_sd for space in spaces], np.float64)
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
    def _per_device(self, fn, in_axes, options=None):
        """``fn`` over chains: ``lax.map`` over a device's chains, ``pmap`` over devices.
        ``in_axes``: 0 for per-chain arguments, None for shared ones."""

        def on_device(*args):
            mapped = [a for a, ax in zip(args, in_axes) if ax == 0]

            def one(per_chain):
                it = iter(per_chain)
                full = [next(it) if ax == 0 else a for a, ax in zip(args, in_axes)]
                return fn(*full)

            return jax.lax.map(one, mapped)

        if self.n_devices > 1:
            return _CompiledOnce(jax.pmap(on_device, in_axes=in_axes), options)

        def single(*args):  # one device: drop the device axis instead of vmapping over it
            squeezed = [jax.tree_util.tree_map(lambda a: a[0], a) if ax == 0 else a for a, ax in zip(args, in_axes)]
            return jax.tree_util.tree_map(lambda a: a[None], on_device(*squeezed))

        return _CompiledOnce(jax.jit(single), options)

    def _build(self) -> None:
        s = self.settings
        potential_gen = self.potential_gen

        layout = self.layout

        # The one compiled gradient outside NUTS: the MAP's Adam steps, the Hessian's central
        # differences and the chains' starting gradients all call it, a batch of
        # ``map_starts`` points at a time (one gradient compile where a vmapped Adam scan, a
        # vmapped Hessian and a pmapped init compiled three: 20 of the 58 s of compiling and
        # tracing a cold stagewise3 fit). The batch runs under lax.map, not vmap: vmapped, the
        # beta-binomial's branch for small concentrations ran both ways (2x the cost).
        schedule = optax.cosine_decay_schedule(0.05, s.map_steps, alpha=0.02)
        optimiser = optax.chain(optax.zero_nans(), optax.clip_by_global_norm(10.0), optax.adam(schedule))

        def step_one(flat, opt_state, data):
            value, grad = jax.value_and_grad(lambda f: potential_gen(data)(layout.unravel(f)))(flat)
            updates, opt_state = optimiser.update(grad, opt_state, flat)
            return value, grad, optax.apply_updates(flat, updates), opt_state

        def steps(flats, opt_states, data):
            """The potential and its gradient at each of ``flats`` [B, D], and the MAP's Adam
            step from there."""
            return jax.lax.map(lambda a: step_one(a[0], a[1], data), (flats, opt_states))

        self._steps = _CompiledOnce(jax.jit(steps), _cpu_options(HOT_OPT_LEVEL))
        self._batch = max(1, s.map_starts)
        self._adam_init = jax.jit(jax.vmap(optimiser.init))
        # any optimiser state will do where only the gradients are wanted
        self._idle_opt_state = self._adam_init(np.zeros((self._batch, layout.dim), np.float32))

        # NUTS walks the flat vector, not the site dict: numpyro's leapfrog, momentum and
        # U-turn arithmetic is a tree_map over the position's leaves, and with one leaf per
        # site (27 for stagewise3's hierarchy) those small per-leaf ops cost more than the
        # model's gradient (stagewise3 on the shipped run, 81 dimensions, one CPU core: 57 us
        # per leapfrog step with the dict, 30 us flat, the gradient alone 15.5 us)
        nuts_potential_gen = self.nuts_potential_gen

        def flat_potential_gen(data):
            potential = nuts_potential_gen(data)
            return lambda flat: potential(layout.unravel(flat))

        init_kernel, sample_kernel = hmc(potential_fn_gen=flat_potential_gen, algo="NUTS")
        ss_init, ss_update = dual_averaging()
        target = s.target_accept

        def init_one(key, z, potential, z_grad, step_size, inverse_mass, data):
            # the potential and its gradient at z come in (no gradient compiled here);
            # num_warmup=0: numpyro adapts nothing itself, the windows and dual averaging are ours
            state = init_kernel(
                ParamInfo(z, potential, z_grad),
                0,
                step_size=step_size,
                inverse_mass_matrix=inverse_mass,
                adapt_step_size=True,
                adapt_mass_matrix=False,
                dense_mass=s.dense_mass,
                target_accept_prob=target,
                max_tree_depth=s.max_tree_depth,
                model_args=(data,),
                rng_key=key,
            )
            averaging = ss_init(jnp.log(10.0 * state.adapt_state.step_size))
            return state, averaging

        self._init = _jit(jax.vmap(init_one, in_axes=(0, 0, 0, 0, 0, None, None)), ONE_SHOT_OPT_LEVEL)

        chunk = self.chunk
        tiny, huge = float(jnp.finfo(jnp.float32).tiny), float(jnp.finfo(jnp.float32).max)

        def chunk_one(state, averaging, data, n_active, adapting):
            def advance(carry):
                state, averaging = carry
                used = state.adapt_state.step_size
                new = sample_kernel(state, model_args=(data,))
                accept = jnp.where(jnp.isfinite(new.accept_prob), new.accept_prob, 0.0)
                updated = ss_update(target - accept, averaging)
                step = jnp.where(adapting, jnp.clip(jnp.exp(updated[0]), tiny, huge), used)
                new = new._replace(adapt_state=new.adapt_state._replace(step_size=step))
                averaging = jax.tree_util.tree_map(lambda a, b: jnp.where(adapting, a, b), updated, averaging)
                return (new, averaging), used

            def body(carry, i):
                (state, averaging), used = jax.lax.cond(
                    i < n_active, advance, lambda c: (c, c[0].adapt_state.step_size), carry
                )
                return (state, averaging), (
                    state.z,
                    state.potential_energy,
                    state.energy,
                    state.diverging,
                    state.num_steps,
                    state.accept_prob,
                    used,
                )

            return jax.lax.scan(body, (state, averaging), jnp.arange(chunk))

        self._chunk = self._per_device(chunk_one, (0, 0, None, None, None), _cpu_options(HOT_OPT_LEVEL))

        def finish_warmup(state, averaging):
            """The step size for sampling: the dual-averaging average."""
            step = jnp.clip(jnp.exp(averaging[1]), tiny, huge)
            return state._replace(adapt_state=state.adapt_state._replace(step_size=step))

        self._finish = jax.jit(finish_warmup)

        model = self.model

        observation = self.observation

        def draw_outputs(z, data, y_filled):
            constrained = constrain_fn(model, (data,), {}, z, return_deterministic=True)
            # a deviation fit's: each cell's innovation integrated out (valuedyn.fitting.inference._deviation)
            return constrained, pointwise_log_likelihood(observation, constrained, data, y_filled)

        self._outputs = _CompiledOnce(jax.jit(jax.vmap(draw_outputs, in_axes=(0, None, None))),
                                      _cpu_options(ONE_SHOT_OPT_LEVEL))

    # ------------------------------------------------------------------ public
    def values_and_grads(self, flats: np.ndarray, data: FitData) -> tuple[np.ndarray, np.ndarray]:
        """Potential energy [N] and its gradient [N, D] at flat points [N, D]."""
        flats = np.asarray(flats, np.float32)
        n, batch = flats.shape[0], self._batch
        padded = np.concatenate([flats, np.repeat(flats[-1:], -n % batch, axis=0)])
        values, grads = [], []
        for start in range(0, padded.shape[0], batch):
            value, grad, _, _ = self._steps(padded[start:start + batch], self._idle_opt_state, data)
            values.append(np.asarray(value))
            grads.append(np.asarray(grad))
        return np.concatenate(values)[:n], np.concatenate(grads)[:n]

    def _compile_chunk_ahead(self, data: FitData) -> None:
        """Start compiling the NUTS chunk for ``data``'s shapes (see
        :meth:`_CompiledOnce.compile_in_background`); the state's shapes come from
        ``eval_shape`` of the init kernel."""
        s, f32 = self.settings, np.float32
        if self._chunk.started:
            return
        z = np.zeros((s.num_chains, self.layout.dim), f32)
        mass = np.zeros((self.layout.dim,) * (2 if s.dense_mass else 1), f32)
        data = _uncentred(data)
        state, averaging = jax.eval_shape(self._init, np.zeros((s.num_chains, 2), np.uint32), z,
                                          np.zeros(s.num_chains, f32), z, np.ones(s.num_chains, f32), mass, data)

        def per_device(a):
            return jax.ShapeDtypeStruct((self.n_devices, self.per_device) + tuple(a.shape[1:]), a.dtype)

        self._chunk.compile_in_background(jax.tree_util.tree_map(per_device, state),
                                          jax.tree_util.tree_map(per_device, averaging), data,
                                          jax.ShapeDtypeStruct((), np.int32), jax.ShapeDtypeStruct((), np.bool_))

    def start_points(self, values: dict) -> np.ndarray:
        """Flat points [n, D] in the uncentred coordinates (zero centring weights and
        location frames, as :meth:`find_map` searches) from ``values``: posterior variable
        -> [n] or [n, S] in the parameter's units, as a fit file's posterior names them
        (``{name}`` per seed, hierarchical ``{name}_loc`` (unconstrained) and ``{name}_scale``,
        the observation parameters). Raises :class:`ValuedynError` naming a missing one."""
        from valuedyn._errors import ValuedynError

        def get(name):
            if name not in values:
                raise ValuedynError(f"--initial-points must give {name!r} (a value per chain); received "
                                    f"{', '.join(sorted(values)) or 'nothing'}")
            return np.asarray(values[name], np.float64)

        point = {}
        for space in self.spaces:
            u = np.asarray(space.transform.inv(jnp.asarray(get(space.name), jnp.float32)), np.float64)
            if self.pooling == "hierarchical":
                loc, scale = get(f"{space.name}_loc"), get(f"{space.name}_scale")
                point[f"{space.name}_locc"] = loc  # frame (0, 0): loc_c is the location
                point[f"{space.name}_scale"] = np.log(scale)
                point[f"{space.name}_z"] = (u - loc[:, None]) / scale[:, None]  # weight 0: u = loc + scale z
            elif self.pooling == "complete":
                point[space.name] = u[:, 0] if u.ndim == 2 else u
            else:
                point[space.name] = u
        for name, prior in self.observation.parameters:
            point[name] = np.asarray(biject_to(prior.support).inv(jnp.asarray(get(name), jnp.float32)), np.float64)
        n = len(next(iter(point.values())))
        for name, value in self.median_init.items():  # latent sites no fit file stores (a deviation's z): central
            point.setdefault(name, np.broadcast_to(np.asarray(value, np.float64), (n,) + np.shape(value)))
        flats = self.layout.ravel({k: point[k] for k in self.median_init}, batch_ndim=1)
        if flats.shape != (n, self.layout.dim) or not np.all(np.isfinite(flats)):
            raise ValuedynError(f"--initial-points must hold finite values inside each parameter's support, the same "
                                f"number per variable; received {n} points that map to shape {flats.shape}")
        return flats

    def find_map(self, data: FitData, key, starts: np.ndarray | None = None) -> tuple[dict, float]:
        """Best of ``map_starts`` Adam runs (from the prior median and copies jittered
        uniformly by up to 1.5 in every unconstrained coordinate; or, given ``starts``
        [n, D] (:meth:`start_points`), from those points, repeated to fill the runs)."""
        s = self.settings
        median = self.layout.ravel(self.median_init)
        noise = numpy_rng(key).uniform(-1.5, 1.5, size=(s.map_starts, median.shape[0])).astype(np.float32)
        noise[0] = 0.0
        flats = median[None] + noise
        if starts is not None:  # the search stays in the basin the given points are in
            flats = np.asarray(starts, np.float32)[np.arange(s.map_starts) % len(starts)]
        data = jax.device_put(data)
        opt_states = self._adam_init(flats)
        # a cold start: the MAP's kernel compiles on a thread while this one lowers the NUTS
        # chunk, which then compiles on a thread while the MAP runs here
        self._steps.compile_in_background(flats, opt_states, data)
        self._compile_chunk_ahead(data)
        for _ in range(s.map_steps):
            _, _, flats, opt_states = self._steps(flats, opt_states, data)
        values, _ = self.values_and_grads(np.asarray(flats), data)
        values = np.where(np.isfinite(values), values, np.inf)
        best = int(np.argmin(values))
        return self.layout.unravel(np.asarray(flats)[best]), float(values[best])

    def hessian(self, u: dict, data: FitData) -> np.ndarray:
        """Hessian of the potential over the flat coordinates at ``u``, by central
        differences of the reverse-mode gradient (two gradients per direction; it needs
        nothing of a model's solver beyond the gradient NUTS uses anyway)."""
        flat = self.layout.ravel(u).astype(np.float64)
        step = 1e-2 * np.maximum(1.0, np.abs(flat))
        shifts = np.diag(step)
        _, grads = self.values_and_grads(np.concatenate([flat + shifts, flat - shifts]), data)
        grads = grads.astype(np.float64)
        h = (grads[:flat.shape[0]] - grads[flat.shape[0]:]) / (2.0 * step[:, None])
        return 0.5 * (h + h.T)

    def laplace_inverse_mass(self, u: dict, data: FitData) -> np.ndarray:
        """Inverse mass matrix from the Hessian at ``u`` (Laplace approximation); flat or
        non-convex directions get unit scale, very sharp ones a floor."""
        h = self.hessian(u, data)
        dim = h.shape[0]
        if not np.all(np.isfinite(h)):
            covariance = np.eye(dim)
        else:
            eigenvalues, vectors = np.linalg.eigh(h)
            eigenvalues = np.clip(np.where(eigenvalues > 1e-3, eigenvalues, 1.0), 1e-2, 1e8)
            covariance = (vectors / eigenvalues) @ vectors.T
        if self.settings.dense_mass:
            return (0.5 * (covariance + covariance.T)).astype(np.float32)
        return np.clip(np.diag(covariance), 1e-8, 1e2).astype(np.float32)

    def index_of_sites(self) -> dict:
        """Site name -> flat indices of its elements in ``ravel_pytree`` order."""
        positions = self.layout.unravel(np.arange(self.layout.dim))
        return {name: np.asarray(v).astype(int) for name, v in positions.items()}

    def prepare(self, data: FitData, key, parameterization: str = "auto",
                starts: np.ndarray | None = None) -> tuple[FitData, dict, np.ndarray | None, dict | None]:
        """MAP, then (hierarchical pooling) the centring weights: returns the data with
        those weights, the starting point in their coordinates, (``auto``) the likelihood
        variances that let warmup refine the weights, and ``starts`` (flat uncentred
        points [chains, D], :meth:`start_points`; the MAP search starts from them) moved to
        those coordinates (None without them)."""
        data = _uncentred(data)
        key_map, key_draws = jax.random.split(key)
        start, _ = self.find_map(data, key_map, starts)
        chain_starts = None if starts is None else self.layout.unravel(np.asarray(starts, np.float32))
        if self.pooling != "hierarchical" or not self.spaces:
            return data, start, None, chain_starts
        n_params, n_seeds = data.centring.shape
        sigma2 = None
        if parameterization == "auto":
            hessian = self.hessian(start, data)
            sigma2, (mean, variance) = likelihood_variances(self.spaces, start, hessian, self.index_of_sites())
            normal = numpy_rng(key_draws).standard_normal((n_params, 256))
            log_scale = mean[:, None] + np.sqrt(variance)[:, None] * normal
            weights = centring_weights(sigma2, log_scale)
            # the MAP's population locations (non-centred coordinates: loc_c is the location)
            centres = np.array([float(np.asarray(start[f"{p.name}_locc"])) for p in self.spaces])
            location = np.stack([centres, location_weights(sigma2, log_scale, self._loc_sd)], axis=1)
        else:
            weights = fixed_centring(parameterization, n_params, n_seeds)
            location = np.zeros((n_params, 2))
        start = recentre(self.spaces, start, np.zeros_like(weights), weights, xp=np, new_location=location)
        if chain_starts is not None:
            chain_starts = recentre(self.spaces, chain_starts, np.zeros_like(weights), weights, xp=np,
                                    new_location=location)
        return (data._replace(centring=np.asarray(weights, np.float32), location=np.asarray(location, np.float32)),
                start, sigma2, chain_starts)

    def run(self, data: FitData, key, *, parameterization: str = "auto", progress: bool = True,
            desc: str = "NUTS", initial_points: dict | None = None) -> tuple[FitData, dict[str, Any]]:
        """MAP start, centring, warmup and sampling; returns (the data as sampled, with
        their centring weights; the draws and statistics of :meth:`sample`).
        ``initial_points`` (:meth:`start_points`' ``values``, one point per chain): the MAP
        search and every chain start there instead (chain ``c`` at point ``c``)."""
        key_map, key_nuts = jax.random.split(key)
        starts = None
        if initial_points is not None:
            starts = self.start_points(initial_points)
            if len(starts) != self.settings.num_chains:
                from valuedyn._errors import ValuedynError

                raise ValuedynError(f"--initial-points must give one point per chain ({self.settings.num_chains}); "
                                    f"received {len(starts)}")
        data, start, sigma2, chain_starts = self.prepare(data, key_map, parameterization, starts)
        mark("map_laplace")
        return self.sample(data, key_nuts, start, progress=progress, desc=desc, sigma2=sigma2,
                           chain_starts=chain_starts)

    def _reshape_chains(self, x):
        """[chains, ...] -> [devices, chains per device, ...] (numpy; pmap shards it)."""
        n_dev, per = self.n_devices, self.per_device
        return jax.tree_util.tree_map(lambda a: np.reshape(np.asarray(a), (n_dev, per) + np.shape(a)[1:]), x)

    def sample(self, data: FitData, key, init: dict, *, progress: bool = True, desc: str = "NUTS",
               sigma2: np.ndarray | None = None, chain_starts: dict | None = None) -> tuple[FitData, dict[str, Any]]:
        """Warmup (see the module docstring) and draws; returns the data as sampled and the
        unconstrained draws ``z`` [chain, draw, ...] with per-draw statistics.

        ``sigma2`` (hierarchical pooling, ``auto`` centring): after the first slow window the
        centring weights are re-chosen from that window's draws of the population scales
        (:func:`~valuedyn.fitting.inference._model.centring_weights`); the window's draws and the
        chains' positions are moved to the new coordinates before the mass matrix is
        estimated from them. ``chain_starts`` (site -> [chains, ...] in the data's
        coordinates): where the chains start, instead of around ``init``."""
        s = self.settings
        chains = s.num_chains
        rng = numpy_rng(key)
        inverse_mass = self.laplace_inverse_mass(init, data)
        flat = self.layout.ravel(init)
        scale = np.sqrt(np.diag(inverse_mass) if inverse_mass.ndim == 2 else inverse_mass)
        noise = rng.standard_normal((chains, flat.shape[0]))
        # chains start around the point, init_jitter Laplace standard deviations apart
        inits = self.layout.unravel((flat[None] + s.init_jitter * scale[None] * noise).astype(np.float32))
        if chain_starts is not None:  # (the noise is drawn all the same: the rest of the run's randomness is unchanged)
            inits = {name: np.asarray(value, np.float32) for name, value in chain_starts.items()}
        step0 = np.ones((chains,), np.float32)
        reset_failed_solves()

        def restart(z, step, mass):
            """numpyro's state for each chain at ``z`` [chains, ...] (the potential and its
            gradient from the host's compiled gradient), laid out for the devices."""
            flat_z = self.layout.ravel(z, batch_ndim=1)
            energies, grads = self.values_and_grads(flat_z, data)
            chain_keys = rng.integers(0, 2**32, size=(chains, 2), dtype=np.uint32)
            state, averaging = self._init(chain_keys, flat_z, energies, grads, np.asarray(step, np.float32),
                                          np.asarray(mass, np.float32), data)
            return self._reshape_chains(state), self._reshape_chains(averaging)

        state, averaging = restart(inits, step0, inverse_mass)
        mark("map_laplace")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=s.num_warmup + s.num_draws, desc=desc, file=sys.stderr, unit="it", leave=False,
                       dynamic_ncols=True)

        def run_stage(state, averaging, n_iterations, adapting):
            collected = []
            done = 0
            while done < n_iterations:
                n_active = min(self.chunk, n_iterations - done)
                (state, averaging), out = self._chunk(
                    state, averaging, data, jnp.asarray(n_active, jnp.int32), jnp.asarray(adapting)
                )
                out = jax.tree_util.tree_map(
                    lambda a: np.asarray(a).reshape((chains,) + np.shape(a)[2:])[:, :n_active], out
                )
                collected.append(out)
                done += n_active
                if bar is not None:
                    bar.update(n_active)
            if not collected:
                return state, averaging, None
            joined = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *collected)
            return state, averaging, joined

        refine = sigma2 is not None
        num_draws, cut = s.num_draws, None
        cuts_draws = bool(s.saturated_draws) and s.saturated_draws < num_draws

        def saturated(stage_out) -> bool:
            return cuts_draws and stage_out is not None and _share_at_cap(stage_out, s.max_tree_depth) >= SATURATED_SHARE

        try:
            done = 0
            for kind, length in warmup_schedule(s.num_warmup):
                state, averaging, out = run_stage(state, averaging, length, True)
                last_stage, window_span, done = out, (done, done + length), done + length
                if kind == "slow" and length >= EARLY_SATURATION_WINDOW and saturated(out):
                    break  # saturated after two mass-matrix updates: the rest of the warmup would crawl too
                if kind == "slow" and out is not None:
                    window = self.layout.unravel(out[0])  # [chains, n, ...] per site
                    z_now = self.layout.unravel(np.reshape(np.asarray(state.z), (chains, self.layout.dim)))
                    if refine:
                        refine = False
                        log_scale = np.stack([np.asarray(window[f"{p.name}_scale"]).reshape(-1) for p in self.spaces])
                        if np.all(np.isfinite(log_scale)):
                            old, new = np.asarray(data.centring), centring_weights(sigma2, log_scale)
                            old_location = np.asarray(data.location, np.float64)
                            # centre each location's coordinate on its mean over the window
                            loc = [np.mean(v) for v in population_locations(self.spaces, window, old_location, xp=np)]
                            new_location = np.stack([loc, location_weights(sigma2, log_scale, self._loc_sd)], 1)
                            moves = dict(old_location=old_location, new_location=new_location)
                            window = recentre(self.spaces, window, old, new, xp=np, **moves)
                            z_now = recentre(self.spaces, z_now, old, new, xp=np, **moves)
                            data = data._replace(centring=np.asarray(new, np.float32),
                                                 location=np.asarray(new_location, np.float32))
                    draws = self.layout.ravel(window, batch_ndim=2).astype(np.float64)  # [chains, n, D]
                    if np.all(np.isfinite(draws)):
                        inverse_mass = pooled_inverse_mass(draws, s.dense_mass)
                    step_now = np.reshape(np.asarray(state.adapt_state.step_size), (chains,))
                    state, averaging = restart(z_now, step_now, inverse_mass)
            state = self._finish(state, averaging)
            mark("warmup")
            if saturated(last_stage):
                cut = {"from": num_draws, "to": s.saturated_draws,
                       "share_at_cap": round(_share_at_cap(last_stage, s.max_tree_depth), 3),
                       "max_tree_depth": s.max_tree_depth, "window": list(window_span),
                       "warmup_run": done, "warmup_asked": s.num_warmup}
                num_draws = s.saturated_draws
                if bar is not None:
                    bar.total = done + num_draws
                    bar.refresh()
            state, averaging, out, stopped, outputs = self._draws(state, averaging, data, num_draws, cut is None,
                                                                  run_stage)
            if stopped is not None and bar is not None:
                bar.total = bar.n
                bar.refresh()
        finally:
            if bar is not None:
                bar.close()
        failures = failed_solves()
        z, potential, energy, diverging, num_steps, accept, step_size = out
        num_steps = np.asarray(num_steps, np.int64)
        return data, {
            "z": self.layout.unravel(z),
            "potential_energy": potential,
            "energy": energy,
            "diverging": np.asarray(diverging, bool),
            "n_steps": num_steps,
            "tree_depth": np.ceil(np.log2(num_steps + 1)).astype(np.int64),
            "acceptance_rate": accept,
            "step_size": step_size,
            "failed_solves": int(failures),
            "max_tree_depth": s.max_tree_depth,
            "inverse_mass_matrix": np.asarray(inverse_mass),
            "draws_cut": cut,
            "draws_stopped": stopped,
            # (constrained, log_lik) of every draw when the sampling stage computed them
            # (see _draws): what outputs(..., replicate=False) would return
            "outputs": outputs,
        }

    def _draws(self, state, averaging, data: FitData, num_draws: int, may_stop: bool, run_stage):
        """The sampling stage: ``num_draws`` per chain, or (``min_draws`` set) fewer, in
        pieces, when the draws so far pass the gate with a margin. A stopped fit's draws are
        all that was sampled, so its stored diagnostics are those the stop was decided on;
        a fit that could not pass runs every draw. Returns (state, averaging, the stage's
        output, the stop's record or None, the outputs of every draw or None).

        The outputs (:meth:`outputs`' constrained values and pointwise log-likelihood,
        without replicates) are computed piece by piece for the stop's checks and handed
        back for the fit's file, so nothing is computed twice. Before the first piece the
        outputs kernel starts compiling and ArviZ (the checks' ESS) starts importing on
        threads, so neither waits for the first check."""
        from valuedyn.fitting.inference._diagnostics import stop_check_interval

        s = self.settings
        self._prepare_outputs(data)
        if not (may_stop and self.spaces and 0 < s.min_draws < num_draws):
            staged = run_stage(state, averaging, num_draws, False)
            mark("sampling")
            return *staged, None, None
        _import_in_background("arviz")
        pieces, piece_outputs, judged, done, piece = [], [], [], 0, s.min_draws
        while done < num_draws:
            n = min(piece, num_draws - done)
            state, averaging, out = run_stage(state, averaging, n, False)
            mark("sampling")
            pieces.append(out)
            done += n
            piece = stop_check_interval(s.min_draws)
            if done < num_draws:
                piece_outputs.append(self._piece_outputs(data, out))  # each piece's quantities once
                judged.append(self._diagnosed(piece_outputs[-1]))
                mark("outputs")
                passes = self._passes(pieces, judged)
                mark("diagnostics")
                if passes:
                    break
        if len(piece_outputs) < len(pieces):
            piece_outputs.append(self._piece_outputs(data, pieces[-1]))
            mark("outputs")
        joined = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *pieces)
        stopped = {"at": done, "of": num_draws, "min_draws": s.min_draws} if done < num_draws else None
        # [chains, n, ...] per piece -> [chains * draws, ...], the order of flat_draws
        outputs = jax.tree_util.tree_map(
            lambda *a: (lambda b: b.reshape((-1,) + b.shape[2:]))(np.concatenate(a, axis=1)), *piece_outputs)
        return state, averaging, joined, stopped, outputs

    def _piece_outputs(self, data: FitData, out) -> tuple[dict, np.ndarray]:
        """:meth:`outputs` (no replicates) of a piece of a sampling stage's output, each
        shaped [chains, n, ...]."""
        z_flat = np.asarray(out[0])
        chains, n = z_flat.shape[:2]
        constrained, log_lik, _ = self.outputs(data, self.layout.unravel(z_flat.reshape(chains * n, -1)), None,
                                               replicate=False)
        return jax.tree_util.tree_map(lambda a: np.reshape(np.asarray(a), (chains, n) + np.shape(a)[1:]),
                                      (constrained, log_lik))

    def _diagnosed(self, piece_outputs) -> dict:
        """The quantities the fit's diagnostics judge (:func:`~valuedyn.fitting.inference._model.diagnosed_sites`),
        name -> [chains, n, ...] float64, from :meth:`_piece_outputs`."""
        constrained = piece_outputs[0]
        names = [name for name in diagnosed_sites(self.spaces, self.observation, self.pooling) if name in constrained]
        return {name: np.asarray(constrained[name], np.float64) for name in names}

    @staticmethod
    def _passes(pieces: list, judged: list[dict]) -> bool:
        """Whether the draws so far (the stage's output ``pieces`` and their diagnosed
        quantities ``judged``) pass the gate with a margin (see
        :func:`~valuedyn.fitting.inference._diagnostics.passes_with_margin`): no divergence, no
        non-finite position, R-hat and both ESS over all pieces."""
        import arviz as az

        from valuedyn.fitting.inference._diagnostics import passes_with_margin

        if any(np.asarray(out[3]).any() or not np.all(np.isfinite(np.asarray(out[0]))) for out in pieces):
            return False
        joined = {name: np.concatenate([part[name] for part in judged], axis=1) for name in judged[0]}
        return passes_with_margin(az.convert_to_dataset(joined))

    def _prepare_outputs(self, data: FitData) -> None:
        """Start compiling the outputs kernel for ``data``'s shapes and :data:`OUTPUTS_BATCH`
        draws on a thread (see :meth:`_CompiledOnce.compile_in_background`)."""
        piece = {name: jax.ShapeDtypeStruct((OUTPUTS_BATCH,) + tuple(np.shape(v)), np.float32)
                 for name, v in self.median_init.items()}
        self._outputs.compile_in_background(piece, data, self.observation.fill(data.y, data.mask))

    def outputs(self, data: FitData, z: dict, key, batch: int = OUTPUTS_BATCH,
                replicate: bool = True) -> tuple[dict, np.ndarray, np.ndarray | None]:
        """Constrained parameters (+ deterministics), pointwise log-likelihood [n, S, U]
        (masked cells 0) and, with ``replicate``, posterior predictive ``y`` [n, S, U]
        (masked cells 0) for flat draws ``z`` [n, ...]."""
        observation = self.observation
        n = next(iter(z.values())).shape[0]
        y_filled = observation.fill(data.y, data.mask)
        parts = []
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            piece = {k: jnp.asarray(v[start:stop]) for k, v in z.items()}
            if stop - start < batch:  # pad to one compiled shape
                pad = batch - (stop - start)
                piece = {k: jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)]) for k, v in piece.items()}
            constrained, log_lik = self._outputs(piece, data, y_filled)
            keep = stop - start
            parts.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:keep], (constrained, log_lik)))
        constrained = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        log_lik = np.concatenate([p[1] for p in parts])
        y_rep = self.replicates(data, constrained, key) if replicate else None
        return constrained, log_lik, y_rep

    def replicates(self, data: FitData, constrained: dict, key) -> np.ndarray:
        """Posterior predictive ``y`` [n, S, U] (masked cells 0) of the draws' constrained
        values (:meth:`outputs`'), drawn on the host."""
        seed = int(numpy_rng(key).integers(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        return self.observation.replicate(  # (a deviation fit's: one step ahead, valuedyn.fitting.inference._deviation)
            rng, replicate_mean(self.observation, constrained, data, rng), np.asarray(data.exposure), np.asarray(data.mask),
            {name: constrained[name] for name, _ in self.observation.parameters},
        )


_CACHE: dict[tuple, CompiledPosterior] = {}


def compiled_posterior(key: tuple, build_model, example_data: FitData, settings: SamplerSettings, *, observation,
                       spaces=(), pooling: str = "none", count_failures: bool = True) -> CompiledPosterior:
    """Cached :class:`CompiledPosterior`; ``key`` names the model structure, shapes are added
    here. ``count_failures``: count failed solves among the NUTS proposals (ODE models)."""
    full_key = key + (tuple(example_data.y.shape), dataclasses.astuple(settings), len(jax.devices()), count_failures)
    if full_key not in _CACHE:
        _CACHE[full_key] = CompiledPosterior(build_model(), example_data, settings, observation=observation,
                                             spaces=spaces, pooling=pooling, count_failures=count_failures)
    return _CACHE[full_key]
