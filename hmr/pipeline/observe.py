"""The 2D stage of the pipeline: people (box, score) and their BlazePose landmarks in one image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hmr.detection import Detections
from hmr.landmarks import PoseEstimator, PoseKeypoints

# A detection the landmark model sees no body in is kept (box only) only when the detector is this sure:
# measured, the landmark model rejects the detector's false positives (fruit close-ups score 0.6) while
# confident boxes without landmarks are people hidden behind something (docs/detection.md).
BOX_ONLY_MIN_SCORE = 0.8


@dataclass
class PersonObservation:
    """One person in one image: box (4,) x1,y1,x2,y2 pixels, detection score, source ("ssdlite"/"user"),
    BlazePose landmarks or None (box only: the landmark model found no body in the box)."""

    box: np.ndarray
    score: float
    source: str
    keypoints: PoseKeypoints | None


def observe_people(image: np.ndarray, detect: Callable[[np.ndarray], Detections] | None, pose: PoseEstimator,
                   boxes: Detections | None = None, box_only_min_score: float = BOX_ONLY_MIN_SCORE) -> list[PersonObservation]:  # fmt: skip
    """Detect people (``detect(image)``, or use the given boxes) and estimate their landmarks, largest first.

    Detections with no landmarks are dropped unless scored >= ``box_only_min_score``; user boxes are all kept.
    """
    det = boxes if boxes is not None else detect(image)
    kps = pose(image, det.boxes)
    people = [
        PersonObservation(b.astype(np.float32), float(s), det.source, kp)
        for b, s, kp in zip(det.boxes, det.scores, kps, strict=True)
        if kp is not None or det.source == "user" or s >= box_only_min_score
    ]
    people = _drop_same_body(people)
    people.sort(key=lambda p: -float((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])))
    return people


def _drop_same_body(people: list[PersonObservation], tol: float = 0.1) -> list[PersonObservation]:
    """Two boxes on one person (overlapping tiles, a box around a pair) give the same landmarks: keep the
    better-scored one when the median landmark distance is under ``tol`` x the body's height."""
    kept: list[PersonObservation] = []
    for p in sorted(people, key=lambda q: -q.score):
        if p.keypoints is not None and p.source != "user":
            a = p.keypoints.keypoints_2d
            height = float(np.ptp(a[:, 1])) or 1.0
            if any(
                q.keypoints is not None
                and np.median(np.linalg.norm(q.keypoints.keypoints_2d - a, axis=1)) < tol * height
                for q in kept
            ):
                continue
        kept.append(p)
    return kept
