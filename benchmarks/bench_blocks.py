"""Benchmark: fit time against the number of blocks a long run is aggregated into (``--blocks``).

A simulated long run (logistic_onset, unlocks, ``--updates`` updates per seed, the onset
early in the window as in a long real run) is fitted unaggregated and in blocks
(:func:`valuedyn.fitting.inference._select.aggregate_blocks`), each fit twice: cold (with
compilation; a new number of cells is a new shape) and warm (the same shapes again, another
sampler seed). Printed per row: cells per seed, the blocks' widths, wall seconds cold and
warm, the largest R-hat, the smallest bulk ESS, and the posterior mean and sd of each
seed's onset t0 and rate k, with the truth, so the aggregated fits can be read against
the unaggregated one in the same run.

Run: ``python benchmarks/bench_blocks.py`` (``--blocks none 128 64 32 16``, ``--updates 726``,
``--seeds 2``, ``--chains 2 --warmup 300 --draws 300``).

Measured 2026-12-07 on the 2-core CPU while a training campaign and other fits ran (load
average 6-16, so the times are rough), defaults (2 seeds x 726 updates, 2 chains x (300 + 300),
binomial, blocks with 2 quadrature nodes then)::

     blocks  cells    widths  cold s  warm s  R-hat    ESS  t0 mean (sd) per seed / k mean (sd) per seed
       none    726         1    98.4    39.7  1.010    227  t0 0.0285(0.0019) 0.0497(0.0014) / k 65.08(5.59) 76.67(7.44)
        128    128      1-17   384.3    58.2  1.009    225  t0 0.0284(0.0019) 0.0497(0.0015) / k 65.19(5.27) 76.74(7.26)
         64     64      1-43   229.1    40.9  1.015    254  t0 0.0285(0.0019) 0.0497(0.0014) / k 64.69(5.41) 75.97(7.43)

(truth t0 0.03, 0.05; k 60, 80). The posteriors agree to a tenth of their sd; with the
Binomial the whole fit is not faster in blocks, because its likelihood is cheap and a
gradient's cost is mostly fixed overhead. The cost is in the likelihood of the default
observation model of unlocks, the beta-binomial (log-gamma per cell): one gradient of the
log density (hierarchical, 2 seeds x 726 updates, same load) took 4.0 ms unaggregated,
1.6 ms in 128 blocks, 0.53 ms in 64 and 0.17 ms in 32 (Binomial: 0.26, 0.14, 0.31, 0.92 ms:
noise around a fixed cost). 64 blocks (BLOCKS_AUTO_CAP) make the beta-binomial gradient
7.5x cheaper while the widest block of a 726-update run stays 43 updates (6 % of the run;
19 of a 400-update run) and the first ones 1 update wide; 32 would be 3x cheaper again but
its last blocks are 100 updates wide.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", nargs="+", default=["none", "128", "64", "32", "16"])
    parser.add_argument("--updates", type=int, default=726)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--episodes", type=float, default=40.0, help="finished episodes per update")
    parser.add_argument("--no-warm", action="store_true", help="cold fits only")
    args = parser.parse_args()

    from valuedyn.fitting.pipeline._jax_setup import prepare_jax

    prepare_jax(args.chains)
    import numpy as np

    from valuedyn.fitting.inference._fit import infer
    from valuedyn.fitting.inference._nuts import SamplerSettings
    from valuedyn.fitting.inference._observation import observation_for
    from valuedyn.fitting.inference._select import aggregate_blocks, select_behaviour
    from valuedyn.fitting.inference._simulate import simulate_trajectory
    from valuedyn.models import get_model

    model = get_model("logistic_onset")
    n = args.seeds
    truth = {"t0": np.linspace(0.03, 0.05, n), "k": np.linspace(60.0, 80.0, n), "floor": np.full(n, 0.05),
             "ceiling": np.linspace(0.8, 0.7, n)}
    dataset = simulate_trajectory(model, truth, behaviour="unlock:place_table", n_updates=args.updates,
                                  episodes_per_update=args.episodes, masked_updates=2, observation="binomial", seed=3)
    selection = select_behaviour(dataset, "unlock:place_table")
    observation = observation_for(selection.family, "binomial")
    settings = SamplerSettings(num_warmup=args.warmup, num_draws=args.draws, num_chains=args.chains, max_tree_depth=10,
                               target_accept=0.97, dense_mass=True)
    print(f"truth: " + ", ".join(f"{k} {np.round(v, 3).tolist()}" for k, v in truth.items()))
    print(f"{'blocks':>7} {'cells':>6} {'widths':>9} {'cold s':>7} {'warm s':>7} {'R-hat':>6} {'ESS':>6}  "
          "t0 mean (sd) per seed / k mean (sd) per seed")
    for choice in args.blocks:
        cut = aggregate_blocks(selection, choice)
        widths = f"{int(cut.widths.min())}-{int(cut.widths.max())}" if cut.aggregated else "1"
        times, last = [], None
        for run in range(1 if args.no_warm else 2):
            start = time.perf_counter()
            last = infer(model, observation, "hierarchical", cut, settings, seed=run, progress=False)
            times.append(time.perf_counter() - start)
        post = last.idata.posterior
        t0 = np.asarray(post["t0"].values).reshape(-1, n)
        k = np.asarray(post["k"].values).reshape(-1, n)
        fmt = lambda x: " ".join(f"{m:.4f}({s:.4f})" for m, s in zip(x.mean(0), x.std(0)))  # noqa: E731
        warm = f"{times[1]:7.1f}" if len(times) > 1 else f"{'-':>7}"
        print(f"{choice:>7} {cut.y.shape[1]:>6} {widths:>9} {times[0]:7.1f} {warm} {last.diagnostics['rhat_max']:6.3f} "
              f"{last.diagnostics['ess_bulk_min']:6.0f}  t0 {fmt(t0)} / k {fmt(k)}", flush=True)


if __name__ == "__main__":
    main()
