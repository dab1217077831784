#!/usr/bin/env bash
# Create or refresh .venv at the repository root with everything the toolkit and its tests need.
# Idempotent: skips the install when the requirement files are unchanged since the last run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# hmr.render needs headless OpenGL through EGL: Mesa's (llvmpipe on the CPU). Installed only when missing.
if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q 'libEGL_mesa.so.0'; then
  egl_pkgs="libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $egl_pkgs >/dev/null
  else
    echo "setup_env.sh: hmr.render needs Mesa's EGL; install it with: sudo apt-get install $egl_pkgs" >&2
  fi
fi
# tests/test_web.py drives Debian's headless chromium through its chromedriver. Installed only when missing.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  web_pkgs="chromium chromium-driver"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $web_pkgs >/dev/null
  else
    echo "setup_env.sh: the browser test needs Debian's chromium; install it with: sudo apt-get install $web_pkgs" >&2
  fi
fi
want="$(cat pyproject.toml requirements/*.txt scripts/setup_env.sh | sha256sum | cut -d' ' -f1)"
# The tools that check the exports (tests/test_animation_export.py), as users open the files:
# Blender as a Python module in its own venv (bpy pins numpy<2 on Python 3.11), driven as a subprocess;
# the Khronos glTF validator from npm (node is needed; apt installs it when missing).
bpy_venv="$root/.venv-bpy"
if [ ! -x "$bpy_venv/bin/python" ] || [ "$(cat "$bpy_venv/.hmr-setup-stamp" 2>/dev/null)" != "$want" ]; then
  [ -x "$bpy_venv/bin/python" ] || python3 -m venv "$bpy_venv"
  "$bpy_venv/bin/python" -m pip install --quiet --disable-pip-version-check "bpy==$(cat requirements/bpy-version.txt)"
  echo "$want" > "$bpy_venv/.hmr-setup-stamp"
fi
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
node_dir="$root/.node"
if command -v npm >/dev/null && [ "$(cat "$node_dir/.hmr-setup-stamp" 2>/dev/null)" != "$want" ]; then
  mkdir -p "$node_dir"
  npm install --silent --no-audit --no-fund --prefix "$node_dir" "gltf-validator@$(cat requirements/gltf-validator-version.txt)" >/dev/null
  echo "$want" > "$node_dir/.hmr-setup-stamp"
elif ! command -v npm >/dev/null; then
  echo "setup_env.sh: the glTF export test needs node and npm; install them (apt-get install nodejs npm)" >&2
fi
venv="$root/.venv"
stamp="$venv/.hmr-setup-stamp"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt)
"${pip[@]}" --upgrade pip
# The local CPU build of torch first, so nothing else can resolve a CUDA one.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[test,build]"
# mediapipe 0.10.21 is the last release shipping BlazePose's models; its metadata pins numpy<2 and
# jax although it runs without them, so it is installed without dependencies (its real ones are in pyproject).
"${pip[@]}" --no-deps mediapipe==0.10.21
echo "$want" > "$stamp"
