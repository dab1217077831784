"""Side and top views: rotate a camera-frame scene about its centre and frame it in the image."""

from __future__ import annotations

import numpy as np


def orbit_rotation(yaw: float, pitch: float) -> np.ndarray:
    """(3, 3) rotation of the scene, camera frame (x right, y down, z forward), angles in degrees.

    ``yaw`` turns about the image's vertical axis: +90 shows the left side of a person who faces the
    camera (they then face image-left). ``pitch`` then tilts about the image's horizontal axis: +90 looks
    straight down from above (the person's front points to the image bottom).
    """
    a, b = np.radians(yaw), np.radians(pitch)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ ry


def orbit(
    vertices: list[np.ndarray],
    rotation: np.ndarray,
    center: np.ndarray,
    focal_length: np.ndarray,
    principal_point: np.ndarray,
    image_size: tuple[int, int],
    margin: float = 0.05,
) -> list[np.ndarray]:
    """Rotate meshes about ``center`` (3,) and place them so that all of them are in view.

    The centre goes onto the optical axis at its original distance, or further back when the rotated
    scene would not fit inside the image less ``margin`` (a fraction of each side). Returns new (V, 3)
    camera-frame vertex arrays (float64).
    """
    pts = [(np.asarray(v, np.float64) - center) @ rotation.T for v in vertices]
    depth = float(np.linalg.norm(center))
    if not pts or sum(len(p) for p in pts) == 0:
        return [p + [0, 0, depth] for p in pts]
    allp = np.concatenate(pts)
    need = [depth, 0.1 - allp[:, 2].min()]  # keep everything 10 cm in front of the camera
    for axis, size in enumerate(image_size):
        lo, hi = margin * size - principal_point[axis], (1 - margin) * size - principal_point[axis]
        coord = allp[:, axis] * focal_length[axis]
        # u = f x / (z + d) + c must lie in [lo + c, hi + c]  =>  d >= f x / hi - z (x > 0), f x / lo - z (x < 0)
        pos, neg = coord > 0, coord < 0
        if pos.any() and hi > 0:
            need.append((coord[pos] / hi - allp[pos, 2]).max())
        if neg.any() and lo < 0:
            need.append((coord[neg] / lo - allp[neg, 2]).max())
    return [p + [0, 0, max(need)] for p in pts]
