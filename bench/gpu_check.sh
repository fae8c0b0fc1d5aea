#!/usr/bin/env bash
# thactl's GPU path, measured on one CUDA machine without internet, within a fixed budget (480 s).
#
#   bench/gpu_check.sh --plan                              # the steps, their time limits and the sum
#   bench/gpu_check.sh --wheels .whl --debs .gl            # on the GPU machine
#   bench/gpu_check.sh --cpu-smoke                         # anywhere: every step at tiny sizes on the CPU
#
# The machine must already have PyTorch (CUDA build), h5py, numpy, pillow, click, tqdm,
# safetensors, imageio and multipledispatch (the lent machine's image has them, with Python 3.12).
# What it lacks is carried (docs/gpu.md has the exact commands):
#   --wheels DIR  (or $THACTL_WHEELS) wheels for that machine's Python, installed one pip call
#                 each (a wheel that does not fit is named and the others still install), e.g. for
#                 CPython 3.12 on x86-64 Linux:
#       pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#           moderngl==5.13.0 glcontext==3.1.0 pyrr==0.10.3
#       pip wheel --no-deps -w .whl pymeshio==3.0.1   # a pure-Python sdist: built here, carried as a wheel
#   --debs DIR    (or $THACTL_DEBS) Debian packages libegl1 libglvnd0 libgl1 libglx0 libopengl0
#                 libgles2, unpacked into the work folder (nothing outside it changes) and used
#                 instead of the system's libEGL/libGL.
# thactl itself is installed from this checkout with `pip install --no-deps --no-index --target
# WORK/site`; if that fails the checkout is put on PYTHONPATH instead.
#
# NVIDIA's EGL: glvnd finds vendor files only in /usr/share and /etc unless told; unless
# __EGL_VENDOR_LIBRARY_FILENAMES or __EGL_VENDOR_LIBRARY_DIRS is set, the first *nvidia*.json in
# $THACTL_EGL_VENDOR_DIRS (default: /usr/local/nvidia/share/glvnd/egl_vendor.d, then the standard
# folders) becomes __EGL_VENDOR_LIBRARY_FILENAMES. The gl step lists every EGL device and picks
# the first hardware one ($GLCONTEXT_DEVICE_INDEX or --egl-device N chooses another); it FAILS
# on a software renderer (llvmpipe), and then training runs on synthetic shards instead of renders.
#
# Every step has its own time limit and kill delay (`timeout -k KILL LIMIT`), cut to what is
# left of the budget. bf16 benches come first (eager, then torch.compile: the target figures).
# Output: summary.txt and logs.tar.gz (every step's full log, rewritten after each step) in
# $OUT/gpu_check when $OUT is set, else in the work folder: two files. Python runs unbuffered,
# so a step stopped at its limit keeps the lines it printed.
#
# Options: --plan, --cpu-smoke, --steps a,b (a subset, in plan order), --wheels DIR, --debs DIR,
#          --egl-device N, --work DIR (default: a new /tmp folder), --python PY (default: $PYTHON
#          or python3), --budget SECONDS (default 480; with --cpu-smoke 1800, for a busy CPU);
#          $THACTL_REPO: another checkout to install.
set -uo pipefail
export PYTHONUNBUFFERED=1

REPO=${THACTL_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PY=${PYTHON:-python3}
WHEELS=${THACTL_WHEELS:-}
DEBS=${THACTL_DEBS:-}
SMOKE=0 PLAN_ONLY=0 BUDGET= WORK= ONLY=
while (($#)); do
    case $1 in
        --plan) PLAN_ONLY=1; shift ;;
        --cpu-smoke) SMOKE=1; shift ;;
        --steps) ONLY=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --debs) DEBS=$2; shift 2 ;;
        --egl-device) export GLCONTEXT_DEVICE_INDEX=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --budget) BUDGET=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
BUDGET=${BUDGET:-$((SMOKE ? 1800 : 480))}

# -- the plan: step, time limit (s), kill delay (s), what it measures --------------------
# The limits plus the kill delays add up to at most the default budget (checked by --plan).
if ((SMOKE)); then
    PLAN="
