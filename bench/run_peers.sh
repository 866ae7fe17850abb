#!/usr/bin/env bash
# run_peers.sh: dsv4 and transformers on the same weights, same machine, same run.
#   bash bench/run_peers.sh [MODEL_DIR]   (default: creates the bench model in /tmp/dsv4-bench,
#                                           and its FP8/FP4 released-layout twin in MODEL_DIR-fp8)
# Needs: tools/setup.sh done; pip install torch==2.13.0+cpu 'transformers>=5.24'.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(swift build -c release --show-bin-path)/dsv4"
MODEL="${1:-/tmp/dsv4-bench}"
[ -f "$MODEL/model.safetensors" ] || "$BIN" create-model --config models/bench/config.json --output "$MODEL" --seed 1
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, $(date -u +%F)"
echo "== dsv4 kernels";  "$BIN" bench kernels --json
FP8="${MODEL}-fp8"
[ -f "$FP8/model.safetensors.index.json" ] || "$BIN" create-model --config models/bench/config.json --output "$FP8" --seed 1 --quantize fp8
echo "== dsv4 decode (BF16)";     "$BIN" bench decode --model "$MODEL" --decode-tokens 32 --repeats 3 --json
echo "== dsv4 decode (FP8/FP4)";  "$BIN" bench decode --model "$FP8" --decode-tokens 32 --repeats 3 --json
echo "== dsv4 prefill (BF16)";    "$BIN" bench prefill --model "$MODEL" --prompt-tokens 512 --repeats 3 --json
echo "== dsv4 prefill (FP8/FP4)"; "$BIN" bench prefill --model "$FP8" --prompt-tokens 512 --repeats 3 --json
echo "== transformers (reference logits + speed)"
python3 tools/bench_reference.py "$MODEL" --prefill-tokens 512 --decode-tokens 16 --threads "$(nproc)"
echo "== exactness of dsv4 on the same weights"
python3 tools/check_logits.py "$MODEL" --chunk 7
if [ -x bench/llamacpp_peer.sh ]; then echo "== llama.cpp"; bash bench/llamacpp_peer.sh "$MODEL" || true; fi
