"""Cost of one solve plus gradient per registered model: closed form versus diffrax.

For every model, jit-compiles value_and_grad of the sum of its observables on a grid of
``--points`` times (float32, typical parameters = prior means), then times ``--repeats``
calls after warm-up and prints the median per call. Closed-form models are timed on both
paths (closed form and the diffrax Tsit5 solve of the same vector field) and the ratio
diffrax/closed is printed; diffrax-only models show their diffrax time. Compile times are
printed too, since they dominate short fits on a CPU. Everything is measured in one run.

    python benchmarks/bench_models.py [--repeats 200] [--points 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from valuedyn.models import get_model, list_models


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


def _solve_and_grad(model, method: str, t):
    solve = {"closed": model.solve_closed, "ode": model.solve_ode}[method]

    def loss(p):
        obs, _ = solve(p, t)
        return sum(jnp.sum(v) for v in obs.values())

    return jax.value_and_grad(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--points", type=int, default=100)
    args = parser.parse_args()
    t = jnp.linspace(0.0, 1.0, args.points)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {args.points} time points; "
          f"median of {args.repeats} calls of jit(value_and_grad(sum of observables))")
    header = f"{'model':<26}{'closed us':>11}{'diffrax us':>12}{'ratio':>8}{'compile closed s':>18}{'compile diffrax s':>19}"
    print(header)
    print("-" * len(header))
    for name in list_models():
        model = get_model(name)
        params = {k: jnp.float32(v) for k, v in model.typical_params().items()}
        c_ode, t_ode = _timed(_solve_and_grad(model, "ode", t), params, args.repeats)
        if model.closed_form:
            c_closed, t_closed = _timed(_solve_and_grad(model, "closed", t), params, args.repeats)
            print(f"{name:<26}{t_closed * 1e6:>11.1f}{t_ode * 1e6:>12.1f}{t_ode / t_closed:>8.1f}"
                  f"{c_closed:>18.2f}{c_ode:>19.2f}", flush=True)
        else:
            print(f"{name:<26}{'-':>11}{t_ode * 1e6:>12.1f}{'-':>8}{'-':>18}{c_ode:>19.2f}", flush=True)


if __name__ == "__main__":
    main()
