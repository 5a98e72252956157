#!/usr/bin/env bash
# Set up a fresh virtual environment and run the whole test suite (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages: Mesa EGL for headless rendering, Chromium for the browser tests (Debian names).
need=()
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
export PYOPENGL_PLATFORM=egl
.venv/bin/python -m pytest -q "$@"
