"""Training throughput with behavioural recording on vs off, measured side by side.

    python benchmarks/bench_train.py --env Craftax-Classic-Symbolic-v1 --num-envs 1024 --num-steps 64 --seeds 1

Both programs are the same PPO configuration; "off" skips the event counting and the
per-episode accumulators (the reward is computed either way). Compile time is excluded:
both programs are compiled and run once as a warm-up chunk, then timed interleaved
(off, on, off, on, ...) over --chunks chunks each of --chunk-updates updates with
block_until_ready; the median chunk gives the rate. Prints env steps/s (all seeds) for
both and the ratio. Issue 2's goal on a GPU: recording costs < 10 %, and with recording
on at least the public baseline (H200, 1024 envs x 64 steps: 264,663 steps/s Classic,
141,485 Craftax).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Craftax-Classic-Symbolic-v1", help="environment name")
    parser.add_argument("--num-envs", type=int, default=1024, help="environments per seed")
    parser.add_argument("--num-steps", type=int, default=64, help="steps per update")
    parser.add_argument("--seeds", type=int, default=1, help="vmapped seeds")
    parser.add_argument("--layer-size", type=int, default=512, help="MLP width")
    parser.add_argument("--chunk-updates", type=int, default=2, help="updates per timed chunk")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunks per setting")
    parser.add_argument("--modes", default="on,off", help="comma list of recording modes to time (on, off)")
    args = parser.parse_args(argv)

    import jax

    from valuedyn.data._train import make_train, seed_keys
    from valuedyn.data._train_cli import TrainConfig, compiler_options

    config = TrainConfig(
        env=args.env,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        seeds=args.seeds,
        layer_size=args.layer_size,
        total_steps=args.num_envs * args.num_steps * args.chunk_updates * (args.chunks + 1),
        num_minibatches=min(8, args.num_envs),
    )
    device = jax.devices()[0]
    print(f"device: {device.platform} {getattr(device, 'device_kind', '')} x{jax.device_count()}; jax {jax.__version__}")
    print(f"config: {args.env}, {args.seeds} seeds x {args.num_envs} envs x {args.num_steps} steps, layer {args.layer_size}")
    # compile both programs first, then time them interleaved (off, on, off, on, ...) so
    # that clock drift and memory left by the first program do not favour either mode
    modes = args.modes.split(",")
    programs, runners, chunks = {}, {}, {}
    for mode in modes:
        program = make_train(config, record=(mode == "on"))
        keys = seed_keys(config)
        runner = jax.jit(program.init).lower(keys).compile(compiler_options())(keys)
        started = time.perf_counter()
        chunks[mode] = jax.jit(program.chunk, static_argnums=1).lower(runner, args.chunk_updates).compile(compiler_options())
        print(f"recording {mode:>3}: compile {time.perf_counter() - started:.1f} s")
        runner, metrics = chunks[mode](runner)  # warm-up
        runners[mode] = jax.block_until_ready(runner)
        programs[mode] = program
    times = {mode: [] for mode in modes}
    for _ in range(args.chunks):
        for mode in modes:
            started = time.perf_counter()
            runners[mode], metrics = chunks[mode](runners[mode])
            jax.block_until_ready((runners[mode], metrics))
            times[mode].append(time.perf_counter() - started)
    results = {}
    for mode in modes:
        steps = args.chunk_updates * programs[mode].steps_per_update * args.seeds
        median = sorted(times[mode])[len(times[mode]) // 2]
        results[mode] = steps / median
        spread = f"{steps / max(times[mode]):,.0f} .. {steps / min(times[mode]):,.0f}"
        print(f"recording {mode:>3}: {results[mode]:12,.0f} steps/s (median of {args.chunks} chunks of {steps} steps; range {spread})")
    if "on" in results and "off" in results:
        print(f"ratio on/off: {results['on'] / results['off']:.3f}  (recording cost {100 * (1 - results['on'] / results['off']):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
