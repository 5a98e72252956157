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
# The registry's torch is a CUDA build: the venv takes about 6 GB. Say so before pip fails half-way on a full disk.
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${free_kb:-0}" -lt $((7 * 1024 * 1024)) ]; then
  echo "setup_and_test.sh: only $((free_kb / 1024)) MB free on $(df -P . | awk 'NR==2 {print $6}');" \
       "the virtual environment needs about 6 GB (torch and torchvision are CUDA builds)." >&2
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
export PYOPENGL_PLATFORM=egl
.venv/bin/python -m pytest -q "$@"
