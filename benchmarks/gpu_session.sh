#!/usr/bin/env bash
# The open GPU items in one short run on a lent GPU machine (NVIDIA H100/H200, torch 2.11 there).
#
# A lent machine gives about 15 minutes in all and 10 a command, and starts bare, so everything
# the items need travels with the working tree and each item has its own time limit: what
# finished comes back even when a later item runs out of time. Items, most wanted first:
#
#   1. sync     a whole generation under torch.cuda.set_sync_debug_mode("error") (sync_check.py)
#   2. p2       the 196-token MNIST quality table with 10,000 images per seed set, 3 seed sets, as
#               the 49-token table was run (issue 12 item 4: at 500 images per set the
#               original's FID still moved by 7.3 between seed sets; at 10,000, 0.6 on 49 tokens)
#   3. xl       full-depth DiT-XL/2 (28 blocks, 256 tokens), bf16, batch 16: speed and η against
#               plain torch.compile (issue 10 asks η >= 0.9 on a GPU)
#   4. flux     a FLUX.1-dev-size model (random weights, 8 double + 8 single blocks to bound
#               compile time), bf16, batch 2
#
# Before the call, once, in the repository root on the CPU machine (both folders are ignored):
#   echo /.whl/ >> .git/info/exclude; echo /.mnist/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
#   mkdir -p .mnist && cp ../shared/data/mnist/* .mnist/
# then run it with the device tool: command "bash benchmarks/gpu_session.sh", carry [".whl", ".mnist"],
# timeout_s 600. Results (at most 8 files come back) land in $OUT; copy them to benchmarks/results/.
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

item sync 90 python3 benchmarks/sync_check.py --model dit-xl-2 --layers 4 --batch 16 \
    --out "$OUT/sync_h200.json"
if [ -d .mnist ]; then
    item p2 180 python3 benchmarks/quality.py --model mnist-p2 --device cuda --samples 10000 --batch 5000 \
        --seeds 3 --bootstrap 200 --data .mnist --out "$OUT/quality_p2_gpu"
else
    echo "== p2: skipped (carry .mnist, see the header)" | tee -a "$LOG"
fi
item xl 180 python3 benchmarks/speed.py --model dit-xl-2 --batch 16 --steps 50 --rounds 3 \
    --device cuda --dtype bfloat16 --threads 8 --variants compiled,toca --per-step \
    --out "$OUT/speed_h200_dit_xl_full_b16.json"
item flux 120 python3 benchmarks/speed.py --model flux-dev --layers 8 --batch 2 --steps 28 --rounds 3 \
    --device cuda --dtype bfloat16 --threads 8 --variants compiled,toca --per-step \
    --out "$OUT/speed_h200_flux_l8_b2.json"
tail -n 5 "$LOG"
