#!/usr/bin/env bash
# The main job: `qstar improve` on Game of 24 from the rules-only checkpoint (three iterations with the settings
# of configs/demo.toml), printing the per-iteration table. Run again to see the finished run's table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dir=${QSTAR_DEMO_DIR:-runs/demo}
resume=()
[ -f "$dir/config.json" ] && resume=(--resume)
"${QSTAR_VENV:-.venv}/bin/qstar" improve --config configs/demo.toml --run-dir "$dir" "${resume[@]}" "$@"
