#!/usr/bin/env bash
# The whole test suite, with lint and format checks first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${QSTAR_VENV:-.venv}
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/python" -m pytest "$@"
