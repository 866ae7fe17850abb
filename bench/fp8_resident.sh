#!/usr/bin/env bash
# bench/fp8_resident.sh: resident memory of dsv4 on a ~1 GB checkpoint in DeepSeek's released
# layout (FP8 E4M3 + 128×128 E8M0 scales, FP4 routed experts + per-32 scales, shards + index).
#
# Usage: bash bench/fp8_resident.sh [OUT_DIR]   (default /tmp/dsv4-fp8-1gb; never inside git)
# Prints: checkpoint size, `dsv4 inspect` (resident memory after load), and the peak resident
# memory of `dsv4 logits` on 16 and 64 tokens (which pages in the weights it uses).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/dsv4-fp8-1gb}
BIN=$(swift build -c release --show-bin-path)/dsv4
[ -x "$BIN" ] || nice -n 10 swift build -c release --product dsv4
if [ ! -f "$OUT/model.safetensors.index.json" ]; then
    /usr/bin/time -f "create-model: %e s wall, peak RSS %M KiB" \
        "$BIN" create-model --config bench/configs/fp8-1gb.json --output "$OUT" --quantize fp8 --seed 0
fi
echo "== checkpoint: $(du -sb "$OUT" | cut -f1) bytes in $(ls "$OUT"/*.safetensors | wc -l) shards"
echo "== dsv4 inspect --model $OUT"
"$BIN" inspect --model "$OUT"
for n in 16 64; do
    python3 -c "import json,random; random.seed($n); print(json.dumps([random.randrange(32000) for _ in range($n)]))" > "$OUT/ids-$n.json"
    /usr/bin/time -f "logits ($n tokens, full): %e s wall, peak RSS %M KiB" \
        "$BIN" logits --model "$OUT" --input "$OUT/ids-$n.json" --output "$OUT/logits-$n.safetensors" --mode full
done
