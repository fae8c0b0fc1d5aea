#!/usr/bin/env bash
# Hash every artefact a refactor must leave unchanged, to diff two checkouts' behaviour:
#   bench/fingerprint_behaviour.sh CHECKOUT OUT_DIR      -> OUT_DIR/hashes.txt
#   diff OLD_OUT/hashes.txt NEW_OUT/hashes.txt           (empty = identical behaviour)
# Artefacts: the default `thactl render` (samples, shards, manifest), a 64 px render of two real
# models, preview / sheet / toon PNGs and `info` of both, and fixed-seed tiny morpher and rotator
# runs (weights, metrics without timings, sample grids). Runs CHECKOUT's code with this
# checkout's venv (PY=... to override); real models from THACTL_TEST_MODELS or ../shared/models.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
REPO=$(cd "$1" && pwd); OUT=$(realpath -m "$2")
PY=${PY:-$HERE/.venv/bin/python}
SHARED=${THACTL_TEST_MODELS:-$HERE/../shared/models}
rm -rf "$OUT"; mkdir -p "$OUT"
M=$(mktemp -d); trap 'rm -rf "$M"' EXIT
mkdir -p "$M/pmd" "$M/pmx"
cp "$SHARED"/mmd_default_pmd/{miku.pmd,*.bmp,*.sph} "$M/pmd/"
cp "$SHARED"/animasa_miku_pmx_j3/* "$M/pmx/"
export PYTHONPATH="$REPO"
thactl() { (cd "$OUT" && "$PY" -c 'import sys, cli; sys.exit(cli.main(sys.argv[1:]))' "$@"); }
thactl render --out demo -q >/dev/null
thactl render --models "$M" --out two --count 40 --val-count 0 --test-count 0 --size 64 --workers 1 -q >/dev/null 2>&1
for f in "$M/pmd/miku.pmd" "$M/pmx/index.pmx"; do
  m=$(basename "$f")
  thactl preview "$f" -o "prev-$m.png" --size 128 >/dev/null
  thactl preview "$f" --sheet -o "sheet-$m.png" --size 128 >/dev/null
  thactl preview "$f" --pose 0.3 -0.5 0.2 1 0 0.4 --shading toon -o "toon-$m.png" --size 128 >/dev/null
  thactl info "$f" 2>&1 | sed "s|$M/||g" > "$OUT/info-$m.txt" || true
done
TINY=(--base-channels 8 --num-downsample 1 --num-res-blocks 1 --batch-size 4 --examples 32 --val-every 16 --val-examples 4 --quiet)
thactl train morpher --data demo --out run-m "${TINY[@]}" --checkpoint-every 16 >/dev/null 2>&1
thactl train rotator --data demo --out run-r "${TINY[@]}" >/dev/null 2>&1
"$PY" - "$OUT" > "$OUT/hashes.txt" <<'PY'
import hashlib, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def h(b): return hashlib.sha256(b).hexdigest()[:16]
for p in sorted(out.rglob("*")):
    if not p.is_file() or p.name == "hashes.txt":
        continue
    rel = p.relative_to(out).as_posix()
    if p.suffix == ".safetensors":
        from safetensors.numpy import load_file
        d = load_file(str(p))
        print(rel, h(b"".join(k.encode() + d[k].tobytes() for k in sorted(d))))
    elif p.suffix in (".h5", ".png", ".pmx") or p.name.startswith("info-"):
        print(rel, h(p.read_bytes()))
    elif p.name == "manifest.json":
        j = json.loads(p.read_text()); j.pop("created", None); j.pop("timing", None)
        j.get("request", {}).pop("models", None)  # a temporary folder
        print(rel, h(json.dumps(j, sort_keys=True).encode()))
    elif p.name == "metrics.jsonl":
        recs = [json.loads(line) for line in p.read_text().splitlines()]
        for r in recs:
            for k in [k for k in r if "per_s" in k or k in ("time", "elapsed", "wall_s")]:
                r.pop(k)
            for k, v in r.items():  # threaded reductions differ in the last bit; weights are exact
                if isinstance(v, float):
                    r[k] = float(f"{v:.5g}")
        print(rel, h(json.dumps(recs, sort_keys=True).encode()))
PY
wc -l < "$OUT/hashes.txt"
