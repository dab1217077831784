"""2D skeleton drawing and 3D skeleton meshes (no OpenGL needed)."""

from __future__ import annotations

import numpy as np
import pytest

from hmr.body import KEYPOINT_SET_NAMES
from hmr.render import SIDE_COLORS, SKELETON_EDGES, draw_keypoints, skeleton_edges, skeleton_mesh, vertex_normals


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        i = parent[i]
    return i


def test_every_keypoint_set_has_a_connected_skeleton():
    assert set(KEYPOINT_SET_NAMES) <= set(SKELETON_EDGES)
    for name, names in {**KEYPOINT_SET_NAMES, "smpl24": None}.items():
        edges = skeleton_edges(name)
        k = edges.max() + 1 if names is None else len(names)
        assert len(set(map(tuple, np.sort(edges, 1).tolist()))) == len(edges), f"{name}: repeated edge"
        # connected: a union-find over the edges leaves one component holding every keypoint used
        parent = list(range(k))
        for a, b in edges:
            parent[_root(parent, a)] = _root(parent, b)
        used = set(edges.ravel().tolist())
        parts = 3 if name == "blazepose33" else 1  # MediaPipe draws eyes-nose-ears and mouth apart
        assert len({_root(parent, i) for i in used}) == parts, f"{name}: skeleton is not connected"
    # every keypoint of these sets is part of a bone
    for name in ("openpose25", "coco17", "blazepose33"):
        assert set(skeleton_edges(name).ravel().tolist()) == set(range(len(KEYPOINT_SET_NAMES[name])))


def test_unknown_set_is_a_clear_error():
    with pytest.raises(ValueError, match="no skeleton for keypoint set 'foo'; known: openpose25"):
        skeleton_edges("foo")


def _coco_person(offset=(0.0, 0.0)) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, 2] = 1.0
    kp[:, :2] = np.array([[50, 20]] * 17) + offset
    kp[5, :2], kp[7, :2], kp[9, :2] = [60, 40], [60, 70], [60, 100]  # left arm: a vertical line at x=60
    kp[6, :2], kp[8, :2], kp[10, :2] = [40, 40], [40, 70], [40, 100]  # right arm at x=40
    kp[:, :2] += offset
    return kp


def test_draws_bones_by_side_and_respects_confidence():
    image = np.zeros((120, 100, 3), np.uint8)
    kp = _coco_person()
    out = draw_keypoints(image, kp, "coco17", thickness=2, radius=2)
    assert image.sum() == 0  # the input is not modified
    np.testing.assert_array_equal(out[55, 60], SIDE_COLORS["left"])  # mid left upper arm
    np.testing.assert_array_equal(out[55, 40], SIDE_COLORS["right"])
    low = kp.copy()
    low[7, 2] = 0.1  # left elbow unsure: both left-arm bones and the elbow vanish
    out = draw_keypoints(image, low, "coco17", thickness=2, radius=2, threshold=0.3)
    assert out[45:95, 55:66].sum() == 0
    np.testing.assert_array_equal(out[55, 40], SIDE_COLORS["right"])


def test_several_people_with_their_colours():
    image = np.zeros((120, 200, 3), np.uint8)
    kps = np.stack([_coco_person(), _coco_person((100, 0))])[..., :2]  # no confidences: all drawn
    out = draw_keypoints(image, kps, "coco17", color=[(1.0, 0.0, 0.0), (0, 255, 0)], thickness=2)
    np.testing.assert_array_equal(out[55, 60], [255, 0, 0])
    np.testing.assert_array_equal(out[55, 160], [0, 255, 0])
    nan = kps.copy()
    nan[1, 7] = np.nan  # missing points are skipped, not drawn at the origin
    assert draw_keypoints(image, nan, "coco17")[:3, :3].sum() == 0


def test_bad_keypoint_shapes():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"keypoints for 'coco17' must be \(17, 2\|3\)"):
        draw_keypoints(image, np.zeros((25, 2)), "coco17")
    with pytest.raises(ValueError, match="image must be an RGB uint8"):
        draw_keypoints(image.astype(float), np.zeros((17, 2)), "coco17")


def test_skeleton_mesh_is_closed_outward_and_skips_missing_points():
    pts = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 0], [np.nan, 0, 0]], float)
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    v, f = skeleton_mesh(pts, edges, radius=0.05, sections=12)
    assert v.dtype == np.float32 and f.dtype == np.int32 and np.isfinite(v).all()
    assert f.max() < len(v)
    # 3 balls + 2 tubes (the edge to the missing point is dropped)
    v_ball, _ = skeleton_mesh(pts[:1], np.zeros((0, 2), int), radius=0.05, sections=12)
    assert len(v) == 3 * len(v_ball) + 2 * 2 * 12
    n = vertex_normals(v, f)
    balls = v[: 3 * len(v_ball)]
    owner = np.repeat(pts[:3], len(v_ball), 0)
    assert ((n[: len(balls)] * (balls - owner)).sum(1) > 0).all()
    np.testing.assert_allclose(np.linalg.norm(balls - owner, axis=1), 0.05 * 1.3, rtol=1e-5)
    tubes = v[len(balls) :]
    # the first tube runs along y at x=0, z=0 with radius 0.05
    np.testing.assert_allclose(np.hypot(tubes[:24, 0], tubes[:24, 2]), 0.05, rtol=1e-5)
