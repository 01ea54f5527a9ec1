"""Benchmark: valuedyn's fitting path vs a plain numpyro ODE fit, same data, one run.

Data: the overshoot model, 4 seeds x 500 updates, unlock counts (Binomial out of the
finished episodes), simulated with valuedyn.fitting's simulator.

- valuedyn: ``fit_trajectory`` (file in, file out, posterior predictive and diagnostics
  included): closed-form solve from the model, hierarchical parameters in partially
  centred coordinates chosen at the MAP and refined in warmup, Adam MAP start + Laplace
  mass matrix, chain-pooled dense mass adaptation, NUTS chains split over the CPU devices,
  data as arguments of the compiled sampler.
  Timed twice: cold (includes compilation) and warm (a second fit of new data of the
  same shape reuses the compiled sampler).
- reference: written the way numpyro's own ODE example (Lotka-Volterra) does it:
  ``jax.experimental.ode.odeint`` of the overshoot ODE (the discovery at t0 switches the
  vector field on), the same hierarchical priors but *centred*, ``NUTS(dense_mass=True)``
  with the default initialisation (init_to_uniform), ``MCMC(chain_method="parallel")``.
  Because it is slow, it runs fewer iterations (``--ref-warmup`` / ``--ref-draws``);
  ESS per second is a rate, so the comparison stays meaningful (if anything, the short
  run flatters the reference's wall time less than its adaptation).

Both sides use the same number of host CPU devices (one per chain, as numpyro's example
sets). Effective samples per second = minimum bulk ESS over the per-seed model
parameters / wall-clock seconds of the whole fit (compilation included unless marked
warm). Run: ``python benchmarks/bench_fit.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--ref-warmup", type=int, default=150)
    parser.add_argument("--ref-draws", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--ref-timeout", type=float, default=900.0,
                        help="seconds the reference may run; past it the ratio is reported as a bound")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--parameterization", default="auto", choices=("auto", "centred", "noncentred"),
                        help="coordinates of valuedyn's hierarchical pooling")
    args = parser.parse_args()
    if args.quick:
        args.warmup = args.draws = 100
        args.ref_warmup = args.ref_draws = 20
        args.updates = 60

    import jax

    jax.config.update("jax_num_cpu_devices", args.chains)  # as numpyro's example: one device per chain
    import arviz as az
    import numpy as np
    import numpyro

    from valuedyn.fitting import FitConfig, fit_trajectory, load_fit
    from valuedyn.fitting._simulate import simulate_trajectory, write_trajectory
    from valuedyn.models import get_model

    model = get_model("overshoot")
    rng = np.random.default_rng(0)
    s = args.seeds
    truth = {
        "t0": rng.uniform(0.08, 0.15, s),
        "alpha": rng.uniform(30, 45, s),
        "ratio": rng.uniform(0.08, 0.14, s),
        "floor": rng.uniform(0.02, 0.06, s),
        "optimum": rng.uniform(0.2, 0.3, s),
        "excess": rng.uniform(0.35, 0.5, s),
    }
    names = list(truth)
    print(f"cpu cores: {os.cpu_count()}, jax devices: {jax.device_count()}, jax {jax.__version__}, numpyro {numpyro.__version__}")
    print(f"data: overshoot, {s} seeds x {args.updates} updates, unlock counts (Binomial); "
          f"valuedyn hierarchical pooling, {args.parameterization} coordinates")
    folder = Path(tempfile.mkdtemp(prefix="bench_fit_"))
    paths = []
    for index in range(2):
        dataset = simulate_trajectory(model, truth, behaviour="unlock:place_table", n_updates=args.updates,
                                      episodes_per_update=100.0, seed=10 + index)
        write_trajectory(dataset, folder / f"traj{index}.nc")
        paths.append(folder / f"traj{index}.nc")

    def min_ess(posterior_dict):
        idata = az.from_dict(posterior=posterior_dict)
        ess = az.ess(idata, method="bulk")
        return float(min(float(np.min(ess[v].values)) for v in ess.data_vars))

    results = {}
    # ---------------------------------------------------------------- valuedyn
    for label, path in (("valuedyn (cold: with compilation)", paths[0]), ("valuedyn (warm: compiled sampler reused)", paths[1])):
        config = FitConfig(trajectory=str(path), model="overshoot", behaviour="unlock:place_table",
                           out=str(path.with_suffix(".fit.nc")), chains=args.chains, warmup=args.warmup,
                           draws=args.draws, seed=1, force=True, progress=True,
                           parameterization=args.parameterization)
        start = time.perf_counter()
        out = fit_trajectory(config)
        wall = time.perf_counter() - start
        idata = load_fit(out)
        ess = min_ess({n: idata.posterior[n].values for n in names})
        results[label] = (wall, ess, args.chains * args.draws)

    # ---------------------------------------------------------------- reference
    reference_label = "reference (odeint, centred, default init)"
    reference_bound = None
    if not args.skip_reference:
        # in a child process with a wall-clock limit: the reference can take hours here
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        channel = context.Queue()
        child = context.Process(target=reference_fit, args=(str(paths[0]), args.chains, args.ref_warmup, args.ref_draws,
                                                            names, channel))
        start = time.perf_counter()
        child.start()
        child.join(args.ref_timeout)
        wall = time.perf_counter() - start
        if child.is_alive():
            child.terminate()
            child.join()
            # it produced no draws in the limit: its ESS per second is below (all its draws) / limit
            reference_bound = args.chains * args.ref_draws / wall
            print(f"reference: {args.ref_warmup}+{args.ref_draws} iterations x {args.chains} chains did not finish in "
                  f"{wall:.0f} s; its ESS/s is below {reference_bound:.3f} (every draw counted as independent)")
        else:
            ref_wall, ref_ess = channel.get()
            results[reference_label] = (ref_wall, ref_ess, args.chains * args.ref_draws)

    print()
    print(f"{'path':<44}{'wall s':>10}{'draws':>8}{'min ESS':>10}{'ESS/s':>10}")
    for label, (wall, ess, draws) in results.items():
        print(f"{label:<44}{wall:>10.1f}{draws:>8d}{ess:>10.0f}{ess / wall:>10.2f}")
    ref = results.get(reference_label)
    if ref:
        for label in list(results)[:2]:
            wall, ess, _ = results[label]
            print(f"ratio {label} / reference ESS/s: {(ess / wall) / (ref[1] / ref[0]):.1f}x")
    elif reference_bound:
        for label in list(results)[:2]:
            wall, ess, _ = results[label]
            print(f"ratio {label} / reference ESS/s: more than {(ess / wall) / reference_bound:.0f}x (reference bound)")
    cold = results["valuedyn (cold: with compilation)"][0]
    warm = results["valuedyn (warm: compiled sampler reused)"][0]
    print(f"{args.chains}-chain fit of {s} seeds x {args.updates} updates: {cold:.1f} s cold, {warm:.1f} s warm (goal < 60 s)")
    sys.stdout.flush()


def reference_fit(path: str, chains: int, warmup: int, draws: int, names: list[str], channel) -> None:
    """The reference, written as numpyro's ODE example (Lotka-Volterra) does it:
    ``jax.experimental.ode.odeint`` of the overshoot ODE (the discovery at t0 switches the
    vector field on), the same priors as valuedyn's hierarchy but *centred*,
    ``NUTS(dense_mass=True)`` with the default initialisation, ``chain_method="parallel"``.
    Puts (wall seconds, minimum bulk ESS over the per-seed parameters) on ``channel``."""
    import math

    import jax

    jax.config.update("jax_num_cpu_devices", chains)
    import arviz as az
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    from jax.experimental.ode import odeint
    from numpyro.distributions.transforms import biject_to
    from numpyro.infer import MCMC, NUTS

    from valuedyn.data import open_trajectory
    from valuedyn.fitting._model import SCALE_PRIOR_MEAN, SCALE_PRIOR_SD, parameter_spaces
    from valuedyn.fitting._select import select_behaviour
    from valuedyn.models import get_model

    selection = select_behaviour(open_trajectory(path), "unlock:place_table")
    spaces = parameter_spaces(get_model("overshoot"))
    tau = jnp.asarray(selection.tau, jnp.float32)
    y = jnp.asarray(selection.y, jnp.float32)
    n = jnp.asarray(selection.exposure, jnp.float32)
    mask = jnp.asarray(selection.mask)

    def field(state, t, theta):
        t0, alpha, ratio, floor, optimum, excess = theta
        level, target = state[0], state[1]
        on = (t > t0).astype(state.dtype)
        return jnp.stack([-alpha * (level - target), -ratio * alpha * (target - optimum)]) * on

    def reference_model(tau, n, y, mask):
        thetas = []
        for space in spaces:  # centred hierarchy in the same unconstrained space, same priors
            loc = numpyro.sample(f"{space.name}_loc", dist.Normal(space.loc_mean, space.loc_sd))
            scale = numpyro.sample(f"{space.name}_scale",
                                   dist.LogNormal(math.log(SCALE_PRIOR_MEAN * space.loc_sd), SCALE_PRIOR_SD))
            with numpyro.plate("seed", y.shape[0]):
                raw = numpyro.sample(f"{space.name}_raw", dist.Normal(loc, scale))
            thetas.append(numpyro.deterministic(space.name, biject_to(space.prior.support)(raw)))
        theta = jnp.stack(thetas, axis=-1)  # [S, 6]

        def solve(th):
            init = jnp.stack([th[3], th[4] + th[5]])
            return odeint(field, init, tau, th, rtol=1e-6, atol=1e-5, mxstep=1000)[:, 0]

        level = jax.vmap(solve)(theta)
        probs = jnp.clip(level, 1e-6, 1 - 1e-6)
        with numpyro.handlers.mask(mask=mask):
            numpyro.sample("y", dist.Binomial(total_count=n, probs=probs), obs=y)

    kernel = NUTS(reference_model, dense_mass=True)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="parallel",
                progress_bar=True)
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(1), tau, n, y, mask)
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    wall = time.perf_counter() - start
    ess = az.ess(az.from_dict(posterior={k: np.asarray(samples[k]) for k in names}), method="bulk")
    channel.put((wall, float(min(float(np.min(ess[v].values)) for v in ess.data_vars))))


if __name__ == "__main__":
    main()
