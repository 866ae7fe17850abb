#!/usr/bin/env bash
# run_peers.sh: dsv4 and transformers on the same weights, same machine, same run.
#   bash bench/run_peers.sh [MODEL_DIR]   (default: creates the bench model in /tmp/dsv4-bench)
# Needs: tools/setup.sh done; pip install torch==2.13.0+cpu 'transformers>=5.24'.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(swift build -c release --show-bin-path)/dsv4"
MODEL="${1:-/tmp/dsv4-bench}"
[ -f "$MODEL/model.safetensors" ] || "$BIN" create-model --config models/bench/config.json --output "$MODEL" --seed 1
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, $(date -u +%F)"
echo "== dsv4 kernels";  "$BIN" bench kernels --json
echo "== dsv4 decode";   "$BIN" bench decode --model "$MODEL" --decode-tokens 32 --repeats 3 --json
echo "== dsv4 prefill";  "$BIN" bench prefill --model "$MODEL" --prompt-tokens 512 --repeats 3 --json
echo "== transformers (reference logits + speed)"
python3 tools/bench_reference.py "$MODEL" --prefill-tokens 512 --decode-tokens 16 --threads "$(nproc)"
echo "== exactness of dsv4 on the same weights"
python3 tools/check_logits.py "$MODEL" --chunk 7
if [ -x bench/llamacpp_peer.sh ]; then echo "== llama.cpp"; bash bench/llamacpp_peer.sh "$MODEL" || true; fi
