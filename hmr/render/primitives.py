"""Meshes built from 3D keypoints: a ball-and-stick skeleton to render 3D keypoints in any view."""

from __future__ import annotations

import numpy as np


def _sphere(sections: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit UV sphere: ``sections`` meridians, ``sections // 2`` bands, poles shared."""
    rings = max(sections // 2, 2)
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    ring = np.stack(np.broadcast_arrays(np.sin(theta)[:, None] * np.cos(phi), np.cos(theta)[:, None],
                                        np.sin(theta)[:, None] * np.sin(phi)), -1).reshape(-1, 3)  # fmt: skip
    verts = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]])
    j = np.arange(sections)
    nxt = (j + 1) % sections
    faces = [np.stack([np.zeros_like(j), 1 + nxt, 1 + j], 1)]
    for r in range(rings - 2):
        a, b = 1 + r * sections, 1 + (r + 1) * sections
        faces += [np.stack([a + j, a + nxt, b + j], 1), np.stack([a + nxt, b + nxt, b + j], 1)]
    last = 1 + (rings - 2) * sections
    faces.append(np.stack([last + j, last + nxt, np.full_like(j, len(verts) - 1)], 1))
    return verts, np.concatenate(faces)


def _tube(sections: int) -> tuple[np.ndarray, np.ndarray]:
    """Open unit cylinder along +z from z=0 to z=1 with radius 1."""
    phi = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    circle = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], 1)
    verts = np.concatenate([circle, circle + [0, 0, 1]])
    j = np.arange(sections)
    nxt = (j + 1) % sections
    faces = np.concatenate([np.stack([j, nxt, sections + j], 1), np.stack([nxt, sections + nxt, sections + j], 1)])
    return verts, faces


def skeleton_mesh(points, edges, radius=0.02, joint_radius=None, sections: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Balls at ``points`` (K, 3) joined by tubes along ``edges`` (E, 2) (e.g. ``skeleton_edges(name)``).

    radius: tube radius, a scalar or one per edge (metres). joint_radius: ball radius, scalar or one per
    point (default: 1.3 x the largest radius of the tubes that meet there). Returns float32 (V, 3)
    vertices and int32 (F, 3) faces, outward-facing; non-finite points and their edges are skipped.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    rad = np.broadcast_to(np.asarray(radius, np.float64), (len(edges),))
    if joint_radius is None:
        jr = np.zeros(len(pts))
        np.maximum.at(jr, edges.ravel(), np.repeat(rad, 2) * 1.3)
        jr[jr == 0] = rad.max(initial=0.02) * 1.3
    else:
        jr = np.broadcast_to(np.asarray(joint_radius, np.float64), (len(pts),))
    ok = np.isfinite(pts).all(1)
    sv, sf = _sphere(sections)
    tv, tf = _tube(sections)
    verts, faces, n = [], [], 0
    for k in np.flatnonzero(ok):
        verts.append(sv * jr[k] + pts[k])
        faces.append(sf + n)
        n += len(sv)
    for (a, b), r in zip(edges, rad, strict=True):
        if not (ok[a] and ok[b]):
            continue
        axis = pts[b] - pts[a]
        length = np.linalg.norm(axis)
        if length < 1e-9:
            continue
        z = axis / length
        x = np.cross(z, [1.0, 0, 0] if abs(z[0]) < 0.9 else [0, 1.0, 0])
        x /= np.linalg.norm(x)
        frame = np.stack([x * r, np.cross(z, x) * r, axis])  # rows: images of the unit tube's axes
        verts.append(tv @ frame + pts[a])
        faces.append(tf + n)
        n += len(tv)
    if not verts:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    return np.concatenate(verts).astype(np.float32), np.concatenate(faces).astype(np.int32)
