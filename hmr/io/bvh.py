"""BVH motion of one person: the body model's skeleton (joint names as the model's, SMPL order) and its motion.

Conventions of the file:
- Frame: y up, the mesh files' frame (``hmr.io.exports.CAMERA_TO_MESH``: camera at the origin looking
  along -z), so the root moves through the scene as filmed. Units: centimetres (what most BVH tools expect;
  Blender: import with scale 0.01).
- Hierarchy: the root (``pelvis``) has OFFSET 0 and channels ``Xposition Yposition Zposition Zrotation
  Xrotation Yrotation``; its position channels are its absolute position. Every other joint has its rest
  offset from its parent (the person's shape, body frame = this frame at rest) and ``Zrotation Xrotation
  Yrotation``; leaves get an End Site towards the centre of the vertices they carry.
- Rotations: degrees, local ``R = Rz(z) @ Rx(x) @ Ry(y)`` (column vectors, intrinsic in channel order, the
  usual BVH reading), each channel unwrapped over time (no 360-degree jumps).
- MOTION: one row per video frame from the first keyed frame to the last (``Frame Time`` = 1/fps); row 0
  is frame ``animation.frames[0]``. Frames missing between keys (gaps in a track) are filled as the glTF
  file interpolates them: slerp of each joint's rotation, linear root position.
"""

from __future__ import annotations

import io
import os

import numpy as np

from hmr.io.animation import Animation
from hmr.io.exports import CAMERA_TO_MESH, write_bytes

ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
JOINT_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
CENTIMETRES = 100.0


def euler_zxy(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> angles (..., 3) = (z, x, y) radians with ``m = Rz(z) Rx(x) Ry(y)``."""
    x = np.arctan2(m[..., 2, 1], np.hypot(m[..., 0, 1], m[..., 1, 1]))
    gimbal = np.hypot(m[..., 0, 1], m[..., 1, 1]) < 1e-9
    z = np.where(gimbal, np.arctan2(m[..., 1, 0], m[..., 0, 0]), np.arctan2(-m[..., 0, 1], m[..., 1, 1]))
    y = np.where(gimbal, 0.0, np.arctan2(-m[..., 2, 0], m[..., 2, 2]))
    return np.stack([z, x, y], -1)


def zxy_matrix(angles: np.ndarray) -> np.ndarray:
    """(..., 3) angles (z, x, y) radians -> ``Rz(z) @ Rx(x) @ Ry(y)`` (..., 3, 3); inverse of :func:`euler_zxy`."""
    z, x, y = np.moveaxis(np.asarray(angles, np.float64), -1, 0)
    one, zero = np.ones_like(z), np.zeros_like(z)
    rz = np.stack([np.stack([np.cos(z), -np.sin(z), zero], -1), np.stack([np.sin(z), np.cos(z), zero], -1),
                   np.stack([zero, zero, one], -1)], -2)  # fmt: skip
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, np.cos(x), -np.sin(x)], -1),
                   np.stack([zero, np.sin(x), np.cos(x)], -1)], -2)  # fmt: skip
    ry = np.stack([np.stack([np.cos(y), zero, np.sin(y)], -1), np.stack([zero, one, zero], -1),
                   np.stack([-np.sin(y), zero, np.cos(y)], -1)], -2)  # fmt: skip
    return rz @ rx @ ry


def hierarchy_order(parents: np.ndarray) -> list[int]:
    """Joints depth first from the root, children in index order: the order of the BVH's joints and channels."""
    order, stack = [], [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack += [int(c) for c in np.flatnonzero(parents == j)[::-1]]
    return order


def _end_site(a: Animation, j: int) -> np.ndarray:
    """Offset of a leaf's End Site: towards the centre of the vertices it moves most (the hand, the head),
    else half its own bone."""
    own = np.argmax(a.weights, 1) == j
    if own.any():
        tip = a.vertices[own].mean(0) - a.rest_joints[j]
        if np.linalg.norm(tip) > 0.01:
            return tip
    bone = a.rest_joints[j] - a.rest_joints[a.parents[j]]
    return 0.5 * bone if np.linalg.norm(bone) > 0.01 else np.array([0.0, 0.05, 0.0])


def bvh_text(animation: Animation) -> str:
    """The BVH file of :func:`write_bvh` as text."""
    a = animation
    order = hierarchy_order(a.parents)
    out = io.StringIO()
    out.write("HIERARCHY\n")

    def vec(v):
        return " ".join(f"{x * CENTIMETRES:.6f}" for x in v)

    def joint(j: int, depth: int) -> None:
        pad = "\t" * depth
        if j == 0:
            out.write(f"ROOT {a.joint_names[0]}\n{{\n\tOFFSET {vec((0, 0, 0))}\n")
            out.write(f"\tCHANNELS 6 {' '.join(ROOT_CHANNELS)}\n")
        else:
            out.write(f"{pad}JOINT {a.joint_names[j]}\n{pad}{{\n")
            out.write(f"{pad}\tOFFSET {vec(a.rest_joints[j] - a.rest_joints[a.parents[j]])}\n")
            out.write(f"{pad}\tCHANNELS 3 {' '.join(JOINT_CHANNELS)}\n")
        children = [int(c) for c in np.flatnonzero(a.parents == j)]
        for c in children:
            joint(c, depth + 1)
        if not children:
            out.write(f"{pad}\tEnd Site\n{pad}\t{{\n{pad}\t\tOFFSET {vec(_end_site(a, j))}\n{pad}\t}}\n")
        out.write(f"{pad}}}\n")

    joint(0, 0)
    rot, pos = a.sample()  # every frame, gaps interpolated
    rot = rot.copy()
    rot[:, 0] = CAMERA_TO_MESH @ rot[:, 0]
    angles = np.degrees(np.unwrap(euler_zxy(rot[:, order]), axis=0))  # (N, J, 3)
    rows = np.concatenate([pos @ CAMERA_TO_MESH.T * CENTIMETRES, angles.reshape(len(rot), -1)], 1)
    out.write(f"MOTION\nFrames: {len(rows)}\nFrame Time: {1.0 / a.fps:.8f}\n")
    np.savetxt(out, rows, fmt="%.6f")
    return out.getvalue()


def write_bvh(path: str | os.PathLike, animation: Animation) -> None:
    """Write ``animation`` as BVH (atomically); conventions in this module's docstring."""
    write_bytes(path, bvh_text(animation).encode())
