"""``hmr.predict``: the Python counterpart of ``hmr demo`` for one image."""

from __future__ import annotations

import os
import threading

import numpy as np

from hmr import config as config_io
from hmr.detection import Detections
from hmr.io.images import as_rgb, read_image
from hmr.pipeline.config import PipelineConfig
from hmr.pipeline.image import PersonResult, Pipeline

_PIPELINES: dict[str, Pipeline] = {}
_BUILDING = threading.Lock()


def get_pipeline(config: PipelineConfig) -> Pipeline:
    """The :class:`Pipeline` for this config, built once per process and reused (models load once)."""
    key = config_io.dump(config)
    with _BUILDING:
        if key not in _PIPELINES:
            _PIPELINES[key] = Pipeline(config)
        return _PIPELINES[key]


def predict(image_or_path, boxes=None, *, config: PipelineConfig | None = None, pipeline: Pipeline | None = None,
            **overrides) -> list[PersonResult]:  # fmt: skip
    """People in one image with their 3D meshes, largest first.

    image_or_path: an RGB array (H, W, 3) (uint8, or floats in [0, 1]) or an image file.
    boxes: (N, 4) x1,y1,x2,y2 pixels to use instead of detection.
    config: a :class:`PipelineConfig` (``hmr demo``'s settings); ``overrides`` change its sections as
    ``create_model`` does, e.g. ``predict(path, network={"checkpoint": "hmr2_vit_h"}, camera={"focal": 1500})``.
    pipeline: reuse an existing :class:`Pipeline` instead (its own config applies).
    Returns one :class:`hmr.pipeline.PersonResult` per person: ``box``, ``score``, ``keypoints`` (BlazePose, or
    None), ``mesh`` (a batch-1 :class:`hmr.outputs.MeshOutput` in the full-image camera, or None for box-only
    people) and ``status``.
    """
    if pipeline is None:
        pipeline = get_pipeline(config_io.override(config or PipelineConfig(), **overrides))
    elif overrides or config is not None:
        raise ValueError("give either pipeline= or a config (and overrides), not both")
    if isinstance(image_or_path, (str, os.PathLike)):
        image = read_image(image_or_path, pipeline.config.outputs.max_pixels)
    else:
        image = as_rgb(np.asarray(image_or_path))
    det = Detections.from_boxes(boxes) if boxes is not None else None
    return pipeline(image, boxes=det).people
