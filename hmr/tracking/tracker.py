"""Identities across video frames (Hungarian assignment).

Tracking assigns this frame's people to existing tracks by solving a linear assignment
(``scipy.optimize.linear_sum_assignment``) over a cost mixing box overlap and 3D joint distance; pairs that
overlap too little and whose joints are too far apart are never matched. Unmatched people start new
tracks; tracks unseen for ``max_age`` frames end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from hmr.geometry import box_iou


@dataclass
class Track:
    """A person followed over frames. box (4,) pixels and joints (J, 3) camera-frame metres (with
    translation) at the last frame seen, or None; ``age``: frames since then."""

    track_id: int
    box: np.ndarray
    joints: np.ndarray | None = None
    age: int = 0
    hits: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))


class Tracker:
    """Hungarian assignment over cost ``(1 - IoU) + joint_weight * mean joint distance (m)``.

    A pair is admissible when IoU >= ``min_iou``, or when both have joints whose mean distance is at most
    ``max_joint_dist`` metres and the box centres are at most ``max_shift`` box heights apart (walking poses
    look alike: joints alone would hand a track to someone across the image). Boxes are predicted with a
    constant velocity for frames without detections.
    """

    def __init__(self, min_iou: float = 0.2, max_joint_dist: float = 0.5, joint_weight: float = 1.0,
                 max_age: int = 10, max_shift: float = 0.5):  # fmt: skip
        self.min_iou, self.max_joint_dist, self.joint_weight = min_iou, max_joint_dist, joint_weight
        self.max_age, self.max_shift = max_age, max_shift
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, boxes: np.ndarray, joints: list[np.ndarray | None] | None = None) -> list[int]:
        """Assign ``boxes`` (N, 4) (and optional per-person camera-frame joints) to tracks; returns the N ids."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        joints = list(joints) if joints is not None else [None] * len(boxes)
        for t in self.tracks:
            t.age += 1
        ids = [-1] * len(boxes)
        if self.tracks and len(boxes):
            pred = np.stack([t.box + t.velocity for t in self.tracks])
            iou = box_iou(boxes, pred)
            dist = np.full(iou.shape, np.inf)
            for i, j_new in enumerate(joints):
                for k, t in enumerate(self.tracks):
                    if j_new is not None and t.joints is not None and j_new.shape == t.joints.shape:
                        dist[i, k] = float(np.linalg.norm(j_new - t.joints, axis=-1).mean())
            centre = (boxes[:, None, :2] + boxes[:, None, 2:] - pred[None, :, :2] - pred[None, :, 2:]) / 2
            height = (boxes[:, None, 3] - boxes[:, None, 1] + pred[None, :, 3] - pred[None, :, 1]) / 2
            near = np.linalg.norm(centre, axis=-1) <= self.max_shift * height
            ok = (iou >= self.min_iou) | ((dist <= self.max_joint_dist) & near)
            cost = (1 - iou) + self.joint_weight * np.where(np.isfinite(dist), np.minimum(dist, 1.0), 1.0)
            cost = np.where(ok, cost, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if ok[r, c]:
                    t = self.tracks[c]
                    t.velocity = 0.5 * t.velocity + 0.5 * (boxes[r] - t.box) / t.age
                    t.box, t.joints, t.age, t.hits = boxes[r], joints[r], 0, t.hits + 1
                    ids[r] = t.track_id
        for i in range(len(boxes)):
            if ids[i] < 0:
                self.tracks.append(Track(self._next_id, boxes[i], joints[i]))
                ids[i] = self._next_id
                self._next_id += 1
        self.tracks = [t for t in self.tracks if t.age <= self.max_age]
        return ids
