"""Video: who is who across frames (:class:`Tracker`) and smoothing of their estimates (:class:`OneEuroFilter`)."""

from hmr.tracking.smoothing import OneEuroFilter, project_to_rotation
from hmr.tracking.tracker import Track, Tracker

__all__ = ["OneEuroFilter", "Track", "Tracker", "project_to_rotation"]
