"""Inference: person detection, BlazePose landmarks, the image/video pipeline behind ``hmr demo`` and
``hmr.predict`` (docs/detection.md, docs/outputs.md)."""
