#!/usr/bin/env bash
# The whole test suite, with lint, format and import-layer checks first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${QSTAR_VENV:-.venv}
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/lint-imports"  # the layers contract of pyproject.toml: imports point down only
"$venv/bin/python" -m pytest "$@"
