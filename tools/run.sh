#!/usr/bin/env bash
# run.sh: sets everything up (idempotently) and runs dsv4's main job on the bundled default
# model. Until the HTTP server lands this is: describe the model, then compute logits for a
# sample token sequence in all three feeding modes and check that they agree.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
BIN="$(swift build -c release --show-bin-path)/dsv4"
MODEL="${DSV4_MODEL:-${DSV4_HOME:-$HOME/.cache/dsv4}/models/dsv4-tiny}"
"$BIN" inspect --model "$MODEL"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/ids.json" <<'PY'
import json, sys
ids = list(range(1000, 1600, 3))  # 200 ids
json.dump(ids, open(sys.argv[1], "w"))
PY
for mode in full decode chunked=64; do
    "$BIN" logits --model "$MODEL" --input "$WORK/ids.json" --output "$WORK/$mode.safetensors" --mode "$mode"
done
python3 - "$WORK" <<'PY'
import sys
from safetensors.numpy import load_file
import numpy as np
w = sys.argv[1]
full = load_file(f"{w}/full.safetensors")["logits"]
for m in ["decode", "chunked=64"]:
    d = np.abs(load_file(f"{w}/{m}.safetensors")["logits"] - full).max()
    print(f"max |logits({m}) - logits(full)| = {d:.3g}")
print("greedy next tokens after each of the last 5 positions:", full[-5:].argmax(1).tolist())
PY
