#!/usr/bin/env bash
# Issue 10/13's GPU figures in one device call (about 8 minutes on one H200), logs and JSON under $OUT:
#   1. `bench --stage product`: engine-only, estimator.stream, `infer --no-vis` and `track --no-video`
#      as commands on a 3,000-frame video (steady rate, start-up split into building and compiling),
#      and `infer DIR` on 1,900 photos of 15 sizes against the estimator
#   2. GPU AP: `eval` on the shared COCO images, Inductor FP16 against eager FP32
#   3. `bench --stage serve` on the GPU: batch 64, 64 clients
# Run from the repository root with the models and data copied by scripts/gpu_prepare.py into .gpu/
# (carry .gpu and .whl): bash scripts/gpu_session.sh
set -u
export POSEKIT_MODELS=${POSEKIT_MODELS:-$PWD/.gpu/models} POSEKIT_CACHE=${POSEKIT_CACHE:-/tmp/pkcache} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/posekit-gpu-session}
mkdir -p "$OUT/product"
GPU=(--device cuda --backend inductor --precision fp16)
step() { local name=$1 limit=$2; shift 2; echo "== $name"; timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "$name rc=$?"; tail -12 "$OUT/$name.log"; }
# 1,900 photos of 15 sizes (the shared 19, 100 times): infer DIR batches them on one canvas per chunk
mkdir -p /tmp/pk-photos && for n in $(seq -w 1 100); do for f in .gpu/coco-val2017-mini/images/*.jpg; do
    ln -f "$f" "/tmp/pk-photos/$n-$(basename "$f")" 2>/dev/null || cp "$f" "/tmp/pk-photos/$n-$(basename "$f")"; done; done
step product 400 python3 -m posekit bench --stage product --video .gpu/demo.mp4 --frames 3000 --images /tmp/pk-photos \
    "${GPU[@]}" --commands infer,track --track-args=--no-video --warm-runs 0 --json "$OUT/product/product.json" \
    --work /tmp/pk-product
cp /tmp/pk-product/commands.log "$OUT/product/" 2>/dev/null
ANN=(--ann .gpu/coco-val2017-mini/person_keypoints_val2017_mini.json --images .gpu/coco-val2017-mini/images --boxes both)
step eval-inductor-fp16 120 python3 -m posekit eval "${ANN[@]}" "${GPU[@]}" --json "$OUT/eval-inductor-fp16.json"
step eval-torch-fp32 120 python3 -m posekit eval "${ANN[@]}" --device cuda --backend torch --precision fp32 --json "$OUT/eval-torch-fp32.json"
step serve 150 python3 -m posekit bench --stage serve --images .gpu/coco-val2017-mini/images --device cuda \
    --backends inductor:fp16 --serve-batches 64 --clients 64 --requests 2000 --max-seconds 60 --json "$OUT/serve.json"
