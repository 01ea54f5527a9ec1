#!/usr/bin/env bash
# The CPU data campaign: long runs of few environments, made in the background of a session.
#
#   VALUEDYN_GIT_COMMIT=$(git rev-parse HEAD) bash data/make_cpu_data.sh OUTDIR [CONDITION ...]
#
# CONDITION: default (the default), every_plant, gru16, gru64, gru256
#   default:     Craftax-Classic-Symbolic, default reward (an achievement pays at its first
#                unlock per episode)
#   every_plant: the same with every plant paid (--reward-every place_plant): if first-unlock-only
#                reward makes agents overshoot and then cut back, this condition should not decay
# Both: 256 envs x 64 steps, the public baseline's network (3 x 512) and PPO settings otherwise,
# a constant learning rate (--no-anneal-lr: annealing to zero freezes behaviour and would
# masquerade as a decay), SEEDS (4) x UPDATES (400) updates, the same update grid for both, and a
# checkpoint every CKPT_EVERY (20) updates so that `valuedyn probe` can follow the run.
#   gruH:        the environmental-memory study: a GRU policy of hidden size H (--recurrent
#                --gru-hidden H), default reward, the same 256 envs x 64 steps and constant
#                learning rate, but MEM_SEEDS (2) x MEM_UPDATES (120) updates, MLPs of
#                MEM_LAYER_SIZE (128) units (the GRU of 256 trains at ~2,600 steps/s on 2 cores
#                against ~6,700 for 16; 3 x 512 MLPs would take hours more for what the memory
#                probe reads, the GRU's state), a checkpoint every MEM_CKPT_EVERY (12) updates;
#                each run is then probed with `valuedyn probe --memory` (its .memory.nc lies beside
#                the trajectory in OUTDIR, where the report finds it).
# Learning goes by PPO updates, not env steps: at update 16 a 256-env run is where the shipped
# 1024-env run is at its update 16. On 2 cores one condition takes about 2.3 hours.
#
# Rules (as data/make_data.sh): VALUEDYN_GIT_COMMIT names the commit of the code that runs (the
# script refuses to run without it); the runs train at low priority (nice 19) under CKPT_ROOT
# (default /tmp/valuedyn-cpu-runs: the large checkpoints stay outside the repository); the
# trajectory, rewritten atomically by the trainer after every chunk of CHUNK (5) updates, is
# mirrored into OUTDIR every 30 s and at the end, so OUTDIR always holds every completed chunk.
# A run whose checkpoints are still under CKPT_ROOT is resumed from the latest one (the updates
# after it are recomputed, bit for bit). A run whose checkpoints are gone while OUTDIR already
# holds its trajectory is refused (a fresh start would replace those updates by fewer) unless
# FRESH=1 is set.
set -euo pipefail
out=${1:?usage: make_cpu_data.sh OUTDIR [default|every_plant ...]}
shift
conditions=${*:-default}
if [[ -z "${VALUEDYN_GIT_COMMIT:-}" || "${VALUEDYN_GIT_COMMIT}" == unknown ]]; then
    echo "make_cpu_data.sh: set VALUEDYN_GIT_COMMIT to the commit of the code that runs, e.g." >&2
    echo "  VALUEDYN_GIT_COMMIT=\$(git rev-parse HEAD) bash data/make_cpu_data.sh $out $conditions" >&2
    exit 2
fi
export VALUEDYN_GIT_COMMIT
for condition in $conditions; do
    case $condition in default|every_plant|gru16|gru64|gru256) ;; *)
        echo "make_cpu_data.sh: unknown condition $condition (default, every_plant, gru16, gru64, gru256)" >&2
        exit 2 ;;
    esac
done
mkdir -p "$out"
ckpt_root=${CKPT_ROOT:-/tmp/valuedyn-cpu-runs}
mkdir -p "$ckpt_root"
num_envs=${NUM_ENVS:-256}
num_steps=${NUM_STEPS:-64}
chunk=${CHUNK:-5}

mirror() {  # src dst: copy src to dst atomically every 30 s while training runs
    while sleep 30; do
        [[ -f "$1" ]] && cp "$1" "$2.part" && mv -f "$2.part" "$2"
    done
}

for condition in $conditions; do
    layer=${LAYER_SIZE:-512} seeds=${SEEDS:-4} updates=${UPDATES:-400} ckpt_every=${CKPT_EVERY:-20}
    if [[ $condition == gru* ]]; then
        layer=${MEM_LAYER_SIZE:-128} seeds=${MEM_SEEDS:-2} updates=${MEM_UPDATES:-120}
        ckpt_every=${MEM_CKPT_EVERY:-12}
    fi
    total=$((updates * num_envs * num_steps))
    name=craftax_classic_${seeds}seeds_${updates}updates_${num_envs}envs
    extra=()
    if [[ $condition == every_plant ]]; then
        name=${name}_every_plant
        extra=(--reward-every place_plant)
    elif [[ $condition == gru* ]]; then
        name=${name}_${condition}
        extra=(--recurrent --gru-hidden "${condition#gru}")
    fi
    run="$ckpt_root/$name.nc"
    if compgen -G "$run.ckpt/*" >/dev/null && [[ -f "$run" ]]; then
        mode=(--resume)
        echo "== $name: resuming from the checkpoints in $run.ckpt/"
    elif [[ -f "$out/$name.nc" && "${FRESH:-0}" != 1 ]]; then
        echo "make_cpu_data.sh: $out/$name.nc exists but its checkpoints ($run.ckpt/) are gone, so it" >&2
        echo "  cannot be resumed; a fresh start would replace it. Set FRESH=1 to start again." >&2
        exit 2
    else
        mode=(--force)
        echo "== $name: $seeds seeds x $updates updates of $num_envs envs x $num_steps steps ${extra[*]}"
    fi
    mirror "$run" "$out/$name.nc" &
    mirror_pid=$!
    status=0
    nice -n 19 valuedyn train --env Craftax-Classic-Symbolic-v1 --seeds "$seeds" --seed 0 \
        --total-steps "$total" --num-envs "$num_envs" --num-steps "$num_steps" --layer-size "$layer" \
        --no-anneal-lr --chunk-updates "$chunk" --checkpoint-every "$ckpt_every" --no-progress \
        "${mode[@]}" --out "$run" "${extra[@]}" || status=$?
    kill "$mirror_pid" 2>/dev/null || true
    wait "$mirror_pid" 2>/dev/null || true
    [[ -f "$run" ]] && cp "$run" "$out/$name.nc.part" && mv -f "$out/$name.nc.part" "$out/$name.nc"
    if [[ $status != 0 ]]; then
        echo "training of $name stopped (exit $status); $out/$name.nc holds every completed chunk" >&2
        exit "$status"
    fi
    if [[ $condition == gru* ]]; then  # the memory probe of every checkpoint, beside the trajectory
        nice -n 19 valuedyn probe "$run" --memory --no-progress --force
        cp "${run%.nc}.memory.nc" "$out/$name.memory.nc.part" && mv -f "$out/$name.memory.nc.part" "$out/$name.memory.nc"
    fi
done
ls -la "$out"
