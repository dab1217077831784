"""Finding people in an image: the bundled offline SSDLite person detector (docs/detection.md)."""

from hmr.detection.detector import Detections, PersonDetector

__all__ = ["Detections", "PersonDetector"]
