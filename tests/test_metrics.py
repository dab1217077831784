"""Metrics against independent computations (docs/evaluation.md)."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hmr.evaluation import metrics as m


def _points(b=4, n=14, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, n, 3)))


def test_identical_sets_give_zero():
    x = _points()
    for fn in (m.mpjpe, m.pa_mpjpe, m.pve, m.pa_pve):
        assert fn(x, x).abs().max() < 1e-9
    assert m.acceleration_error(x, x).abs().max() == 0


def test_known_offset_gives_known_mpjpe_and_pa_removes_it():
    x = _points()
    shift = torch.tensor([0.03, -0.04, 0.0], dtype=torch.float64)  # 50 mm
    torch.testing.assert_close(m.mpjpe(x + shift, x), torch.full((4,), 0.05, dtype=torch.float64))
    assert m.pa_mpjpe(x + shift, x).max() < 1e-9


def test_rigidly_moved_and_scaled_copy_has_zero_pa_mpjpe():
    x = _points()
    rot = torch.from_numpy(Rotation.random(4, random_state=1).as_matrix())
    moved = 1.7 * x @ rot.transpose(1, 2) + torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64)
    assert m.mpjpe(moved, x).min() > 0.1
    assert m.pa_mpjpe(moved, x).max() < 1e-9


def test_procrustes_rotation_and_scale_agree_with_scipy_and_closed_form():
    """Noisy similarity copies: the aligned error equals an independent computation with
    Rotation.align_vectors (centred points) and the closed-form optimal scale."""
    from hmr.geometry import procrustes_transform

    src = _points(seed=2)
    rot = torch.from_numpy(Rotation.random(4, random_state=3).as_matrix())
    tgt = (
        0.8 * src @ rot.transpose(1, 2) + 0.3 + torch.from_numpy(np.random.default_rng(4).normal(size=src.shape)) * 0.01
    )
    scale, r, _ = procrustes_transform(src, tgt)
    for i in range(4):
        a = (tgt[i] - tgt[i].mean(0)).numpy()
        b = (src[i] - src[i].mean(0)).numpy()
        ref, _ = Rotation.align_vectors(a, b)  # rotation taking b onto a
        np.testing.assert_allclose(r[i].numpy(), ref.as_matrix(), atol=1e-9)
        s_ref = np.sum(a * (b @ ref.as_matrix().T)) / np.sum(b * b)  # optimal scale given the rotation
        assert scale[i].item() == pytest.approx(s_ref, rel=1e-9)
        aligned = s_ref * b @ ref.as_matrix().T + tgt[i].mean(0).numpy()
        err = np.linalg.norm(aligned - tgt[i].numpy(), axis=-1).mean()
        assert m.pa_mpjpe(src[i : i + 1], tgt[i : i + 1]).item() == pytest.approx(err, rel=1e-9)


def test_reflected_prediction_is_not_reflected_back():
    """As SPIN's / HMR 2.0's compute_similarity_transform (det fix): a mirror image keeps an error."""
    x = _points(b=1, n=20, seed=5)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert m.pa_mpjpe(mirrored, x).item() > 0.1
    scale_only = 2.0 * x
    assert m.pa_mpjpe(scale_only, x).item() < 1e-9


def test_weighted_mpjpe_and_shape_check():
    x = _points(b=1, n=3)
    y = x.clone()
    y[0, 2] += torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)
    assert m.mpjpe(y, x, torch.tensor([[1.0, 1.0, 0.0]])).item() == 0
    assert m.mpjpe(y, x, torch.tensor([[0.0, 0.0, 2.0]])).item() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="differ in shape"):
        m.mpjpe(x, x[:, :2])


def test_pck_relative_to_box_size():
    target = torch.zeros(1, 4, 2, dtype=torch.float64)
    pred = torch.tensor([[[1.0, 0], [4.0, 0], [6.0, 0], [20.0, 0]]], dtype=torch.float64)
    box = torch.tensor([100.0])  # thresholds 5 px and 10 px
    assert m.pck(pred, target, box, 0.05).item() == pytest.approx(0.5)
    assert m.pck(pred, target, box, 0.1).item() == pytest.approx(0.75)
    visible = torch.tensor([[True, False, True, False]])
    assert m.pck(pred, target, box, 0.05, visible).item() == pytest.approx(0.5)


def test_acceleration_of_known_trajectories():
    t = torch.arange(10, dtype=torch.float64)
    steady = torch.stack([t * 0.1, 0 * t, 0 * t], -1)[:, None]  # constant velocity: no acceleration
    assert m.acceleration(steady).abs().max() < 1e-12
    falling = torch.stack([0 * t, 0.5 * 0.02 * t**2, 0 * t], -1)[:, None]  # constant acceleration 0.02
    torch.testing.assert_close(m.acceleration(falling), torch.full((8,), 0.02, dtype=torch.float64))
    torch.testing.assert_close(m.acceleration_error(falling, steady), torch.full((8,), 0.02, dtype=torch.float64))
    assert m.acceleration(steady[:2]).numel() == 0


def test_jitter_of_a_cubic_trajectory():
    """x = a t³ (t in frames) has third difference 6a per frame, i.e. a jerk of 6 a fps³ per s³."""
    t = torch.arange(10, dtype=torch.float64)
    x = torch.stack([0.002 * t**3, 0 * t, 0 * t], -1)[:, None]
    assert torch.allclose(m.jitter(x, fps=30.0), torch.full((7,), 6 * 0.002 * 30.0**3, dtype=torch.float64))
    assert m.jitter(x[:3], fps=30.0).numel() == 0
    steady = torch.stack([0.01 * t**2, 0 * t, 0 * t], -1)[:, None]  # constant acceleration: no jerk
    assert m.jitter(steady, fps=30.0).abs().max() < 1e-9
