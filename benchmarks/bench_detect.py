"""Person detector recall, false positives and speed on real pictures. Writes docs/benchmarks.md.

Ground truth: tests/data/detection_gt.json (49 people on three example photos and eight vtest.avi frames,
boxes drawn by eye). A person counts as found when a detection overlaps its box with IoU >= 0.4 (one
detection per person, Hungarian matching); unmatched detections are false positives.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.detection import PersonDetector  # noqa: E402
from hmr.geometry import box_iou  # noqa: E402
from hmr.io.images import read_image  # noqa: E402
from hmr.landmarks.blazepose import PoseEstimator  # noqa: E402
from hmr.pipeline.observe import observe_people  # noqa: E402

MATCH_IOU = 0.4


def match(gt: np.ndarray, det: np.ndarray) -> int:
    if not len(gt) or not len(det):
        return 0
    iou = box_iou(gt, det)
    rows, cols = linear_sum_assignment(-iou)
    return int((iou[rows, cols] >= MATCH_IOU).sum())


def evaluate(detect, images: dict[str, np.ndarray], gt: dict) -> tuple[int, int, int, str]:
    """``detect(image) -> (N, 4) boxes``; returns found, total, false positives, "median (min)" ms per image."""
    found = total = false_pos = 0
    times = []
    for name, img in images.items():
        start = time.perf_counter()
        det = detect(img)
        times.append(time.perf_counter() - start)
        boxes = np.asarray(gt[name], np.float32)
        m = match(boxes, det)
        found, total, false_pos = found + m, total + len(boxes), false_pos + len(det) - m
    return found, total, false_pos, f"{1000 * np.median(times):.1f} ({1000 * np.min(times):.1f})"


def landmark_coverage(pose: PoseEstimator, images: dict[str, np.ndarray], gt: dict) -> tuple[int, int]:
    """People (hand-drawn boxes) in which BlazePose's landmark model finds a body."""
    results = [kp is not None for name, img in images.items() for kp in pose(img, np.asarray(gt[name], np.float32))]
    return sum(results), len(results)


def main() -> None:
    gt = {
        k: v
        for k, v in json.loads((ROOT / "tests/data/detection_gt.json").read_text()).items()
        if not k.startswith("_")
    }
    images = {name: read_image(ROOT / name) for name in gt}
    pose = PoseEstimator()
    rows = []
    for tiles in (False, True):
        for thr in (0.2, 0.3, 0.4, 0.5):
            det = PersonDetector(threshold=thr, tiles=tiles)
            for with_pose in (False, True) if thr == 0.2 else (False,):
                if with_pose:
                    fn = lambda im, d=det: np.array([p.box for p in observe_people(im, d, pose)]).reshape(-1, 4)  # noqa: E731
                else:
                    fn = lambda im, d=det: d(im).boxes  # noqa: E731
                evaluate(fn, images, gt)  # warm-up
                found, total, fp, ms = evaluate(fn, images, gt)
                mode = ("full + 2x2 tiles" if tiles else "full image") + (" + BlazePose check" if with_pose else "")
                rows.append([mode, thr, f"{found}/{total} ({100 * found / total:.0f}%)", fp, ms])
                print(rows[-1], flush=True)
    md = (
        "## Person detection (`benchmarks/bench_detect.py`)\n\n"
        f"Bundled SSDLite-MobileNetV2 (ONNX, onnxruntime), CPU: {machine()}. 49 people on 3 photos "
        "(`examples/`) and 8 frames of vtest.avi (`tests/data/vtest/`, 768x576, people 35-150 px tall); "
        f"found = IoU >= {MATCH_IOU} with a hand-drawn box. ms per image: median (fastest) over the 11 "
        f"pictures; 1-minute load average at the end {os.getloadavg()[0]:.1f} (the CPU was shared).\n\n"
        + table(["mode", "threshold", "recall", "false positives", "ms/image"], rows)
    )
    lm, n = landmark_coverage(pose, images, gt)
    md += (
        f"\n\nBlazePose landmarks inside the hand-drawn boxes (our box-driven region, no face detector): "
        f"{lm}/{n} people, including the man turned away in basketball1/2.png."
    )
    write_section("detect", md)


if __name__ == "__main__":
    main()
