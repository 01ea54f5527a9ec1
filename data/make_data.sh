#!/usr/bin/env bash
# How the shipped trajectories in data/ were made: the exact commands, run on one GPU.
#
#   bash data/make_data.sh OUTDIR [STEP ...]      STEP: classic (default), bench, symbolic
#
# classic:  Craftax-Classic-Symbolic, default (public-baseline) PPO, 8 seeds x 10M steps
# bench:    benchmarks/bench_train.py, recording on vs off, 1024 envs x 64 steps
# symbolic: Craftax-Symbolic, 4 seeds
# Checkpoints go to $CKPT_ROOT (default /tmp/valuedyn-runs), not OUTDIR: they are large
# and not shipped. Sizes can be shrunk for a CPU dry run through the environment
# variables below; the defaults are what produced the shipped files. A run stopped by
# its time budget still leaves a valid trajectory (the file is rewritten atomically
# after every chunk of updates).
set -euo pipefail
out=${1:?usage: make_data.sh OUTDIR [classic|bench|symbolic ...]}
shift
steps=${*:-classic}
mkdir -p "$out"
ckpt_root=${CKPT_ROOT:-/tmp/valuedyn-runs}
mkdir -p "$ckpt_root"
num_envs=${NUM_ENVS:-1024}
num_steps=${NUM_STEPS:-64}
layer=${LAYER_SIZE:-512}
budget=${BUDGET_S:-540}

train() {  # name env seeds total_steps
    echo "== $2: $3 seeds x $4 steps"
    timeout "$budget" valuedyn train --env "$2" --seeds "$3" --total-steps "$4" \
        --num-envs "$num_envs" --num-steps "$num_steps" --layer-size "$layer" \
        --seed 0 --chunk-updates 8 --no-progress --force --out "$ckpt_root/$1.nc" 2>&1 | tail -5 \
        || echo "training stopped (exit $?)"
    cp "$ckpt_root/$1.nc" "$out/$1.nc"
}

for step in $steps; do
    case $step in
        classic) train craftax_classic_8seeds Craftax-Classic-Symbolic-v1 "${CLASSIC_SEEDS:-8}" "${CLASSIC_STEPS:-10000000}" ;;
        symbolic) train craftax_4seeds Craftax-Symbolic-v1 "${SYMBOLIC_SEEDS:-4}" "${SYMBOLIC_STEPS:-10000000}" ;;
        bench)
            for env in ${BENCH_ENVS:-Craftax-Classic-Symbolic-v1}; do
                echo "== benchmark: $env, 1 seed, recording on vs off"
                timeout "$budget" python3 benchmarks/bench_train.py --env "$env" --num-envs "$num_envs" \
                    --num-steps "$num_steps" --layer-size "$layer" --seeds 1 --chunk-updates 4 --chunks 3 2>&1 \
                    | tee -a "$out/bench.txt" || echo "benchmark stopped (exit $?)"
            done ;;
        *) echo "unknown step $step (classic, bench, symbolic)"; exit 2 ;;
    esac
done
ls -la "$out"
