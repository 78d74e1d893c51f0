#!/usr/bin/env bash
# Rebuilds carembed/shipped/ as shipped: carsearch train's default recipe on every photo of the
# dev set, train and val alike (--all-classes), seed 0; then its int8 graph, calibrated on the
# train photos and gated on the val photos (carsearch model quantize). About 25 minutes on
# 2 CPU cores; needs ./scripts/setup.sh dev first.
#   scripts/build-shipped-model.sh [DATASET]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/datasets/stanford-cars-dev}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/carsearch train --data "$data" --all-classes --seed 0 --no-int8-check \
  --out "$work/model" --cache-dir data/cache --work-dir "$work/runs"
.venv/bin/carsearch model quantize "$work/model" --data "$data" --split val \
  --onnx-dir "$work/onnx"
if [ ! -f "$work/model/model.int8.onnx" ]; then
  echo "the int8 graph did not pass its gate: carembed/shipped is left as it was" >&2
  exit 1
fi
cp "$work/model/config.json" "$work/model/model.safetensors" "$work/model/model.int8.onnx" \
  carembed/shipped/
echo "carembed/shipped: model $(.venv/bin/carsearch model info carembed/shipped | awk '/^model version/ {print $3}')"
