"""A synthetic walk of a body model in the camera frame (tests and benchmarks of the animated exports)."""

from __future__ import annotations

import numpy as np
import torch

from hmr.geometry import axis_angle_to_matrix


def walk_pose(num_frames: int, fps: float = 25.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-24 local rotations (T, 24, 3, 3) and root translations (T, 3) of a person walking to the right
    across the image, 5 m away, turning a little: hips, knees, arms and elbows swing at 1 Hz strides, with
    small random wobbles on every joint so that no rotation is trivial."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    phase = 2 * np.pi * 1.0 * t
    aa = rng.normal(scale=0.08, size=(num_frames, 24, 3))
    aa[:, 1, 0] += 0.5 * np.sin(phase)  # left hip: flexion about the body's x axis
    aa[:, 2, 0] -= 0.5 * np.sin(phase)
    aa[:, 4, 0] += 0.6 * (1 + np.sin(phase - 1.2))  # knees bend backwards (positive x)
    aa[:, 5, 0] += 0.6 * (1 - np.sin(phase - 1.2))
    aa[:, 16, 2] -= 1.2  # shoulders down into an A-pose, swinging against the legs
    aa[:, 17, 2] += 1.2
    aa[:, 16, 0] -= 0.4 * np.sin(phase)
    aa[:, 17, 0] += 0.4 * np.sin(phase)
    aa[:, 18, 1] += 0.5  # elbows
    aa[:, 19, 1] -= 0.5
    rot = axis_angle_to_matrix(torch.from_numpy(aa)).numpy()
    # Root: upright in the camera frame (180 degrees about x) facing the walking direction (+x), yawing.
    yaw = np.pi / 2 + 0.3 * np.sin(0.5 * phase)
    upright = axis_angle_to_matrix(torch.tensor([[np.pi, 0.0, 0.0]], dtype=torch.float64)).numpy()[0]
    turn = axis_angle_to_matrix(torch.from_numpy(np.c_[np.zeros(num_frames), yaw, np.zeros(num_frames)])).numpy()
    rot[:, 0] = upright @ turn @ rot[:, 0]
    transl = np.c_[-1.0 + 1.3 * t, 0.2 + 0.03 * np.cos(2 * phase), 5.0 + 0.2 * t]
    return rot, transl
