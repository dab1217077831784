"""Mean parameters the SMPL head predicts residuals from: 6D pose, betas and weak-perspective camera.

Two sources:

* :meth:`MeanParams.from_npz` reads a user's ``smpl_mean_params.npz`` (SPIN's file used by 4D-Humans and
  Project_HMR: ``pose`` (144,) in SPIN's 6D layout, ``shape`` (10,), ``cam`` (3,)) and keeps the numbers
  exactly. The head decodes them with HMR 2.0's layout as HMR 2.0 does (docs/conventions.md), so a model
  trained from that file starts from the same (partly degenerate) rotations as the reference.
* :meth:`MeanParams.from_body_model` derives them when no file is available: the root rotated 180° about
  x (an upright body facing the camera in the y-down camera frame), every other joint at the rest pose,
  zero betas (the template shape) and ``cam = [0.9, 0, 0]``. The rotations are encoded in the head's own
  6D layout, so the untrained head decodes exactly those rotations.

Checkpoints store the mean parameters as buffers, so loading weights never needs either source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hmr.geometry import matrix_to_rot6d
from hmr.io.arrays import load_npz

# SPIN's mean weak-perspective camera: scale 0.9 fills ~90% of the crop's [-1, 1] extent with a 2 m span.
DEFAULT_CAM = (0.9, 0.0, 0.0)
# Body frame (+y up, +z facing) -> camera frame (+y down, +z away from the camera).
UPRIGHT_FACING_CAMERA = np.diag([1.0, -1.0, -1.0])


@dataclass
class MeanParams:
    """pose (6J,) 6D per joint, root first; betas (S,); cam (3,) [s, tx, ty]."""

    pose: np.ndarray
    betas: np.ndarray
    cam: np.ndarray

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> MeanParams:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(
                f"mean parameters file not found: {p} (smpl_mean_params.npz ships with 4D-Humans' hmr2_data "
                "and Project_HMR's data/ folder; without it the defaults derived from the body model are used)"
            )
        data = load_npz(p)
        try:
            arrays = {k: np.asarray(data[k], dtype=np.float32).reshape(-1) for k in ("pose", "shape", "cam")}
        except KeyError as err:
            raise ValueError(f"{p}: not a mean-parameters file, missing array {err} (needs pose, shape, cam)") from None
        if not all(np.isfinite(a).all() for a in arrays.values()):
            raise ValueError(f"{p}: mean parameters hold NaN or infinite values")
        return cls(arrays["pose"], arrays["shape"], arrays["cam"])

    @classmethod
    def from_body_model(cls, body_model, num_betas: int = 10, layout: str = "hmr2") -> MeanParams:
        """Upright, camera-facing rest pose of ``body_model``; see the module doc."""
        rot = np.broadcast_to(np.eye(3), (body_model.num_joints, 3, 3)).copy()
        rot[0] = UPRIGHT_FACING_CAMERA
        pose = matrix_to_rot6d(torch.from_numpy(rot), layout).reshape(-1).numpy()
        return cls(pose.astype(np.float32), np.zeros(num_betas, np.float32), np.asarray(DEFAULT_CAM, np.float32))

    def check(self, num_joints: int, num_betas: int) -> None:
        got = (self.pose.shape, self.betas.shape, self.cam.shape)
        want = ((6 * num_joints,), (num_betas,), (3,))
        if got != want:
            raise ValueError(
                f"mean parameters have shapes pose {got[0]}, betas {got[1]}, cam {got[2]}; the head needs "
                f"pose {want[0]} ({num_joints} joints x 6D), betas {want[1]}, cam (3,)"
            )
