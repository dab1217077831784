"""Axis-aligned boxes (x1, y1, x2, y2 pixels)."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes -> (N, M) intersection over union."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def square_side(size, bbox_shape: tuple[int, int] | None = None) -> float:
    """Side of the square crop for a box of ``size`` (w, h) or one side: the larger side, after padding the box
    to the aspect ``bbox_shape`` (w, h) when given (4D-Humans' ``expand_to_aspect_ratio``; HMR 2.0 uses
    (192, 256) at inference and evaluation)."""
    w, h = (float(v) for v in np.broadcast_to(np.asarray(size, np.float64), (2,)))
    if bbox_shape is not None:
        tw, th = bbox_shape
        if h / max(w, 1e-6) < th / tw:
            h = w * th / tw
        else:
            w = h * tw / th
    return max(w, h)
