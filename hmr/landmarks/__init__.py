"""Body landmarks per person box: MediaPipe's bundled BlazePose (33 2D and 3D landmarks)."""

from hmr.landmarks.blazepose import PoseEstimator, PoseKeypoints

__all__ = ["PoseEstimator", "PoseKeypoints"]
