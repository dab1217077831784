"""The measuring helpers of benchmarks/bench_quality.py on tiny inputs with known answers."""

import math

import numpy as np
import pytest
import torch

from benchmarks.bench_quality import (
    bound_shares,
    box_iou,
    geodesic_deg,
    mask_iou,
    pelvis_aligned_error_mm,
    roi_window,
)
from hmr.geometry import axis_angle_to_matrix


def _rot(axis_angle) -> np.ndarray:
    return axis_angle_to_matrix(torch.tensor(axis_angle, dtype=torch.float64)).numpy()


def test_mask_iou_counts_intersection_over_union_inside_the_window():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True  # 16 px
    b[2:6, 2:6] = True  # 16 px, 4 shared
    assert mask_iou(a, b) == pytest.approx(4 / 28)  # not 4/16 (over one mask) nor 4/32 (over the sum)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, ~a) == 0.0
    # inside a window only what lies in it counts: columns 2-9 keep 8 px of a, all 16 of b
    assert mask_iou(a, b, (2, 0, 10, 10)) == pytest.approx(4 / 20)
    assert math.isnan(mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)))
    with pytest.raises(ValueError):
        mask_iou(a, b[:5])


def test_roi_window_is_the_square_clipped_to_the_image():
    assert roi_window([50, 40, 20, 0], 100, 80) == (40, 30, 60, 50)
    assert roi_window([5, 75, 40, 0], 100, 80) == (0, 55, 25, 80)  # clipped on the left and at the bottom
    assert roi_window([50, 40, 500, 0], 100, 80) == (0, 0, 100, 80)


def test_geodesic_angle_between_rotations():
    eye = np.eye(3)
    assert geodesic_deg(eye, eye) == pytest.approx(0.0, abs=1e-6)
    r = _rot([0.0, 0.0, math.radians(40)])
    assert geodesic_deg(r, eye) == pytest.approx(40.0)
    assert geodesic_deg(eye, r) == pytest.approx(40.0)
    # relative, not a difference of angles: two 30-degree turns about x and y are 42.2 degrees apart
    a, b = _rot([math.radians(30), 0, 0]), _rot([0, math.radians(30), 0])
    expected = math.degrees(math.acos((np.trace(a.T @ b) - 1) / 2))
    assert geodesic_deg(a, b) == pytest.approx(expected)
    c = math.cos(math.radians(30))  # tr(Rx^T Ry) = 2c + c^2
    assert expected == pytest.approx(math.degrees(math.acos((2 * c + c * c - 1) / 2)))
    assert expected == pytest.approx(42.18, abs=0.01)
    # composed with a common rotation on the right of both: unchanged (R1^T R2 does not see it)
    common = _rot([0.3, -0.5, 0.2])
    assert geodesic_deg(a @ common, b @ common) == pytest.approx(expected)
    assert geodesic_deg(_rot([0, math.radians(170), 0]), eye) == pytest.approx(170.0)
    assert geodesic_deg(np.stack([eye, r]), np.stack([r, r])) == pytest.approx([40.0, 0.0], abs=1e-4)


def test_box_iou_and_bound_shares():
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    betas = np.array([[3.0, -3.0, 0.5] + [0.0] * 7, [2.9995, 1.0, -2.5] + [0.0] * 7])
    s = bound_shares(betas, 3.0)
    assert s["people"] == 2
    assert s["share"] == pytest.approx(3 / 20)
    assert s["people_with_any"] == 1.0
    assert s["per_component_share"][:3] == [1.0, 0.5, 0.0]
    assert s["per_component_at_plus"][:2] == [1.0, 0.0]
    assert s["per_component_at_minus"][:2] == [0.0, 0.5]
    assert s["per_component_mean"][:3] == pytest.approx([2.99975, -1.0, -1.0])


def test_pelvis_aligned_error_ignores_a_common_offset():
    v = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    j = np.array([[0.0, 0.5, 0.0]])
    assert pelvis_aligned_error_mm(v + 2.0, j + 2.0, v, j) == pytest.approx(0.0)
    # one vertex 10 mm off: mean over the two vertices is 5 mm
    assert pelvis_aligned_error_mm(v + [[0, 0, 0], [0.01, 0, 0]], j, v, j) == pytest.approx(5.0)
