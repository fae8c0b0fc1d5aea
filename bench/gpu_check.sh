#!/usr/bin/env bash
# thactl's GPU path, measured on one CUDA machine without internet, within 8 minutes.
#
#   bench/gpu_check.sh --wheels WHEELS_DIR      # on the GPU machine
#   bench/gpu_check.sh --cpu-smoke              # anywhere: every step at tiny sizes on the CPU
#
# The machine must already have PyTorch (CUDA build), h5py, numpy, pillow, click, tqdm,
# safetensors and imageio.  moderngl, glcontext, pymeshio and pyrr come from WHEELS_DIR
# (--wheels or $THACTL_WHEELS); fill it on a machine with internet and the GPU machine's
# Python version, e.g. for CPython 3.11 on x86-64 Linux:
#   pip download --no-deps --only-binary=:all: --python-version 3.11 \
#       --platform manylinux2014_x86_64 -d wheels moderngl glcontext pyrr
#   pip download --no-deps -d wheels pymeshio       # source only: built there (setuptools)
# Without --wheels those packages must already be importable.  thactl itself and the
# wheels are installed with `pip install --no-deps --no-index --target WORK/site` (nothing
# else on the machine changes).
#
# Steps, each under its own time limit (a failing or slow step costs only its share):
#   install   thactl and the wheels
#   gl        which OpenGL driver EGL gives (the NVIDIA driver is wanted, not llvmpipe)
#   render    (c) `thactl render` throughput with 1, 4 and 8 worker processes, 256²
#   train     (b) morpher training for 3 minutes at 256² on that data: the loss must fall
#   poser     (d) full poser frames/s at batch 1 and 8, fp32 and fp16
#   torchrun  (e) `torchrun --nproc_per_node 1 thactl train` for a few steps
#   bench     (a) bench/bench_train.py at THA1 sizes, 256², channels_last, fp32 and bf16,
#             eager and --compile: examples/s and peak GPU memory per network
# The summary goes to $OUT/gpu_check/summary.txt when $OUT is set (else WORK/summary.txt),
# each step's full output beside it in logs/, and to stdout at the end.
#
# Options: --wheels DIR, --cpu-smoke, --work DIR (default: a new /tmp folder),
#          --python PY (default: $PYTHON or python3), --budget SECONDS (default 480; with
#          --cpu-smoke 1800, for a busy CPU); $THACTL_REPO: another checkout to install.
set -uo pipefail

REPO=${THACTL_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PY=${PYTHON:-python3}
WHEELS=${THACTL_WHEELS:-}
SMOKE=0
BUDGET=
WORK=
while (($#)); do
    case $1 in
        --wheels) WHEELS=$2; shift 2 ;;
        --cpu-smoke) SMOKE=1; shift ;;
        --work) WORK=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --budget) BUDGET=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
BUDGET=${BUDGET:-$((SMOKE ? 1800 : 480))}
WORK=${WORK:-$(mktemp -d /tmp/thactl-gpu-check.XXXXXX)}
mkdir -p "$WORK"
if [[ -n ${OUT:-} ]]; then REPORT=$OUT/gpu_check; else REPORT=$WORK; fi
LOGS=$REPORT/logs
mkdir -p "$LOGS"
SUMMARY=$REPORT/summary.txt
: > "$SUMMARY"
START=$(date +%s)
DEADLINE=$((START + BUDGET))

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME SECONDS PATTERN CMD...: run CMD under `timeout` (SIGTERM, then SIGKILL 15 s
# later), limited to what is left of the budget; its output goes to logs/NAME.log and the
# lines matching the extended regex PATTERN into the summary.
step() {
    local name=$1 limit=$2 pattern=$3; shift 3
    local left=$((DEADLINE - $(date +%s)))
    ((limit > left)) && limit=$left
    if ((limit < 5)); then
        note "[$name] SKIPPED: the ${BUDGET} s budget is spent"
        return 1
    fi
    local t0 rc secs status
    t0=$(date +%s)
    timeout -k 15 -s TERM "$limit" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    case $rc in
        0) status=ok ;;
        124|137) status="TIME LIMIT ($limit s)" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    note "[$name] $status in $secs s"
    grep -E "$pattern" "$LOGS/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    if [[ $status != ok ]]; then
        tail -n 3 "$LOGS/$name.log" | sed 's/^/    | /' | tee -a "$SUMMARY"
    fi
    [[ $status == ok ]]
}

