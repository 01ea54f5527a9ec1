"""Cost and accuracy of one solve plus gradient per registered model: closed form, the RK4
grid and diffrax's adaptive solve.

For every model, jit-compiles value_and_grad of a weighted sum of its observables on a grid
of ``--points`` times (float32, typical parameters = prior means), times ``--repeats`` calls
after warm-up and prints the median per call and the compile time, for each way it can be
solved: the closed form (where there is one), the fixed RK4 grid (``Model.solve`` for models
without a closed form) and diffrax's adaptive Tsit5 (``Model.solve_ode``). Accuracy: the
relative error (Euclidean norms over the parameters) of each float32 gradient against a
float64 reference (the closed form, else diffrax at rtol 1e-10). Everything is measured in
one run, side by side.

    python benchmarks/bench_models.py [--repeats 200] [--points 100]

Measured 2026-12-02, 2 idle cores, ``--repeats 50`` (us per call, compile s, gradient error)::

    model                     grid                      diffrax (ode)             closed
    diversify_then_minimize   2419  1.27  1.4e-04       3667  5.02  7.4e-05       -
    replicator_mutator        2476  1.86  6.7e-04       4570  6.73  4.7e-05       -
    logistic_onset             233  0.63  2.6e-07       1487  3.45  7.8e-05       59  0.20  1.0e-07
    overshoot                  755  1.26  2.4e-05       6926  6.60  2.9e-04       44  0.50  2.9e-07
    stagewise                  708  0.69  1.9e-05       3732  4.40  3.3e-02      111  0.21  1.2e-07
    stagewise3                3037  1.19  3.0e-05       4477  4.52  5.6e-02      116  0.31  1.6e-07

One solve of 100 points: the grid 1.5-9x faster than diffrax, compiled 3-5x faster, its
float32 gradient within 7e-4 (diffrax's: up to 6e-2 where a closed form has sharp steps).
In a fit the gap is wider: replicator_mutator's binned level at 300 updates (1200 quadrature
times), 32 solves, took 21 ms per gradient on a 1024-step grid against 76 ms, and over 32
prior draws its float32 gradient was within 4e-4 of float64 against 2-7 % for diffrax.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from valuedyn.models import get_model, list_models

try:  # jax >= 0.8 exposes the context manager at the top level
    from jax import enable_x64
except ImportError:  # pragma: no cover - older jax
    from jax.experimental import enable_x64


def _timed(fn, params, repeats: int) -> tuple[float, float]:
    """(compile seconds, median seconds per call)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(params).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times)


def _solve_and_grad(model, method: str, t, weights, **options):
    def loss(p):
        obs, _ = model._solve_with(p, t, method, **options)
        return sum(jnp.sum(v * weights) for v in obs.values())

    return jax.value_and_grad(loss)


def _gradient_error(model, method: str, t, weights, params, reference: dict) -> float:
    _, grad = jax.jit(_solve_and_grad(model, method, t, weights))(params)
    difference = np.array([float(grad[k]) - reference[k] for k in reference])
    return float(np.linalg.norm(difference) / np.linalg.norm(list(reference.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--points", type=int, default=100)
    args = parser.parse_args()
    t = jnp.linspace(0.0, 1.0, args.points)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=args.points), jnp.float32)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {args.points} time points; "
          f"median of {args.repeats} calls of jit(value_and_grad(weighted sum of observables)); "
          "gradient error: |float32 - float64 reference| / |reference|, over all parameters")
    header = f"{'model':<26}{'solver':<9}{'us per call':>12}{'compile s':>11}{'grad error':>12}"
    print(header)
    print("-" * len(header))
    for name in list_models():
        model = get_model(name)
        params = {k: jnp.float32(v) for k, v in model.typical_params().items()}
        methods = (["closed"] if model.closed_form else []) + ["grid", "ode"]
        with enable_x64():
            p64 = {k: jnp.float64(v) for k, v in params.items()}
            t64, w64 = t.astype(jnp.float64), weights.astype(jnp.float64)
            exact = ("closed", {}) if model.closed_form else ("ode", {"rtol": 1e-10, "atol": 1e-14, "max_steps": 100000})
            _, grad = jax.jit(_solve_and_grad(model, exact[0], t64, w64, **exact[1]))(p64)
            reference = {k: float(v) for k, v in grad.items()}
        for method in methods:
            compile_s, per_call = _timed(_solve_and_grad(model, method, t, weights), params, args.repeats)
            error = _gradient_error(model, method, t, weights, params, reference)
            print(f"{name:<26}{method:<9}{per_call * 1e6:>12.1f}{compile_s:>11.2f}{error:>12.1e}", flush=True)


if __name__ == "__main__":
    main()
