#!/usr/bin/env bash
# The main job: evaluate the shipped policy on the 100 Tree-of-Thoughts test games of Game of 24.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${QSTAR_VENV:-.venv}/bin/qstar" eval --task game24 --split test --search greedy "$@"
