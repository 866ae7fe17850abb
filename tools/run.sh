#!/usr/bin/env bash
# run.sh: sets everything up (idempotently) and starts the OpenAI/Anthropic-compatible server
# on the bundled default model, on http://127.0.0.1:8000 (extra arguments go to `dsv4 serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec "$(swift build -c release --show-bin-path)/dsv4" serve "$@"
