import math

import pytest
import torch

from hmr.geometry import (
    Camera,
    axis_angle_to_matrix,
    cam_crop_to_full,
    crop_cam_to_translation,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    perspective_projection,
    procrustes_align,
    quaternion_to_matrix,
    rot6d_to_matrix,
    rotation_between,
    so3_right_jacobian,
    weak_perspective_projection,
)


def _random_rotations(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    aa = torch.randn(n, 3, generator=g, dtype=torch.float64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=g, dtype=torch.float64) * math.pi * 0.999
    return aa


def test_axis_angle_roundtrip_and_orthonormal():
    aa = _random_rotations(500)
    r = axis_angle_to_matrix(aa)
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(500, dtype=torch.float64))
    assert torch.allclose(matrix_to_axis_angle(r), aa, atol=1e-9)
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(r)), r, atol=1e-12)


def test_axis_angle_golden():
    r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    # +90 deg about z maps x to y (right-handed, column vectors).
    assert torch.allclose(r @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-7)


@pytest.mark.parametrize("layout", ["hmr2", "spin"])
def test_rot6d_roundtrip(layout):
    r = axis_angle_to_matrix(_random_rotations(100))
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(r, layout), layout), r, atol=1e-12)


def test_rot6d_layouts_decode_mean_pose_differently():
    # First six numbers of smpl_mean_params.npz's pose (hmr2-facts 3.3): SPIN layout.
    x = torch.tensor([1.0, 0.0, 0.0, -1.0000005, 0.0, 1.5e-7], dtype=torch.float64)
    spin = rot6d_to_matrix(x, "spin")
    assert torch.allclose(spin, torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)), atol=1e-6)
    hmr2 = rot6d_to_matrix(x, "hmr2")
    # HMR 2.0's decoding: a1 = [1,0,0], a2 ~ [-1,0,1.5e-7] -> b2 = +z: a 90 deg rotation about x.
    expected = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)
    assert torch.allclose(hmr2, expected, atol=1e-6)


def test_crop_to_full_hand_computed():
    pred_cam = torch.tensor([[0.5, 0.1, -0.2]])
    # 640x480 image, box of 200 px centred at (400, 300); f_full = 5000/256*640 = 12500.
    t = cam_crop_to_full(
        pred_cam, torch.tensor([[400.0, 300.0]]), torch.tensor([200.0]), torch.tensor([[640.0, 480.0]])
    )
    bs = 200 * 0.5
    expected = torch.tensor([[0.1 + 2 * 80 / bs, -0.2 + 2 * 60 / bs, 2 * 12500 / bs]])
    assert torch.allclose(t, expected)
    assert torch.allclose(crop_cam_to_translation(pred_cam), torch.tensor([[0.1, -0.2, 2 * 5000 / (256 * 0.5)]]))


def test_crop_projection_equals_weak_perspective_at_depth():
    # HMR 2.0: projecting with f/256 at t = crop_cam_to_translation gives s(X+t)/2 for points at depth 0.
    pts = torch.tensor([[[0.1, 0.3, 0.0], [-0.2, 0.05, 0.0]]])
    cam = torch.tensor([[0.8, 0.05, -0.1]])
    t = crop_cam_to_translation(cam)
    proj = perspective_projection(pts, t, torch.tensor([5000.0 / 256]))
    assert torch.allclose(proj, weak_perspective_projection(pts, cam) / 2, atol=1e-6)


def test_camera_projection_and_full_image_defaults():
    cam = Camera.full_image(640, 480)
    assert cam.focal_length[0, 0].item() == pytest.approx(12500.0)
    px = cam.project(torch.tensor([[[0.0, 0.0, 10.0], [1.0, -0.5, 10.0]]]))
    assert torch.allclose(px, torch.tensor([[[320.0, 240.0], [320 + 1250.0, 240 - 625.0]]]))
    k = cam.intrinsics()
    assert k[0, 0, 2].item() == 320 and k[0, 2, 2].item() == 1


