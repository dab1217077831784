"""Keypoint sets and their definitions on a body model.

A keypoint set is a sparse linear map over the concatenation ``[joints (J); vertices (V)]``: keypoint
``k`` is ``sum_n weight[n] * point[col[n]]`` over the entries with ``row[n] == k``. This covers
joint picks, vertex picks and vertex regressors (e.g. ``SMPL_to_J19.pkl``) alike, and is how body model
files carry their own definitions (``docs/body_model_format.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

OPENPOSE25_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip
EXTRA19_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck_lsp",
    "head_top_lsp", "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m",
)  # fmt: skip
H36M17_NAMES = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine",
    "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder",
    "right_elbow", "right_wrist",
)  # fmt: skip
COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
BLAZEPOSE33_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)  # fmt: skip

KEYPOINT_SET_NAMES = {
    "openpose25": OPENPOSE25_NAMES,
    "extra19": EXTRA19_NAMES,
    "h36m17": H36M17_NAMES,
    "coco17": COCO17_NAMES,
    "blazepose33": BLAZEPOSE33_NAMES,
}

# HMR 2.0's OpenPose map over smplx's 45 joints: 24 SMPL joints followed by vertex picks whose SMPL
# (6890-vertex) ids are nose 332, reye 6260, leye 2800, rear 4071, lear 583, LBigToe 3216,
# LSmallToe 3226, LHeel 3387, RBigToe 6617, RSmallToe 6624, RHeel 6787.
_SMPL_OPENPOSE_JOINTS = {1: 12, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 0, 9: 2, 10: 5, 11: 8, 12: 1, 13: 4, 14: 7}
_SMPL_OPENPOSE_VERTICES = {
    0: 332,
    15: 6260,
    16: 2800,
    17: 4071,
    18: 583,
    19: 3216,
    20: 3226,
    21: 3387,
    22: 6617,
    23: 6624,
    24: 6787,
}
SMPL_NUM_VERTICES = 6890


@dataclass(frozen=True)
class KeypointSet:
    """Sparse definition of ``K`` keypoints over ``[joints; vertices]`` (see module doc)."""

    names: tuple[str, ...]
    rows: np.ndarray  # (N,) int
    cols: np.ndarray  # (N,) int, < J means joint, else vertex col - J
    weights: np.ndarray  # (N,) float

    @property
    def num(self) -> int:
        return len(self.names)

    @classmethod
    def from_dense(cls, names, joint_matrix: np.ndarray | None, vertex_matrix: np.ndarray | None, num_joints: int):
        """Build from dense (K, J) and/or (K, V) matrices; zeros are dropped."""
        rows, cols, weights = [], [], []
        for mat, offset in ((joint_matrix, 0), (vertex_matrix, num_joints)):
            if mat is None:
                continue
            r, c = np.nonzero(mat)
            rows.append(r)
            cols.append(c + offset)
            weights.append(mat[r, c])
        return cls(
            tuple(names),
            np.concatenate(rows).astype(np.int64),
            np.concatenate(cols).astype(np.int64),
            np.concatenate(weights).astype(np.float64),
        )

    def apply(self, joints: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
        """(B, J, 3), (B, V, 3) -> (B, K, 3)."""
        points = torch.cat([joints, vertices], dim=1)
        cols = torch.as_tensor(self.cols, device=points.device)
        rows = torch.as_tensor(self.rows, device=points.device)
        w = torch.as_tensor(self.weights, device=points.device, dtype=points.dtype)
        out = points.new_zeros(points.shape[0], self.num, 3)
        return out.index_add(1, rows, points[:, cols] * w[None, :, None])


def smpl_openpose25(num_joints: int = 24) -> KeypointSet:
    """BODY_25 as HMR 2.0 builds it; valid only for the 6890-vertex SMPL topology."""
    rows, cols = [], []
    for k, j in _SMPL_OPENPOSE_JOINTS.items():
        rows.append(k)
        cols.append(j)
    for k, v in _SMPL_OPENPOSE_VERTICES.items():
        rows.append(k)
        cols.append(num_joints + v)
    order = np.argsort(rows)
    return KeypointSet(OPENPOSE25_NAMES, np.asarray(rows)[order], np.asarray(cols)[order], np.ones(len(rows)))
