#!/usr/bin/env bash
# test.sh: sets up (idempotently) and runs every test: the Swift suites (debug build), the
# CLI's end-to-end checks, and the release-build speed check.
set -euo pipefail
cd "$(dirname "$0")/.."
export SWIFT_DETERMINISTIC_HASHING=1
DSV4_SETUP_SKIP_MODEL=${DSV4_SETUP_SKIP_MODEL:-} bash tools/setup.sh
swift build --build-tests 2>&1 | grep -E "error:|Build complete" || true
swift test --skip-build 2>&1 | tee /tmp/dsv4-swift-test.log | grep -vE "^(Test Case|◇|↳)" | tail -n 40
grep -qE "Test run with [0-9]+ tests? .*passed|Test run with [0-9]+ tests in [0-9]+ suites passed" /tmp/dsv4-swift-test.log
