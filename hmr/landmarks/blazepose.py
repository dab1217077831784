"""2D/3D body landmarks per detected person: MediaPipe BlazePose's landmark model on a box-given region.

BlazePose's own person detector keys on faces and misses people seen from behind or small people
(docs/detection.md). We therefore skip it and feed MediaPipe's ``PoseLandmarkByRoiCpu`` subgraph (shipped
in the mediapipe 0.10.21 wheel with ``pose_landmark_full.tflite``; nothing downloads) a square region
made from our detector's box, as BlazePose's tracker does from the previous frame's landmarks. The model
then also runs on people turned away. Its pose-presence check (score >= 0.5) still applies: a region with
no body gives no landmarks, and the person is reported with the box only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, replace

import numpy as np

from hmr.body.keypoints import BLAZEPOSE33_NAMES

ROI_SCALE = 1.25  # BlazePose enlarges its body square by 1.25 around the body centre
_GRAPH = """
input_stream: "image"
input_stream: "roi"
input_side_packet: "model_complexity"
input_side_packet: "enable_segmentation"
output_stream: "landmarks"
output_stream: "world_landmarks"
output_stream: "segmentation_mask"
node {
  calculator: "PoseLandmarkByRoiCpu"
  input_side_packet: "MODEL_COMPLEXITY:model_complexity"
  input_side_packet: "ENABLE_SEGMENTATION:enable_segmentation"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  output_stream: "LANDMARKS:landmarks"
  output_stream: "WORLD_LANDMARKS:world_landmarks"
  output_stream: "SEGMENTATION_MASK:segmentation_mask"
}
"""


@dataclass
class PoseKeypoints:
    """BlazePose's 33 landmarks (``hmr.body.keypoints.BLAZEPOSE33_NAMES`` order) for one person.

    keypoints_2d (33, 2) pixels in the full image. confidence (33,) MediaPipe visibility in [0, 1] (how
    likely the point is visible, not occluded), set to 0 for points outside the image: BlazePose extrapolates
    limbs cut off by the border with high visibility, and fitting to those invents poses (e.g. a person cut
    at the hips fitted sitting). presence (33,) likelihood that the point is in the image.
    keypoints_3d (33, 3) metres, MediaPipe world landmarks: origin at the hip centre, axes aligned with the
    camera frame (+x right, +y down, +z away from the camera), so the camera frame's orientation without
    its translation. roi (4,) the square region the model ran on: centre x, centre y, side (pixels),
    rotation (radians). mask (H, W) float32 in [0, 1], the full image: BlazePose's person segmentation
    inside ``roi`` (0 outside it), or None when the estimator runs without segmentation.
    """

    keypoints_2d: np.ndarray
    confidence: np.ndarray
    presence: np.ndarray
    keypoints_3d: np.ndarray
    roi: np.ndarray
    mask: np.ndarray | None = None

    names = BLAZEPOSE33_NAMES

    def without_mask(self) -> PoseKeypoints:
        """These landmarks without the mask (a full image each: kept only until the person is fitted)."""
        return self if self.mask is None else replace(self, mask=None)


def box_to_roi(box: np.ndarray, scale: float = ROI_SCALE) -> np.ndarray:
    """(x1, y1, x2, y2) -> square region (cx, cy, side, rotation=0) around the box, upright."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * scale, 0.0], np.float32)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the C++ side's one-time start-up notices (TFLite delegate, absl, MediaPipe warnings about
    features this graph does not use), which go straight to file descriptor 2. Python exceptions still
    carry MediaPipe's error messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class PoseEstimator:
    """BlazePose (full, model_complexity=1) landmarks for given boxes or regions of an RGB image.

    Not thread-safe: use one instance per thread. Every call is independent (no smoothing inside).
    segmentation: also return BlazePose's person mask (about 1 ms more per person here).
    """

    def __init__(self, segmentation: bool = False):
        try:
            import mediapipe as mp
            from mediapipe.framework.formats import rect_pb2
            from mediapipe.python._framework_bindings import resource_util
        except ImportError as err:
            raise RuntimeError(
                f"mediapipe is needed for keypoints ({err}); install it with "
                "`.venv/bin/python -m pip install --no-deps mediapipe==0.10.21` (scripts/setup_env.sh does)"
            ) from None
        self._mp, self._rect = mp, rect_pb2.NormalizedRect
        resource_util.set_resource_dir(os.path.dirname(os.path.dirname(mp.__file__)))
        self._graph = mp.CalculatorGraph(graph_config=_GRAPH)
        self._out: dict = {}
        for name in ("landmarks", "world_landmarks"):
            self._graph.observe_output_stream(
                name, lambda s, p: self._out.__setitem__(s, mp.packet_getter.get_proto(p))
            )
        self.segmentation = bool(segmentation)
        if self.segmentation:
            self._graph.observe_output_stream(
                "segmentation_mask",
                lambda s, p: self._out.__setitem__(s, mp.packet_getter.get_image(p).numpy_view().copy()),
            )
        self._graph.start_run({"model_complexity": mp.packet_creator.create_int(1),
                               "enable_segmentation": mp.packet_creator.create_bool(self.segmentation)})  # fmt: skip
        self._ts = 0
        with _quiet_native_stderr():  # the notices come with the first frame
            self.from_roi(np.zeros((64, 64, 3), np.uint8), np.array([32, 32, 64, 0], np.float32))

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    def from_roi(self, image: np.ndarray, roi: np.ndarray) -> PoseKeypoints | None:
        """Landmarks inside one square region (cx, cy, side, rotation); None when no body is there."""
        mp = self._mp
        h, w = image.shape[:2]
        cx, cy, side, rot = (float(v) for v in roi)
        rect = self._rect(x_center=cx / w, y_center=cy / h, width=side / w, height=side / h, rotation=rot)
        self._ts += 1
        self._out.clear()
        frame = mp.packet_creator.create_image_frame(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        try:
            self._graph.add_packet_to_input_stream("image", frame.at(self._ts))
            self._graph.add_packet_to_input_stream("roi", mp.packet_creator.create_proto(rect).at(self._ts))
        finally:
            # Also when Ctrl-C or SIGTERM is raised between the two calls: a frame left in flight calls back into
            # Python from MediaPipe's threads, and a callback during interpreter shutdown aborts the process.
            self._graph.wait_until_idle()
        if "landmarks" not in self._out:
            return None
        lms = self._out["landmarks"].landmark
        world = self._out["world_landmarks"].landmark
        mask = self._out.get("segmentation_mask")
        if mask is not None:
            mask = np.asarray(mask, np.float32).reshape(h, w)
        xy = np.array([[p.x * w, p.y * h] for p in lms], np.float32)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        return PoseKeypoints(
            keypoints_2d=xy,  # pixels of the full image
            confidence=np.array([p.visibility for p in lms], np.float32) * inside,
            presence=np.array([p.presence for p in lms], np.float32),
            keypoints_3d=np.array([[p.x, p.y, p.z] for p in world], np.float32),
            roi=np.asarray(roi, np.float32),
            mask=mask,
        )

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> list[PoseKeypoints | None]:
        """Landmarks per box ``(N, 4)`` x1,y1,x2,y2 pixels (None where the model sees no body).

        One upright pass per box. A second pass on the rotated, hip-centred region the landmarks define
        (BlazePose's tracking step) was tried and dropped: it drifts on people cut by the image border.
        """
        return [self.from_roi(image, box_to_roi(box)) for box in np.asarray(boxes, np.float32).reshape(-1, 4)]