bench-bf16-eager   240 10 bench_train.py bf16 eager at tiny sizes: layouts nchw, cl, cl-kept
bench-bf16-compile 300 10 the morpher under torch.compile with inductor (C++ on the CPU), channels_last kept
install            120 10 the wheels given (one pip call each) and thactl, into the work folder
gl                  60 10 the EGL devices and their renderers (llvmpipe is accepted here)
render             240 10 thactl samples, then thactl render with 1 and 2 workers at 32 px
train              150 10 morpher training with 2 loader workers, stopped by SIGTERM after 50 s: checkpoint, loss
poser              120 10 full poser frames/s at batch 1 and 8
torchrun           200 10 torchrun with 2 gloo processes (DDP), 1 loader worker each: SIGTERM stop, resume
bench-fp32-eager   120 10 bench_train.py fp32 eager, training's layout"
else
    PLAN="
bench-bf16-eager    55  5 bench_train.py, THA1 sizes, 256², bf16, eager: layouts nchw, cl, cl-kept (channels_last on/off)
bench-bf16-compile 120  5 the same networks under torch.compile (inductor) in training's layout: the target figures
install             25  5 the carried wheels (one pip call each) and thactl, into the work folder
gl                  15  5 the EGL devices and their renderers: the NVIDIA driver wanted, llvmpipe fails the step
render              45  5 thactl samples, then thactl render with 1 and 8 workers at 256² (synthetic shards if gl failed)
train               65  5 morpher training, 8 loader workers, stopped by SIGTERM after 45 s: checkpoint, loss curve
poser               35  5 full poser frames/s at batch 1 and 8, fp32 (convolutions in TF32) and fp16
torchrun            45  5 torchrun: DDP with 2 processes on 2 GPUs, else 1 process (launcher only); SIGTERM stop, resume
bench-fp32-eager    30  5 bench_train.py fp32 with TF32 (said in its header), eager, training's layout"
fi
plan_field() { awk -v n="$1" -v f="$2" '$1 == n { print $f }' <<< "$PLAN"; }
selected() { [[ -z $ONLY || ,$ONLY, == *,$1,* ]]; }

print_plan() {
    local total=0 worst=0 name limit kill what
    printf '%-19s %6s %5s  %s\n' step limit kill what
    while read -r name limit kill what; do
        [[ -z $name ]] && continue
        selected "$name" || continue
        printf '%-19s %5ss %4ss  %s\n' "$name" "$limit" "$kill" "$what"
        total=$((total + limit)) worst=$((worst + limit + kill))
    done <<< "$PLAN"
    echo "sum of the limits $total s; with every kill delay $worst s; budget $BUDGET s:" \
        "$( ((worst <= BUDGET)) && echo within budget || echo OVER BUDGET)"
    ((worst <= BUDGET))
}
if ((PLAN_ONLY)); then
    print_plan
    exit
fi

WORK=${WORK:-$(mktemp -d /tmp/thactl-gpu-check.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [[ -n ${OUT:-} ]]; then REPORT=$OUT/gpu_check; else REPORT=$WORK; fi
LOGS=$WORK/logs
mkdir -p "$LOGS" "$REPORT"
SUMMARY=$REPORT/summary.txt
: > "$SUMMARY"
START=$(date +%s) NOT_OK=
DEADLINE=$((START + BUDGET))

note() { echo "$*" | tee -a "$SUMMARY"; }

pack_logs() {  # one archive, replaced whole after every step: at most 2 files ever in $REPORT
    tar -czf "$REPORT/.logs.tar.gz.tmp" -C "$WORK" logs && mv -f "$REPORT/.logs.tar.gz.tmp" "$REPORT/logs.tar.gz"
}

# step NAME PATTERN CMD...: run CMD under `timeout -k KILL LIMIT` (the plan's, cut to what is left
# of the budget); its output goes to logs/NAME.log and the lines matching the extended regex
# PATTERN into the summary. Returns 0 when CMD succeeded.
step() {
    local name=$1 pattern=$2; shift 2
    selected "$name" || return 1
    local limit kill left t0 rc secs status
    limit=$(plan_field "$name" 2) kill=$(plan_field "$name" 3)
    left=$((DEADLINE - $(date +%s) - kill))
    ((limit > left)) && limit=$left
    if ((limit < 5)); then
        note "[$name] SKIPPED: the ${BUDGET} s budget is spent"
        return 1
    fi
    t0=$(date +%s)
    timeout -k "$kill" -s TERM "$limit" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    case $rc in
        0) status=ok ;;
        124|137) status="TIME LIMIT ($limit s)" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    note "[$name] $status in $secs s"
    grep -aE "$pattern" "$LOGS/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    if [[ $status != ok ]]; then
        NOT_OK="$NOT_OK $name"
        tail -n 3 "$LOGS/$name.log" | grep -avE "$pattern" | sed 's/^/    | /' | tee -a "$SUMMARY"
    fi
    pack_logs
    [[ $status == ok ]]
}

