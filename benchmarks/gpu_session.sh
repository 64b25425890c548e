#!/usr/bin/env bash
# The open GPU items, prepared for a lent GPU machine (NVIDIA H100/H200, torch 2.11 there).
#
# A lent machine gives about 15 minutes in all (its start included) and 10 minutes a command,
# and starts bare: everything the items need travels with the working tree, each item has its
# own time limit, and what finished comes back even when a later item runs out of time. The
# items do not all fit one lending, so the command names the ones to run (default: all, in this
# order; a session picks the issue it can finish):
#
#   sync   (60 s)   a whole generation under torch.cuda.set_sync_debug_mode("error") (sync_check.py)
#   p2     (420 s)  issue 12 item 4: the 196-token MNIST quality table with 10,000 images per seed
#                   set, 2 seed sets, on the rows the paper's ordering is about (original, 20 steps,
#                   FORA N=3, ToCa N=3 R=15%); at 500 images per set the original's FID still moved
#                   by 7.3 between seed sets, at 10,000 on 49 tokens by 0.6. Estimated from the
#                   49-token table's pace (30 row-seed sets of 10,000 images in 7.6 min) times the
#                   FLOPs per image (5.2x): 5-7 min.
#   xl     (300 s)  issue 10: full-depth DiT-XL/2 (28 blocks, 256 tokens), bf16, batch 16, speed
#                   and η against plain torch.compile (the goal is η >= 0.9 on a GPU); the 4-block
#                   run compiled in 15 s plain and 32 s toca-compile, 28 blocks take several times that
#   flux   (180 s)  issue 10: a FLUX.1-dev-size model (random weights, 8 double + 8 single blocks to
#                   bound compile time), bf16, batch 2
#
#   bash benchmarks/gpu_session.sh p2          # issue 12's table alone
#   bash benchmarks/gpu_session.sh sync xl     # issue 10's full-depth DiT
#
# Before the call, once, in the repository root on the CPU machine (both folders are ignored):
#   echo /.whl/ >> .git/info/exclude; echo /.mnist/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
#   mkdir -p .mnist && cp ../shared/data/mnist/* .mnist/
# then run it with the device tool: command "bash benchmarks/gpu_session.sh ITEMS", carry
# [".whl", ".mnist"], timeout_s 600. Results (at most 8 files come back) land in $OUT; copy them
# to benchmarks/results/ and merge a cut-off p2 run with `quality.py --from-json`.
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
LOG="$OUT/gpu_session.log"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$LOG"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" 2>&1 | tee -a "$LOG"

item() {  # item NAME SECONDS COMMAND...: run under a time limit, log appended, status reported
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*" | tee -a "$LOG"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$LOG" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$LOG"
}

ITEMS=${*:-sync p2 xl flux}
for name in $ITEMS; do
    case $name in
    sync)
        item sync 60 python3 benchmarks/sync_check.py --model dit-xl-2 --layers 4 --batch 16 \
            --out "$OUT/sync_h200.json" ;;
    p2)
        if [ -d .mnist ]; then
            item p2 420 python3 benchmarks/quality.py --model mnist-p2 --device cuda --samples 10000 \
                --batch 5000 --seeds 2 --bootstrap 200 --data .mnist \
                --rows original,steps-20,fora-N3,toca-N3-r0.15 --out "$OUT/quality_p2_gpu"
        else
            echo "== p2: skipped (carry .mnist, see the header)" | tee -a "$LOG"
        fi ;;
    xl)
        item xl 300 python3 benchmarks/speed.py --model dit-xl-2 --batch 16 --steps 50 --rounds 3 \
            --device cuda --dtype bfloat16 --threads 8 --variants compiled,toca --per-step \
            --out "$OUT/speed_h200_dit_xl_full_b16.json" ;;
    flux)
        item flux 180 python3 benchmarks/speed.py --model flux-dev --layers 8 --batch 2 --steps 28 --rounds 3 \
            --device cuda --dtype bfloat16 --threads 8 --variants compiled,toca --per-step \
            --out "$OUT/speed_h200_flux_l8_b2.json" ;;
    *)
        echo "unknown item '$name' (sync, p2, xl, flux)" | tee -a "$LOG"
        exit 2 ;;
    esac
done
tail -n 5 "$LOG"
