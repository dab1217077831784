"""``hmr.predict``: the Python counterpart of ``hmr demo`` for one image."""

from __future__ import annotations

import os

import numpy as np

from hmr.inference.detect import Detections
from hmr.inference.images import as_rgb, read_image
from hmr.inference.pipeline import PersonResult, Pipeline

_PIPELINES: dict[tuple, Pipeline] = {}


def get_pipeline(**options) -> Pipeline:
    """A :class:`Pipeline` for these options, built once per process and reused (models load once)."""
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline(**options)
    return _PIPELINES[key]


def predict(image_or_path, boxes=None, *, smpl: str | os.PathLike | None = None, smpl_j19=None, checkpoint=None,
            refine: bool = False, device: str = "cpu", focal: float | None = None, intrinsics=None,
            tiles: bool = True, threshold: float | None = None, pipeline: Pipeline | None = None) -> list[PersonResult]:  # fmt: skip
    """People in one image with their 3D meshes, largest first (options as ``hmr demo``'s flags).

    image_or_path: an RGB array (H, W, 3) (uint8, or floats in [0, 1]) or an image file.
    boxes: (N, 4) x1,y1,x2,y2 pixels to use instead of detection.
    Returns one :class:`hmr.inference.pipeline.PersonResult` per person: ``box``, ``score``, ``keypoints``
    (BlazePose, or None), ``mesh`` (a batch-1 :class:`hmr.outputs.MeshOutput` in the full-image camera, or
    None for box-only people) and ``status``. ``pipeline``: reuse an existing :class:`Pipeline`.
    """
    if isinstance(image_or_path, (str, os.PathLike)):
        image = read_image(image_or_path)
    else:
        image = as_rgb(np.asarray(image_or_path))
    if pipeline is None:
        pipeline = get_pipeline(smpl=smpl, smpl_j19=smpl_j19, checkpoint=checkpoint, refine=refine, device=device, focal=focal,
                                intrinsics=intrinsics, tiles=tiles, threshold=threshold)  # fmt: skip
    det = Detections.from_boxes(boxes) if boxes is not None else None
    return pipeline(image, boxes=det).people