# -- sizes -------------------------------------------------------------------------------
# (flag lists are plain strings, split on spaces where used, so step functions can see them)
if ((SMOKE)); then
    MODE="CPU smoke test (tiny sizes: the figures mean nothing, the plumbing is checked)"
    DEVICE=cpu SIZE=32 RENDER_COUNT=24 RENDER_WORKERS=1,2 TRAIN_SECONDS=50 TORCHRUN_SECONDS=60
    NET="--base-channels 8 --num-downsample 1 --num-res-blocks 1"
    TRAIN_ARGS="--batch-size 4 --log-every 8 --workers 2"
    TORCHRUN_BATCH=4 TORCHRUN_ARGS="--log-every 8 --workers 1"
    BENCH_ARGS="--batch 2 --steps 1 --warmup 1"
    COMPILE_ARGS="--nets morpher --layouts cl-kept"     # inductor compiles C++ here: one network
    POSER_ARGS="--device cpu --frames 2 --base-channels 8 --num-downsample 1 --res-blocks 1"
else
    MODE="GPU"
    DEVICE=cuda SIZE=256 RENDER_COUNT=160 RENDER_WORKERS=1,8 TRAIN_SECONDS=45 TORCHRUN_SECONDS=22
    NET=""
    TRAIN_ARGS="--batch-size 25 --log-every 1000"
    TORCHRUN_BATCH=24 TORCHRUN_ARGS="--log-every 240"
    BENCH_ARGS="--batch 25 --steps 20 --warmup 2"
    COMPILE_ARGS="--layouts train"
    POSER_ARGS="--device cuda --cuda-frames 200"
fi
export PY REPO WORK LOGS DEVICE SIZE RENDER_COUNT RENDER_WORKERS TRAIN_SECONDS TORCHRUN_SECONDS NET \
    TRAIN_ARGS TORCHRUN_BATCH TORCHRUN_ARGS POSER_ARGS SMOKE

