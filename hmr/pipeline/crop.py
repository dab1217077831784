"""Person crops for the networks, as 4D-Humans builds them at inference (hmr2-facts.md §3.1): the box padded to
the model's aspect (``config.bbox_shape``), then a square crop of its larger side."""

from __future__ import annotations

import numpy as np
import torch

from hmr.geometry.boxes import square_side


def person_crops(image: np.ndarray, boxes: np.ndarray, size: int, bbox_shape: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:  # fmt: skip
    """RGB uint8 image + (N, 4) boxes -> (N, 3, size, size) float crops (0..255), box centres (N, 2), square
    sides (N,) in pixels. Downscaling by more than 2.2x first blurs the image (against aliasing)."""
    import cv2

    crops, centres, sides = [], [], []
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = square_side(box[2:] - box[:2], bbox_shape)
        src = image
        down = side / size / 2
        if down > 1.1:
            src = cv2.GaussianBlur(image, (0, 0), sigmaX=(down - 1) / 2)
        scale = size / side
        m = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], np.float32)
        crops.append(cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
        centres.append((cx, cy))
        sides.append(side)
    pix = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() if crops else torch.zeros(0, 3, size, size)
    return pix, np.asarray(centres, np.float32).reshape(-1, 2), np.asarray(sides, np.float32)
