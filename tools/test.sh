#!/usr/bin/env bash
# test.sh: sets up (idempotently) and runs every test: the Swift suites (debug build), then
# the black-box API tests with the official `openai` client against `dsv4 serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
export SWIFT_DETERMINISTIC_HASHING=1
bash tools/setup.sh
python3 -c "import openai, pytest, jsonschema, anthropic, agents" >/dev/null 2>&1 ||
    python3 -m pip install -q --disable-pip-version-check openai pytest jsonschema anthropic openai-agents
# Filters keep the output short but never decide the exit status: under `pipefail` a pipeline
# fails when the build or the tests fail, and a filter's own status is ignored (grep exits 1
# when it selects nothing). A failed build stops here with its errors shown, so stale test
# binaries from an earlier build are never run.
only() { grep -E -A3 "$1" || [ $? = 1 ]; }   # grep's "nothing selected" is not a failure
without() { grep -vE "$1" || [ $? = 1 ]; }
swift build --build-tests 2>&1 | only "error:|Build complete"
swift test --skip-build 2>&1 | without "^(Test Case|◇|↳)" | tail -n 30
# API tests: real tiny model (no --model) and a scripted model for exact tool-call outputs.
DSV4_BIN="$(swift build --show-bin-path)/dsv4" python3 -m pytest -q Tests/python