note "thactl gpu_check: $MODE; budget $BUDGET s; $(date -u '+%Y-%m-%d %H:%M UTC'); work folder $WORK"
note "repository $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')${ONLY:+; steps $ONLY}"
timeout 60 "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")' 2>&1 | tee -a "$SUMMARY"
command -v nvidia-smi > /dev/null && timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/nvidia-smi: /' | tee -a "$SUMMARY"
NGPU=$(timeout 60 "$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
needs_cuda=0
for s in bench-bf16-eager bench-bf16-compile train poser torchrun bench-fp32-eager; do selected $s && needs_cuda=1; done
if ((!SMOKE && needs_cuda && NGPU < 1)); then
    note "no CUDA GPU visible to torch: stopping (--cpu-smoke checks the plumbing on a CPU; --steps gl,render needs no GPU)"
    pack_logs
    exit 1
fi
export NGPU

# -- (a) training throughput, bf16: eager (with the layouts compared), then compiled --------
bench() {  # bench NAME LABEL ARGS...: bench_train.py with this run's sizes
    local name=$1 label=$2; shift 2
    step "$name" '^device|examples/s|layouts against' \
        "$PY" "$REPO/bench/bench_train.py" --device "$DEVICE" --size "$SIZE" $NET $BENCH_ARGS --no-flops \
        --label "$label" "$@"
}
bench bench-bf16-eager "bf16 eager" --precision bf16 --layouts nchw,cl,cl-kept
bench bench-bf16-compile "bf16 compile" --precision bf16 --compile $COMPILE_ARGS

# -- install -----------------------------------------------------------------------------
SITE=$WORK/site
install_thactl() {
    local whl ok=0 failed=0
    for whl in ${WHEELS:+"$WHEELS"/*.whl}; do
        [[ -e $whl ]] || continue
        if out=$("$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$whl" 2>&1); then
            echo "wheel $(basename "$whl"): installed"; ok=$((ok + 1))
        else
            echo "wheel $(basename "$whl"): FAILED: $(grep -a . <<< "$out" | tail -n 1)"; failed=$((failed + 1))
        fi
    done
    [[ -n $WHEELS ]] || echo "wheels: none given (--wheels): moderngl, glcontext, pymeshio and pyrr must be importable already"
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    rm -rf "$WORK/src" && mkdir -p "$WORK/src"
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.whl --exclude=./.gl --exclude=./build \
        --exclude='./*.egg-info' -cf - . | tar -C "$WORK/src" -xf -
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$SITE" \
        "$WORK/src" || { echo "thactl: pip install FAILED"; return 1; }
    "$PY" -c 'import moderngl, glcontext, pymeshio, pyrr, cli; print("thactl installed; moderngl", moderngl.__version__, "glcontext", glcontext.__version__)'
    ((failed == 0))
}
export SITE WHEELS PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export -f install_thactl
step install '^(wheel|thactl)' bash -c install_thactl
if [[ -x $SITE/bin/thactl ]]; then
    THACTL=$SITE/bin/thactl
else
    # thactl from the checkout: the repository on PYTHONPATH (for this script and every process it starts)
    export PYTHONPATH=$PYTHONPATH:$REPO
    mkdir -p "$WORK/bin"
    THACTL=$WORK/bin/thactl
    printf '#!%s\nimport sys\nimport cli\nsys.exit(cli.main())\n' "$(command -v "$PY" || echo "$PY")" > "$THACTL"
    chmod +x "$THACTL"
    selected install && note "    running thactl from the checkout instead (PYTHONPATH=$PYTHONPATH)"
fi
export THACTL

# -- gl: NVIDIA's EGL --------------------------------------------------------------------
# Where the libraries and the vendor file are, set before the gl step so every later process
# (render workers too) inherits it; one line each in the summary.
linker_cache() { { command -v ldconfig > /dev/null && ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null; }
egl_setup() {
    local d f lib
    if [[ -n $DEBS ]]; then
        mkdir -p "$WORK/gl-root"
        for f in "$DEBS"/*.deb; do
            [[ -e $f ]] || continue
            f=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
            if command -v dpkg-deb > /dev/null; then
                dpkg-deb -x "$f" "$WORK/gl-root"
            else  # a .deb is an ar archive holding data.tar.*
                (d=$(mktemp -d) && cd "$d" && ar x "$f" && tar -C "$WORK/gl-root" -xf data.tar.* && rm -rf "$d")
            fi || note "EGL libraries: could not unpack $f"
        done
        lib=$(dirname "$(find "$WORK/gl-root" -name 'libEGL.so.1' | head -n 1)")
        if [[ -f $lib/libEGL.so.1 ]]; then
            export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            export GLCONTEXT_LINUX_LIBEGL=$lib/libEGL.so.1
            [[ -f $lib/libGL.so.1 ]] && export GLCONTEXT_LINUX_LIBGL=$lib/libGL.so.1
            note "EGL libraries: from the Debian packages in $DEBS, unpacked to $lib"
        else
            note "EGL libraries: no libEGL.so.1 in the packages in $DEBS (libegl1 and libglvnd0 are needed)"
        fi
    elif ! linker_cache | grep -q 'libEGL.so.1 '; then
        note "EGL libraries: libEGL.so.1 is not installed; carry Debian's libegl1 libglvnd0 libgl1 libglx0 libopengl0 libgles2 and pass --debs DIR"
    fi
    if [[ -z ${__EGL_VENDOR_LIBRARY_FILENAMES:-}${__EGL_VENDOR_LIBRARY_DIRS:-} ]]; then
        local dirs=${THACTL_EGL_VENDOR_DIRS:-/usr/local/nvidia/share/glvnd/egl_vendor.d /usr/share/glvnd/egl_vendor.d /etc/glvnd/egl_vendor.d /usr/local/share/glvnd/egl_vendor.d}
        f=$(for d in $dirs; do ls "$d"/*nvidia*.json 2>/dev/null; done | head -n 1)
        if [[ -n $f ]]; then
            export __EGL_VENDOR_LIBRARY_FILENAMES=$f
        else
            note "EGL vendor file: no *nvidia*.json in $dirs: EGL offers what the system has (Mesa's llvmpipe at best)"
        fi
    fi
    [[ -n ${__EGL_VENDOR_LIBRARY_FILENAMES:-} ]] && note "EGL vendor file: __EGL_VENDOR_LIBRARY_FILENAMES=$__EGL_VENDOR_LIBRARY_FILENAMES"
    [[ -n ${__EGL_VENDOR_LIBRARY_DIRS:-} ]] && note "EGL vendor folders: __EGL_VENDOR_LIBRARY_DIRS=$__EGL_VENDOR_LIBRARY_DIRS"
    # the vendor library the file names (libEGL_nvidia.so.0) must be loadable
    local files=${__EGL_VENDOR_LIBRARY_FILENAMES:-}
    for f in ${files//:/ }; do
        lib=$(sed -n 's/.*"library_path" *: *"\([^"]*\)".*/\1/p' "$f" 2>/dev/null)
        [[ -z $lib || $lib == /* ]] && continue
        linker_cache | grep -q "$lib " && continue
        d=$(for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
                [[ -e $d/$lib ]] && echo "$d"; done | head -n 1)
        if [[ -n $d ]]; then
            export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            note "EGL vendor library: $lib from $d (added to LD_LIBRARY_PATH)"
        else
            note "EGL vendor library: $lib (named by $f) is neither in the linker cache nor in /usr/local/nvidia/lib*"
        fi
    done
}
gl_probe() {
    "$PY" - <<'PY'
import os, sys
import moderngl
from core.errors import first_line
SOFTWARE = ("llvmpipe", "softpipe", "swrast", "software")
wanted = os.environ.pop("GLCONTEXT_DEVICE_INDEX", None)   # glcontext lets it override device_index
found = []
for i in range(16):
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl", require=330, device_index=i)
    except Exception as e:  # noqa: BLE001 - glcontext's error says why (e.g. "found 0 devices")
        if not found:
            sys.exit(f"GL FAILED: no EGL device gives an OpenGL 3.3 context: {first_line(e)}")
        break
    found.append((i, ctx.info["GL_RENDERER"], ctx.info["GL_VENDOR"]))
    ctx.release()
for i, renderer, vendor in found:
    print(f"GL device {i}: {renderer} | {vendor}")
hardware = [i for i, r, _ in found if not any(w in r.lower() for w in SOFTWARE)]
pick = int(wanted) if wanted else (hardware or [found[0][0]])[0]
with open(os.path.join(os.environ["WORK"], "egl_device"), "w") as f:
    f.write(str(pick))
os.environ["GLCONTEXT_DEVICE_INDEX"] = str(pick)
from renderer.offscreen import gl_context   # what render uses, on the chosen device
info = gl_context().info
renderer = info["GL_RENDERER"]
print(f"GL renderer used (GLCONTEXT_DEVICE_INDEX={pick}): {renderer} | {info['GL_VENDOR']} | {info['GL_VERSION']}")
if any(w in renderer.lower() for w in SOFTWARE):
    if os.environ.get("SMOKE") == "1":
        print("GL software renderer accepted (--cpu-smoke)")
    else:
        sys.exit(f"GL FAILED: EGL gave a software renderer ({renderer}), not the NVIDIA driver; "
                 "is /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json there (see the EGL lines above)?")
PY
}
export -f gl_probe
GL_OK=0
if selected gl; then
    egl_setup
    step gl '^GL' bash -c gl_probe && GL_OK=1
    [[ -f $WORK/egl_device ]] && export GLCONTEXT_DEVICE_INDEX=$(cat "$WORK/egl_device")
fi
export GL_OK

# -- (c) data: render throughput, or synthetic shards -------------------------------------
synthetic_data() {  # synthetic_data REASON: shards of drawn discs (tests/test_train.py's), no OpenGL
    "$PY" - "$1" <<'PY'
import os, shutil, sys
from pathlib import Path
sys.path.insert(0, os.path.join(os.environ["REPO"], "tests"))
from test_train import write_synthetic_data   # the tests' generator; needs pytest importable
data, size = Path(os.environ["WORK"]) / "data", int(os.environ["SIZE"])
shutil.rmtree(data, ignore_errors=True)
write_synthetic_data(data, s=size, n_train=256, n_val=16)
print(f"synthetic shards: 256 train / 16 validation examples at {size} px in {data} ({sys.argv[1]})")
PY
}
make_data() {
    if ((!GL_OK)); then
        synthetic_data "no render: the gl step did not pass"
        return
    fi
    "$THACTL" samples "$WORK/models" --count 6 > /dev/null || { echo "thactl samples FAILED"; synthetic_data "thactl samples failed"; return 1; }
    "$PY" "$REPO/bench/bench_render_dataset.py" --models "$WORK/models" --count "$RENDER_COUNT" \
        --size "$SIZE" --workers "$RENDER_WORKERS" --keep "$WORK/data" && return
    echo "render FAILED"
    synthetic_data "render failed"
    return 1
}
export -f make_data synthetic_data
step render '^(models|workers|  |synthetic|thactl samples|render)' bash -c make_data

# -- (b) morpher training, stopped by its time limit ---------------------------------------
# SIGTERM from `timeout` reaches the whole process group, loader workers included: the run
# finishes its step, saves a checkpoint and exits (thactl 130, timeout 124).
train_for() {
    rm -rf "$WORK/run-morpher"
    timeout -k 15 -s TERM "$TRAIN_SECONDS" "$THACTL" train morpher --data "$WORK/data" --out "$WORK/run-morpher" \
        --device "$DEVICE" $NET $TRAIN_ARGS --examples 100000000 --val-every 100000000 \
        --checkpoint-every 100000000 --quiet
    local rc=$?
    ((rc == 124)) || { echo "train: expected the time limit to stop it (timeout 124), got exit $rc"; return 1; }
    "$PY" - "$WORK/run-morpher" <<'PY'
import json, os, sys
import torch
run = sys.argv[1]
recs = [r for r in map(json.loads, open(os.path.join(run, "metrics.jsonl"))) if r.get("split") == "train"]
ck = os.path.join(run, "checkpoint.pt")
seen = torch.load(ck, weights_only=False, map_location="cpu")["examples_seen"] if os.path.isfile(ck) else None
print(f"train stopped by the time limit (SIGTERM): checkpoint at {seen} examples" if seen else
      "train stopped by the time limit (SIGTERM): NO CHECKPOINT")
if len(recs) < 2:
    sys.exit(f"train: only {len(recs)} loss record(s) in {run}/metrics.jsonl")
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
sys.exit(0 if seen and last < first else 1)
PY
}
export -f train_for
step train '^(train|  loss)' bash -c train_for

# -- (d) poser inference -----------------------------------------------------------------
poser() {
    local b
    for b in 1 8; do
        "$PY" "$REPO/bench/bench_poser.py" --size "$SIZE" $POSER_ARGS --batch "$b" --no-flops || return
    done
    [[ $DEVICE == cuda ]] && echo "poser note: fp32 here means convolutions in TF32 (torch's default cudnn.allow_tf32)"
    return 0
}
export -f poser
step poser 'frames/s|poser note' bash -c poser

# -- (e) torchrun: DDP where there are 2 devices, SIGTERM, resume --------------------------
torchrun_train() {
    local run=$WORK/run-torchrun nproc=2 what
    if [[ $DEVICE == cpu ]]; then what="DDP, 2 processes (gloo, CPU)"
    elif ((NGPU >= 2)); then what="DDP, 2 processes (nccl, 2 GPUs)"
    else nproc=1; what="launcher only: 1 GPU, so 1 process, no process group, no DDP"; fi
    echo "torchrun: $what"
    rm -rf "$run"
    local cmd=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc" "$THACTL" train morpher
               --data "$WORK/data" --out "$run" --device "$DEVICE" $NET --batch-size "$TORCHRUN_BATCH" $TORCHRUN_ARGS --val-every 100000000
               --checkpoint-every 100000000 --quiet)
    timeout -k 15 -s TERM "$TORCHRUN_SECONDS" "${cmd[@]}" --examples 100000000
    "$PY" - "$run" "$nproc" "$LOGS/torchrun.log" <<'PY' || return
import os, sys
import torch
run, nproc, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(log, errors="replace").read()
stopped = text.count("re-run the same command to continue")
ck = os.path.join(run, "checkpoint.pt")
seen = torch.load(ck, weights_only=False, map_location="cpu")["examples_seen"] if os.path.isfile(ck) else 0
print(f"torchrun SIGTERM: {stopped} of {nproc} processes stopped cleanly; checkpoint at {seen} examples; "
      f"loader workers killed: {'killed by signal' in text}")
open(os.path.join(run, "seen"), "w").write(str(seen))
sys.exit(0 if stopped == nproc and seen > 0 and "killed by signal" not in text else 1)
PY
    local seen
    seen=$(cat "$run/seen")
    "${cmd[@]}" --examples $((seen + 2 * TORCHRUN_BATCH)) 2>&1 | grep -E "resuming|trained morpher" |
        sed 's/^/torchrun resume: /'
}
export -f torchrun_train
step torchrun '^torchrun' bash -c torchrun_train

# -- (a) fp32 throughput, TF32 stated ------------------------------------------------------
bench bench-fp32-eager "fp32 eager" --precision fp32

note "total $(($(date +%s) - START)) s (budget $BUDGET s); steps not ok:${NOT_OK:- none}; full logs in $REPORT/logs.tar.gz"
pack_logs
[[ -z $NOT_OK ]]