# -- sizes -------------------------------------------------------------------------------
# (flag lists are plain strings, split on spaces where used, so step functions can see them)
if ((SMOKE)); then
    MODE="CPU smoke test (tiny sizes: the figures mean nothing, the plumbing is checked)"
    DEVICE=cpu SIZE=32 RENDER_COUNT=24 RENDER_WORKERS=1,2 LIMIT_SCALE=6
    TRAIN_SECONDS=0 TRAIN_EXAMPLES=96      # a fixed budget: a busy CPU may need a minute to start
    NET="--base-channels 8 --num-downsample 1 --num-res-blocks 1"
    TRAIN_ARGS="--batch-size 4 --log-every 8 --workers 0"
    BENCH_ARGS="--batch 2 --steps 1 --warmup 1 --compile-backend eager"
    POSER_ARGS="--device cpu --frames 2 --base-channels 8 --num-downsample 1 --res-blocks 1"
else
    MODE="GPU"
    DEVICE=cuda SIZE=256 RENDER_COUNT=320 RENDER_WORKERS=1,4,8 LIMIT_SCALE=1
    TRAIN_SECONDS=180 TRAIN_EXAMPLES=100000000   # stopped by the time limit (SIGTERM: checkpoint, exit)
    NET=""
    TRAIN_ARGS="--batch-size 25 --log-every 2500"
    BENCH_ARGS="--batch 25 --steps 20 --warmup 2"
    POSER_ARGS="--device cuda --cuda-frames 200"
fi
lim() { echo $(($1 * LIMIT_SCALE)); }
export PY WHEELS REPO WORK DEVICE SIZE TRAIN_SECONDS TRAIN_EXAMPLES NET TRAIN_ARGS

note "thactl gpu_check: $MODE; budget $BUDGET s; $(date -u '+%Y-%m-%d %H:%M UTC'); work folder $WORK"
note "repository $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
"$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")' 2>&1 | tee -a "$SUMMARY"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/nvidia-smi: /' | tee -a "$SUMMARY"
if ((!SMOKE)) && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    note "no CUDA GPU visible to torch: stopping (use --cpu-smoke to check the plumbing on a CPU)"
    exit 1
fi

# -- install -----------------------------------------------------------------------------
SITE=$WORK/site
install_thactl() {
    set -e
    if [[ -n $WHEELS ]]; then
        "$PY" -m pip install --no-index --no-deps --no-build-isolation --target "$SITE" \
            --find-links "$WHEELS" moderngl glcontext pymeshio pyrr
    else
        echo "no --wheels: using the moderngl, glcontext and pymeshio already installed"
    fi
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    rm -rf "$WORK/src" && mkdir -p "$WORK/src"
    tar -C "$REPO" --exclude=./.git --exclude=./build --exclude='./*.egg-info' -cf - . | tar -C "$WORK/src" -xf -
    "$PY" -m pip install --no-index --no-deps --no-build-isolation --target "$SITE" "$WORK/src"
    PYTHONPATH=$SITE "$PY" -c 'import moderngl, glcontext, pymeshio, cli; print("installed thactl; moderngl", moderngl.__version__)'
}
export SITE PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export -f install_thactl
if step install "$(lim 60)" 'installed|no --wheels' bash -c install_thactl; then
    THACTL=$SITE/bin/thactl
else
    note "    installing failed: running thactl from the repository instead"
    mkdir -p "$WORK/bin"
    printf '#!%s\nimport sys\nsys.path.insert(0, %s)\nimport cli\nsys.exit(cli.main())\n' \
        "$(command -v "$PY" || echo "$PY")" "'$REPO'" > "$WORK/bin/thactl"
    chmod +x "$WORK/bin/thactl"
    THACTL=$WORK/bin/thactl
fi
export THACTL
cd "$WORK" || exit 1

# -- gl ----------------------------------------------------------------------------------
gl_info() {
    "$PY" - <<'PY'
from renderer.offscreen import gl_context
info = gl_context().info
print("GL_RENDERER", info["GL_RENDERER"], "| GL_VENDOR", info["GL_VENDOR"], "| GL_VERSION", info["GL_VERSION"])
if "llvmpipe" in info["GL_RENDERER"].lower():
    print("GL note: EGL gave Mesa's llvmpipe (CPU), not the NVIDIA driver; try "
          "__EGL_VENDOR_LIBRARY_FILENAMES=/usr/share/glvnd/egl_vendor.d/10_nvidia.json")
PY
}
export -f gl_info
step gl "$(lim 30)" '^GL' bash -c gl_info

