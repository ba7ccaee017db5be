#!/usr/bin/env bash
# Install acemusic and everything it needs on a fresh Debian/Ubuntu machine. Idempotent; safe to rerun.
#   bash scripts/install.sh            # system packages (if root or sudo), venv at .venv, package + extras
#   VENV=/path/to/venv bash scripts/install.sh
# Works without root: system packages are skipped with a warning (rendering to WAV then needs FluidSynth).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"

apt_pkgs=(fluidsynth fluid-soundfont-gm opus-tools)  # opus-tools: opusenc/opusdec, the codec comparison
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" = none ]; then
    echo "warning: cannot install ${missing[*]} (not root, no sudo); WAV rendering will need them" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: an unpinned torch pulls gigabytes of CUDA wheels; 2.13.0 is the local CPU build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[audio,eval,dev]"
# basic-pitch (transcription) ships its ONNX weights; --no-deps because its declared requirements pull TensorFlow
# and downgrade numpy. Everything it needs on the ONNX path is in the `audio` extra above.
"$VENV/bin/python" -c "import basic_pitch" 2>/dev/null || "${PIP[@]}" --no-deps "basic-pitch==0.4.0"
echo "acemusic installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
