"""Benchmark: valuedyn's sampler against numpyro's stock NUTS on the same numpyro model.

For each model (overshoot on the issue-12 core case, logistic_onset, and the ODE model
replicator_mutator), 4 seeds x 300 updates by default, the SAME numpyro model function
(``build_numpyro_model``, hierarchical pooling), the same data and the same chain / draw
counts are sampled by

- ``valuedyn``: :func:`valuedyn.fitting.infer` (Adam MAP start, centring weights chosen at
  the MAP and refined in warmup, Laplace mass matrix, chain-pooled dense adaptation);
- ``stock noncentred``: ``numpyro.infer.MCMC(NUTS(model, dense_mass=True))`` with numpyro's
  windowed adaptation and default initialisation, the hierarchy non-centred (the model's
  centring weights 0: numpyro's ``LocScaleReparam(centered=0)``);
- ``stock valuedyn-centring``: the same stock MCMC, in the coordinates valuedyn chose at
  the MAP (per-parameter-and-seed centring weights, ``LocScaleReparam(centered=w)`` for
  those weights, and the population locations' frame).

Each (model, sampler) runs in a child process under a wall-clock limit (``--timeout``),
twice: cold (with compilation) and warm (a second run of the same shapes). Reported: wall
time cold and warm, minimum bulk ESS over every diagnosed parameter (per-seed, population
loc and scale, observation parameters), ESS/s (warm and cold), divergences.
Chains run on ``--chains`` JAX CPU devices on both sides (numpyro: ``chain_method=
"parallel"``; the ODE model too since its solve is a ``lax.scan``, which pmap takes).

Run: ``python benchmarks/bench_fit.py`` (defaults: the issue's sizes; ``--quick`` for a
smoke run; ``--models overshoot`` to pick).

Measured (issue 12), 2 idle cores, ``--models overshoot logistic_onset --warmup 500
--draws 500 --timeout 400`` (4 chains, 4 seeds x 300 updates), 2026-12-01::

    model               sampler                     cold s  warm s  min ESS ESS/s cold ESS/s warm  R-hat   div  depth
    overshoot           valuedyn                      62.6    12.2      556       8.87      45.39  1.007     0      0
    overshoot           stock noncentred            no result in 400 s
    overshoot           stock valuedyn-centring      175.5   131.6      633       3.60       4.81  1.006     1      3
    logistic_onset      valuedyn                      24.3     3.0     1675      68.86     565.67  1.006     0      0
    logistic_onset      stock noncentred              79.6    74.7        7       0.09       0.09  1.609     0   1000
    logistic_onset      stock valuedyn-centring       68.6    61.9        6       0.09       0.10  1.743   500    439

So both hand-written pieces stay: the start and adaptation (MAP, Laplace mass matrix,
chain-pooled dense windows) give 9x the stock ESS/s on the same coordinates for overshoot
and converge where the stock adaptation does not (logistic_onset); the coordinates
(partial centring, location frame) finish where the non-centred stock run does not.
The ODE model (replicator_mutator), 2026-12-02, 2 idle cores, ``--models replicator_mutator
--warmup 200 --draws 200 --timeout 600``, the ODE solved by the RK4 grid (``Model.solve``)
on both sides::

    model               sampler                     cold s  warm s  min ESS ESS/s cold ESS/s warm  R-hat   div  depth
    replicator_mutator  valuedyn                     280.2       -      573       2.04          -  1.012     0      0
    replicator_mutator  stock noncentred            no result in 600 s
    replicator_mutator  stock valuedyn-centring     no result in 600 s

valuedyn's warm run (sampler seed 1) did not end within the 320 s the limit left it; rerun
alone with ``--samplers valuedyn --timeout 900`` (same day, same machine)::

    replicator_mutator  valuedyn                     248.9   343.6      674       2.71       1.96  1.015     0      0

(min ESS and R-hat are the warm run's; most of an ODE fit's time is sampling, so the second
run, another random stream, took longer than the first.) With
diffrax's adaptive solve in the potential (the release before), neither side finished its
cold fit in 540 s (one gradient at 4 x 300: 29 ms; on the grid 21 ms at 1024 steps, fewer
at the 512 used now). So for the ODE model too the hand-written start and adaptation stay:
numpyro's stock windowed adaptation did not produce 200 + 200 iterations in 600 s in either
coordinate system, where valuedyn's reached min bulk ESS 573 at R-hat 1.012 (just above the gate's 1.01 at
200 draws per chain) in 280 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    # model: (behaviour, observation)
    "overshoot": ("event:place_plant", "negbin"),
    "logistic_onset": ("unlock:place_table", "binomial"),
    "replicator_mutator": ("action:place_plant", "binomial"),
}
SAMPLERS = ("valuedyn", "stock noncentred", "stock valuedyn-centring")
#: both sides: ``valuedyn fit``'s default target when the table above was measured (0.97
#: since: at 0.95 the core case left one divergence in 4 of 5 sampler seeds)
TARGET_ACCEPT = 0.95


def make_data(model_name: str, n_seeds: int, n_updates: int, path: Path) -> None:
    import numpy as np

    from valuedyn.fitting.inference._simulate import simulate_trajectory, write_trajectory
    from valuedyn.models import get_model

    sys.path.insert(0, str(Path(__file__).parent))
    from core_case import core_case

    rng = np.random.default_rng(0)
    if model_name == "overshoot":
        dataset, _ = core_case(n_seeds, n_updates)
    else:
        truth = {
            "logistic_onset": {"t0": rng.uniform(0.3, 0.4, n_seeds), "k": rng.uniform(13, 17, n_seeds),
                               "floor": rng.uniform(0.04, 0.06, n_seeds), "ceiling": rng.uniform(0.55, 0.65, n_seeds)},
            "replicator_mutator": {"t0": rng.uniform(0.2, 0.3, n_seeds), "delta": rng.uniform(15, 25, n_seeds),
                                   "mu": rng.uniform(0.2, 0.4, n_seeds), "p0": rng.uniform(0.03, 0.06, n_seeds)},
        }[model_name]
        dataset = simulate_trajectory(get_model(model_name), truth, behaviour=MODELS[model_name][0],
                                      n_updates=n_updates, episodes_per_update=40.0, seed=1)
    write_trajectory(dataset, path)


def run_one(args) -> dict:
    """One (model, sampler), cold then warm, in this process; returns the row."""
    import jax

    jax.config.update("jax_num_cpu_devices", args.chains)
    import arviz as az
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    from valuedyn.data import open_trajectory
    from valuedyn.fitting.inference._fit import compile_for, infer
    from valuedyn.fitting.inference._model import fit_data, observable_for, parameter_spaces
    from valuedyn.fitting.inference._nuts import SamplerSettings
    from valuedyn.fitting.inference._observation import OBSERVATION_MODELS
    from valuedyn.fitting.inference._select import select_behaviour
    from valuedyn.models import get_model

    model = get_model(args.one_model)
    behaviour, observation_name = MODELS[args.one_model]
    observation = OBSERVATION_MODELS[observation_name]
    selection = select_behaviour(open_trajectory(args.data), behaviour)
    settings = SamplerSettings(num_warmup=args.warmup, num_draws=args.draws, num_chains=args.chains,
                               max_tree_depth=10, target_accept=TARGET_ACCEPT, dense_mass=True)  # as the stock run's
    names = [s.name for s in parameter_spaces(model)]
    diagnosed = names + [n + s for n in names for s in ("_loc", "_scale")] + [n for n, _ in observation.parameters]
    row = {"model": args.one_model, "sampler": args.one_sampler}

    if args.one_sampler == "valuedyn":
        walls = []
        for seed in (0, 1):
            start = time.perf_counter()
            inference = infer(model, observation, "hierarchical", selection, settings, seed=seed, progress=False)
            walls.append(time.perf_counter() - start)
            diagnostics = inference.diagnostics
            row.update(cold_s=walls[0], warm_s=walls[1] if len(walls) > 1 else None,
                       ess_bulk_min=diagnostics["ess_bulk_min"], rhat_max=diagnostics["rhat_max"],
                       divergences=diagnostics["divergences"], treedepth_hits=diagnostics["treedepth_hits"])
            if len(walls) == 1:  # the cold run's row, in case the warm one does not finish in time
                print("ROW " + json.dumps(row), flush=True)
        return row

    data = fit_data(selection, len(names))
    if args.one_sampler == "stock valuedyn-centring":
        compiled = compile_for(model, observation, "hierarchical", observable_for(model, selection.kind), data, settings)
        data, _, _, _ = compiled.prepare(data, jax.random.PRNGKey(0))  # valuedyn's MAP-chosen coordinates, as data
    numpyro_model = compile_for(model, observation, "hierarchical", observable_for(model, selection.kind), data,
                                settings).model
    mcmc = MCMC(NUTS(numpyro_model, dense_mass=True, target_accept_prob=TARGET_ACCEPT, max_tree_depth=10),
                num_warmup=args.warmup, num_samples=args.draws, num_chains=args.chains, chain_method="parallel",
                progress_bar=False)
    walls = []
    for seed in (0, 1):
        start = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(seed), data, extra_fields=("diverging", "num_steps"))
        samples = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(samples)
        walls.append(time.perf_counter() - start)
        posterior = {n: np.asarray(samples[n]) for n in diagnosed if n in samples}
        ess = az.ess(az.from_dict(posterior=posterior), method="bulk")
        rhat = az.rhat(az.from_dict(posterior=posterior))
        extra = mcmc.get_extra_fields()
        row.update(cold_s=walls[0], warm_s=walls[1] if len(walls) > 1 else None,
                   ess_bulk_min=float(min(float(np.nanmin(ess[v].values)) for v in ess.data_vars)),
                   rhat_max=float(max(float(np.nanmax(rhat[v].values)) for v in rhat.data_vars)),
                   divergences=int(np.asarray(extra["diverging"]).sum()),
                   treedepth_hits=int((np.asarray(extra["num_steps"]) >= 2**10 - 1).sum()))
        if len(walls) == 1:  # the cold run's row, in case the warm one does not finish in time
            print("ROW " + json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--timeout", type=float, default=1800.0, help="wall-clock limit of one (model, sampler)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--one-model", help=argparse.SUPPRESS)
    parser.add_argument("--one-sampler", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.warmup = args.draws = 60
        args.updates = 60
    if args.one_model:
        print("ROW " + json.dumps(run_one(args)))
        return

    folder = Path(tempfile.mkdtemp(prefix="bench_fit_"))
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()}, {args.chains} chains x "
          f"({args.warmup} warmup + {args.draws} draws), {args.seeds} seeds x {args.updates} updates")
    rows = []
    for model_name in args.models:
        path = folder / f"{model_name}.nc"
        make_data(model_name, args.seeds, args.updates, path)
        for sampler in args.samplers:
            command = [sys.executable, __file__, "--one-model", model_name, "--one-sampler", sampler,
                       "--data", str(path), "--chains", str(args.chains), "--warmup", str(args.warmup),
                       "--draws", str(args.draws)]
            start = time.perf_counter()
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
                lines = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
                row = json.loads(lines[-1][4:]) if lines else {
                    "model": model_name, "sampler": sampler, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
            except subprocess.TimeoutExpired as timeout:
                partial = [line for line in (timeout.stdout or b"").decode(errors="replace").splitlines()
                           if line.startswith("ROW ")]
                row = json.loads(partial[-1][4:]) if partial else {"model": model_name, "sampler": sampler}
                row["error"] = f"no {'warm ' if partial else ''}result in {args.timeout:.0f} s"
            row["load_after"] = os.getloadavg()[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    header = f"{'model':<20}{'sampler':<26}{'cold s':>8}{'warm s':>8}{'min ESS':>9}{'ESS/s cold':>11}{'ESS/s warm':>11}{'R-hat':>7}{'div':>6}{'depth':>7}"
    print(header)
    for row in rows:
        if "cold_s" not in row:
            print(f"{row['model']:<20}{row['sampler']:<26}  {row['error'][:90]}")
            continue
        ess, warm = row["ess_bulk_min"], row.get("warm_s")
        warm_text = f"{warm:>8.1f}" if warm else f"{'-':>8}"
        rate_text = f"{ess / warm:>11.2f}" if warm else f"{'-':>11}"
        print(f"{row['model']:<20}{row['sampler']:<26}{row['cold_s']:>8.1f}{warm_text}{ess:>9.0f}"
              f"{ess / row['cold_s']:>11.2f}{rate_text}{row['rhat_max']:>7.3f}{row['divergences']:>6d}"
              f"{row['treedepth_hits']:>7d}" + (f"  ({row['error']})" if "error" in row else ""))


if __name__ == "__main__":
    main()