# -- (c) render throughput ---------------------------------------------------------------
"$THACTL" samples "$WORK/models" --count 6 > /dev/null 2>&1 || note "    thactl samples failed"
step render "$(lim 90)" '^(models|workers|  )' \
    "$PY" "$REPO/bench/bench_render_dataset.py" --models "$WORK/models" --count "$RENDER_COUNT" \
    --size "$SIZE" --workers "$RENDER_WORKERS" --keep "$WORK/data"

# -- (b) 3-minute morpher training -------------------------------------------------------
train_for() {
    rm -rf "$WORK/run-morpher"
    local limit=()
    ((TRAIN_SECONDS > 0)) && limit=(timeout -s TERM "$TRAIN_SECONDS")
    "${limit[@]}" "$THACTL" train morpher --data "$WORK/data" --out "$WORK/run-morpher" \
        --device "$DEVICE" $NET $TRAIN_ARGS --examples "$TRAIN_EXAMPLES" \
        --val-every 100000000 --checkpoint-every 100000000 --quiet
    local rc=$?
    ((rc == 0 || rc == 124)) || return $rc
    "$PY" - "$WORK/run-morpher/metrics.jsonl" <<'PY'
import json, sys
recs = [r for r in map(json.loads, open(sys.argv[1])) if r.get("split") == "train"]
if len(recs) < 2:
    sys.exit(f"train: only {len(recs)} loss record(s) in {sys.argv[1]}")
k = max(1, min(3, len(recs) // 3))
first = sum(r["loss"] for r in recs[:k]) / k
last = sum(r["loss"] for r in recs[-k:]) / k
rates = [r["examples_per_s"] for r in recs[1:]] or [recs[0]["examples_per_s"]]
print(f"train loss {first:.4f} (mean of the first {k} logs, to {recs[k - 1]['examples']} examples) -> "
      f"{last:.4f} (last {k}, at {recs[-1]['examples']} examples): "
      f"{'FALLING' if last < first else 'NOT FALLING'}; {sum(rates) / len(rates):.1f} examples/s")
step = max(1, len(recs) // 12)
for r in recs[::step] + ([recs[-1]] if (len(recs) - 1) % step else []):
    print(f"  loss {r['examples']:>9d} examples  {r['loss']:.5f}")
PY
}
export -f train_for
step train "$((TRAIN_SECONDS + $(lim 40)))" '^(train loss|  loss)' bash -c train_for

# -- (d) poser inference -----------------------------------------------------------------
for b in 1 8; do
    step "poser-batch$b" "$(lim 40)" 'frames/s' \
        "$PY" "$REPO/bench/bench_poser.py" --size "$SIZE" $POSER_ARGS --batch "$b" --no-flops
done

# -- (e) torchrun, one process -----------------------------------------------------------
torchrun_train() {
    rm -rf "$WORK/run-torchrun"
    "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 "$THACTL" train morpher \
        --data "$WORK/data" --out "$WORK/run-torchrun" --device "$DEVICE" $NET \
        $TRAIN_ARGS --examples 100 --val-every 100000 --checkpoint-every 100000 --quiet || return
    "$PY" - "$WORK/run-torchrun" <<'PY'
import json, os, sys
recs = [r for r in map(json.loads, open(os.path.join(sys.argv[1], "metrics.jsonl"))) if r.get("split") == "train"]
weights = os.path.join(sys.argv[1], "morpher.safetensors")
print(f"torchrun: {recs[-1]['examples']} examples, last loss {recs[-1]['loss']:.4f}, "
      f"weights written: {os.path.isfile(weights)}")
PY
}
export -f torchrun_train
step torchrun "$(lim 60)" '^torchrun' bash -c torchrun_train

# -- (a) training throughput -------------------------------------------------------------
for mode in eager compile; do
    for prec in bf16 fp32; do   # bf16 first: the target figure is bf16
        flag=; limit=40
        [[ $mode == compile ]] && flag=--compile limit=90
        step "bench-$prec-$mode" "$(lim $limit)" 'examples/s' \
            "$PY" "$REPO/bench/bench_train.py" --device "$DEVICE" --size "$SIZE" $NET $BENCH_ARGS \
            --precision "$prec" --channels-last --no-flops --label "$prec $mode" $flag
    done
done

note "total $(($(date +%s) - START)) s (budget $BUDGET s); logs in $LOGS"
