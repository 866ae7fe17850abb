#!/usr/bin/env bash
# test.sh: sets up (idempotently) and runs every test: the Swift suites (debug build), then
# the black-box API tests with the official `openai` client against `dsv4 serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
export SWIFT_DETERMINISTIC_HASHING=1
bash tools/setup.sh
python3 -c "import openai, pytest" >/dev/null 2>&1 || python3 -m pip install -q --disable-pip-version-check openai pytest
swift build --build-tests 2>&1 | grep -E "error:|Build complete" || true
swift test --skip-build 2>&1 | grep -vE "^(Test Case|◇|↳)" | tail -n 30
# API tests: real tiny model (no --model) and a scripted model for exact tool-call outputs.
DSV4_BIN="$(swift build --show-bin-path)/dsv4" python3 -m pytest -q Tests/python