def test_procrustes_recovers_similarity():
    g = torch.Generator().manual_seed(3)
    src = torch.randn(4, 30, 3, generator=g, dtype=torch.float64)
    rot = axis_angle_to_matrix(_random_rotations(4, 1))
    tgt = 1.7 * src @ rot.transpose(1, 2) + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(procrustes_align(src, tgt), tgt, atol=1e-9)


def test_so3_right_jacobian_linearises_the_exponential():
    torch.manual_seed(0)
    aa = torch.cat([torch.randn(64, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                    torch.full((1, 3), 1e-5, dtype=torch.float64)])  # fmt: skip
    d = 1e-6 * torch.randn_like(aa)
    lhs = axis_angle_to_matrix(aa + d)
    rhs = axis_angle_to_matrix(aa) @ axis_angle_to_matrix((so3_right_jacobian(aa) @ d[..., None])[..., 0])
    torch.testing.assert_close(lhs, rhs, atol=1e-11, rtol=0)


def test_rotation_between_turns_a_onto_b_by_the_smallest_angle():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 3, generator=g, dtype=torch.float64), torch.randn(50, 3, generator=g, dtype=torch.float64)
    r = rotation_between(a * 3.0, b)  # lengths do not matter
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    torch.testing.assert_close((r @ an[..., None])[..., 0], bn)
    # Smallest: the rotation angle equals the angle between the directions; the axis is perpendicular to both.
    angle = torch.acos(((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    torch.testing.assert_close(angle, torch.acos((an * bn).sum(-1).clamp(-1, 1)))
    torch.testing.assert_close(rotation_between(an, an), torch.eye(3, dtype=torch.float64).expand(50, 3, 3))
    # One target for many directions broadcasts.
    assert rotation_between(a, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)).shape == (50, 3, 3)


def test_camera_rows_repeat_and_cat():
    cam = Camera(torch.tensor([[1.0, 2], [3, 4], [5, 6]]), torch.tensor([[7.0, 8], [9, 10], [11, 12]]),
                 torch.tensor([[100.0, 50], [200, 100], [300, 150]]))  # fmt: skip
    assert cam[1].focal_length.tolist() == [[3, 4]] and cam[-1].image_size.tolist() == [[300, 150]]
    assert cam[torch.tensor([True, False, True])].principal_point.tolist() == [[7, 8], [11, 12]]
    assert cam[[2, 0]].focal_length.tolist() == [[5, 6], [1, 2]]
    tiled = cam[:2].repeat(2)
    assert tiled.batch_size == 4 and tiled.focal_length[:, 0].tolist() == [1, 3, 1, 3]
    both = Camera.cat([cam[2], cam[0]])
    assert both.image_size.tolist() == [[300, 150], [100, 50]] and both.principal_point[1].tolist() == [7, 8]


def test_box_iou_by_hand():
    from hmr.geometry import box_iou

    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 4, 4]], dtype=torch.float64).numpy()
    b = torch.tensor([[5.0, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=torch.float64).numpy()
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0].tolist() == [50 / 150, 0.0, 1.0]  # half overlap, none, identical
    assert abs(iou[1, 2] - 16 / 100) < 1e-12 and iou[1, 0] == 0.0  # contained; touching at x = 5 only


def test_defaults_and_conversions_of_rotation_inputs():
    from hmr.geometry.rotation import as_rotation_matrices

    m = axis_angle_to_matrix(_random_rotations(6).reshape(2, 3, 3))
    assert torch.equal(matrix_to_rot6d(m), matrix_to_rot6d(m, "hmr2"))  # the default layout is HMR 2.0's
    flat = m.reshape(2, 27)
    for given in (m, flat, matrix_to_axis_angle(m), matrix_to_axis_angle(m).reshape(2, 9)):
        torch.testing.assert_close(as_rotation_matrices(given, 3, "x"), m)
    with pytest.raises(ValueError, match=r"x has shape \(2, 5\)"):
        as_rotation_matrices(torch.zeros(2, 5), 3, "x")


def test_camera_to_converts_every_field():
    cam = Camera.full_image(640, 480).to(torch.float64)
    assert {t.dtype for t in (cam.focal_length, cam.principal_point, cam.image_size)} == {torch.float64}
    assert cam.image_size.tolist() == [[640.0, 480.0]]
