"""Offline full-body person detection: the bundled SSDLite-MobileNetV2 COCO detector run with onnxruntime.

The model ships in ``hmr/assets/detector/`` (converted once by ``scripts/build_detector.sh``); nothing is
downloaded. Choice of model, thresholds and tiling are measured in docs/detection.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hmr.geometry import box_iou

DETECTOR_PATH = Path(__file__).resolve().parent.parent / "assets" / "detector" / "ssdlite_mobilenet_v2_coco.onnx"
PERSON_CLASS = 1  # COCO label map of the TF Object Detection zoo
# Chosen on real photos and vtest.avi frames (docs/detection.md): low, because BlazePose's landmark model
# then rejects the boxes with no body in them (hmr.pipeline.observe).
DEFAULT_THRESHOLD = 0.2


@dataclass
class Detections:
    """People found in one image. boxes (N, 4) float32 pixels ``(x1, y1, x2, y2)``; scores (N,) in [0, 1],
    highest first. ``source``: ``"ssdlite"`` (bundled detector) or ``"user"`` (given boxes, score 1)."""

    boxes: np.ndarray
    scores: np.ndarray
    source: str = "ssdlite"

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def from_boxes(cls, boxes, scores=None) -> Detections:
        """User-given boxes ``(N, 4)`` ``x1, y1, x2, y2`` pixels; raises ValueError when malformed."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) if len(boxes) else np.zeros((0, 4), np.float32)
        if not np.isfinite(b).all() or (b[:, 2] <= b[:, 0]).any() or (b[:, 3] <= b[:, 1]).any():
            raise ValueError("boxes must be finite x1,y1,x2,y2 with x2 > x1 and y2 > y1 (pixels)")
        s = np.ones(len(b), np.float32) if scores is None else np.asarray(scores, np.float32)
        return cls(b, s, "user")


def _suppress(boxes: np.ndarray, scores: np.ndarray, iou: float, contained: float) -> np.ndarray:
    """Greedy NMS that also drops a box lying mostly (``contained``) inside a better one: tiles cut people
    at their borders, giving part-of-body boxes that plain IoU does not remove. Returns kept indices."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if keep:
            k = boxes[keep]
            lo = np.maximum(k[:, :2], boxes[i, :2])
            hi = np.minimum(k[:, 2:], boxes[i, 2:])
            inter = np.clip(hi - lo, 0, None).prod(-1)
            own = max(float((boxes[i, 2:] - boxes[i, :2]).prod()), 1e-9)
            if (box_iou(boxes[i : i + 1], k)[0] > iou).any() or (inter / own > contained).any():
                continue
        keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)


class PersonDetector:
    """SSDLite-MobileNetV2 (COCO) person detector on onnxruntime.

    threshold: minimum score (default DEFAULT_THRESHOLD). tiles: also run on 2x2 overlapping tiles (60% of each side) and merge, which
    finds small, distant people (about 5x the time; used for still images). threads: onnxruntime intra-op
    threads (None: its default).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, threshold: float | None = None,
                 tiles: bool = False, threads: int | None = None, device: str = "cpu"):  # fmt: skip
        import onnxruntime as ort

        path = Path(model_path) if model_path else DETECTOR_PATH
        if not path.is_file():
            raise FileNotFoundError(
                f"person detector model not found: {path}; it ships with the package "
                "(rebuild it with scripts/build_detector.sh)"
            )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.tiles = tiles
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold

    def _run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = dict(zip(self.output_names, self.session.run(None, {self.input_name: image[None]}), strict=True))
        n = int(out["num_detections:0"][0])
        keep = (out["detection_classes:0"][0, :n] == PERSON_CLASS) & (
            out["detection_scores:0"][0, :n] >= self.threshold
        )
        h, w = image.shape[:2]
        boxes = out["detection_boxes:0"][0, :n][keep][:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)
        return boxes.astype(np.float32), out["detection_scores:0"][0, :n][keep].astype(np.float32)

    def __call__(self, image: np.ndarray, tiles: bool | None = None) -> Detections:
        """RGB uint8 (H, W, 3) image -> people, best first; ``tiles`` overrides the instance's setting."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image)
        boxes, scores = self._run(image)
        if self.tiles if tiles is None else tiles:
            h, w = image.shape[:2]
            th, tw = int(round(h * 0.6)), int(round(w * 0.6))
            parts_b, parts_s = [boxes], [scores]
            for oy in (0, h - th):
                for ox in (0, w - tw):
                    b, s = self._run(np.ascontiguousarray(image[oy : oy + th, ox : ox + tw]))
                    # Tiles are for small people: drop boxes cut by a tile edge inside the image, and large
                    # ones, which are pieces of people the full image already sees whole.
                    cut = np.zeros(len(b), bool)
                    if ox > 0:
                        cut |= b[:, 0] < 2
                    if ox + tw < w:
                        cut |= b[:, 2] > tw - 2
                    if oy > 0:
                        cut |= b[:, 1] < 2
                    if oy + th < h:
                        cut |= b[:, 3] > th - 2
                    ok = ~cut & (b[:, 3] - b[:, 1] < 0.5 * th)
                    parts_b.append(b[ok] + np.array([ox, oy, ox, oy], np.float32))
                    parts_s.append(s[ok])
            boxes, scores = np.concatenate(parts_b), np.concatenate(parts_s)
        keep = _suppress(boxes, scores, iou=0.5, contained=0.7)
        return Detections(boxes[keep].reshape(-1, 4), scores[keep])
