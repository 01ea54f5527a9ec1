#!/usr/bin/env bash
# How the shipped trajectories in data/ are made: the exact commands, run on one GPU.
#
#   VALUEDYN_GIT_COMMIT=$(git rev-parse HEAD) bash data/make_data.sh OUTDIR [STEP ...]
#
# STEP: classic (default), every_plant, bench, symbolic
#   classic:     Craftax-Classic-Symbolic, default reward (achievements pay at the first unlock
#                per episode), default (public-baseline) PPO, 8 seeds x 25M env steps each
#   every_plant: the same with every plant paid (--reward-every place_plant): the reward-structure
#                ablation that tells whether first-unlock-only reward causes the plant overshoot
#   bench:       benchmarks/bench_train.py at the default sizes, 1 and 8 seeds, recording on vs off
#   symbolic:    Craftax-Symbolic, 4 seeds
#
# The trainer rewrites its trajectory atomically after every chunk of updates under $CKPT_ROOT
# (default /tmp/valuedyn-runs, beside its large checkpoints, which are not shipped), and a mirror
# copies it into OUTDIR every 10 s and at the end, so a run stopped by its time budget (BUDGET_S,
# default 480 s per run) or a command killed from outside still leaves every completed update there. VALUEDYN_GIT_COMMIT must name the commit of the code that runs
# (commit first; a copied tree has no .git): the script refuses to run without it, so no shipped
# file says "unknown". Sizes can be shrunk for a CPU dry run with the variables below
# (NUM_ENVS, NUM_STEPS, LAYER_SIZE, CLASSIC_SEEDS, CLASSIC_STEPS, ...); the defaults are the real runs.
#
# On a bare GPU machine without craftax/h5netcdf, first install the carried wheels
# (data/device_wheels.txt lists them) and the package: see that file.
set -euo pipefail
out=${1:?usage: make_data.sh OUTDIR [classic|every_plant|bench|symbolic ...]}
shift
steps=${*:-classic}
if [[ -z "${VALUEDYN_GIT_COMMIT:-}" || "${VALUEDYN_GIT_COMMIT}" == unknown ]]; then
    echo "make_data.sh: set VALUEDYN_GIT_COMMIT to the commit of the code that runs, e.g." >&2
    echo "  VALUEDYN_GIT_COMMIT=\$(git rev-parse HEAD) bash data/make_data.sh $out $steps" >&2
    exit 2
fi
export VALUEDYN_GIT_COMMIT
mkdir -p "$out"
ckpt_root=${CKPT_ROOT:-/tmp/valuedyn-runs}
mkdir -p "$ckpt_root"
num_envs=${NUM_ENVS:-1024}
num_steps=${NUM_STEPS:-64}
layer=${LAYER_SIZE:-512}
budget=${BUDGET_S:-480}
chunk=${CHUNK_UPDATES:-16}

mirror() {  # src dst: copy src to dst atomically every 10 s while training runs (see below)
    while sleep 10; do
        [[ -f "$1" ]] && cp "$1" "$2.part" && mv -f "$2.part" "$2"
    done
}

train() {  # name env seeds total_steps [extra flags...]
    local name=$1 env=$2 seeds=$3 total=$4
    shift 4
    echo "== $name: $env, $seeds seeds x $total steps $*"
    # The run writes under $ckpt_root (its checkpoints, <out>.ckpt/, are large and must not fill
    # OUTDIR, which is copied back); a mirror copies the trajectory into OUTDIR every 10 s, so
    # even a command killed from outside leaves the last completed chunks there.
    mirror "$ckpt_root/$name.nc" "$out/$name.nc" &
    local mirror_pid=$!
    timeout "$budget" valuedyn train --env "$env" --seeds "$seeds" --total-steps "$total" \
        --num-envs "$num_envs" --num-steps "$num_steps" --layer-size "$layer" \
        --seed 0 --chunk-updates "$chunk" --no-progress --force --out "$ckpt_root/$name.nc" "$@" 2>&1 | tail -5 \
        || echo "training of $name stopped (exit $?); the trajectory holds every completed chunk"
    kill "$mirror_pid" 2>/dev/null || true
    wait "$mirror_pid" 2>/dev/null || true
    cp "$ckpt_root/$name.nc" "$out/$name.nc.part" && mv -f "$out/$name.nc.part" "$out/$name.nc"
}

for step in $steps; do
    case $step in
        classic) train craftax_classic_8seeds_25M Craftax-Classic-Symbolic-v1 "${CLASSIC_SEEDS:-8}" "${CLASSIC_STEPS:-25165824}" ;;
        every_plant) train craftax_classic_8seeds_25M_every_plant Craftax-Classic-Symbolic-v1 "${CLASSIC_SEEDS:-8}" \
            "${CLASSIC_STEPS:-25165824}" --reward-every place_plant ;;
        symbolic) train craftax_4seeds Craftax-Symbolic-v1 "${SYMBOLIC_SEEDS:-4}" "${SYMBOLIC_STEPS:-10000000}" ;;
        bench)
            for seeds in ${BENCH_SEEDS:-1 8}; do
                echo "== benchmark: Craftax-Classic-Symbolic-v1, $seeds seeds, recording on vs off"
                timeout "$budget" python3 benchmarks/bench_train.py --env Craftax-Classic-Symbolic-v1 \
                    --num-envs "$num_envs" --num-steps "$num_steps" --layer-size "$layer" --seeds "$seeds" \
                    --chunk-updates 4 --chunks 3 2>&1 | tee -a "$out/bench.txt" || echo "benchmark stopped (exit $?)"
            done ;;
        *) echo "make_data.sh: unknown step $step (classic, every_plant, bench, symbolic)" >&2; exit 2 ;;
    esac
done
ls -la "$out"
