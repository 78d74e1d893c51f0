#!/usr/bin/env bash
# On the GPU machine (the device tool; carry data/gpu-pack and data/gpu-wheels):
# fine-tunes RECIPE (default full: every block, bf16, at the pack's 224 px) on the packed photos, writing
# the model folder and the training log to OUT ($OUT on the device). Back here, score it on val
# and run the int8 gate on this machine's CPU (the GPU machine's CPU is not where it serves):
#   carsearch evaluate --model <files_at>/model --data ../shared/datasets/stanford-cars-dev
#   carsearch model quantize <files_at>/model --data ../shared/datasets/stanford-cars-dev
# A CPU rehearsal (this machine's venv, no wheels):
#   PYTHON=.venv/bin/python WHEELS=none ACCELERATOR=cpu EPOCHS=1 WORKERS=1 OUT=/tmp/gpu-out \
#   scripts/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:?set OUT}
python=${PYTHON:-python3}
site=/tmp/carsearch-site
if [ "${WHEELS:-data/gpu-wheels}" != none ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" data/gpu-wheels/*.whl
  export PYTHONPATH="$site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
start=$(date +%s)
"$python" -m carsearch train --data data/gpu-pack --out "$out/model" \
  --recipe "${RECIPE:-full}" --trainable-blocks "${BLOCKS:-0}" --image-size "${SIZE:-224}" \
  --accelerator "${ACCELERATOR:-gpu}" --devices 1 --workers "${WORKERS:-12}" \
  --epochs "${EPOCHS:-30}" --patience "${PATIENCE:-5}" --no-int8-check \
  --cache-dir /tmp/carsearch-cache --work-dir /tmp/carsearch-runs 2>&1 | tee "$out/train.log"
echo "train wall time: $(( $(date +%s) - start )) s" | tee -a "$out/train.log"
