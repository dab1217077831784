"""The papers' protocols on hand-built inputs whose answers are worked out by hand (docs/evaluation.md)."""

import pytest
import torch
from scipy.spatial.transform import Rotation

from hmr.evaluation import protocols as p


def _kp(n, seed=0):
    return torch.randn(2, n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_hmr2_uses_joints_25_to_37_and_43_centred_on_the_pelvis():
    gt = _kp(44)
    pred = gt.clone()
    pred[:, :25] += 5.0  # openpose25 is not scored
    pred[:, 38] += 5.0  # neither is the top of head (LSP), 40-42
    pred[:, 40:43] += 5.0
    zero = p.hmr2_3d(pred + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), gt)  # a translation cancels
    assert zero["mpjpe"].abs().max() < 1e-9 and zero["pa_mpjpe"].abs().max() < 1e-9
    moved = gt.clone()
    moved[:, 25, 0] += 0.014  # one scored joint 14 mm off: 1 mm over 14 joints
    torch.testing.assert_close(p.hmr2_3d(moved, gt)["mpjpe"], torch.full((2,), 1.0, dtype=torch.float64))
    pelvis = gt.clone()
    pelvis[:, 39, 2] += 0.02  # the pelvis 20 mm off moves all 14 scored joints by 20 mm
    torch.testing.assert_close(p.hmr2_3d(pelvis, gt)["mpjpe"], torch.full((2,), 20.0, dtype=torch.float64))
    rot = torch.from_numpy(Rotation.random(random_state=0).as_matrix())
    rigid = 1.3 * gt @ rot.T  # PA removes scale and rotation
    assert p.hmr2_3d(rigid, torch.cat([gt, torch.ones(2, 44, 1, dtype=torch.float64)], -1))["pa_mpjpe"].max() < 1e-9


def test_hmr2_pck_in_box_fractions_over_confident_keypoints():
    gt = torch.zeros(1, 4, 3, dtype=torch.float64)
    gt[..., 2] = torch.tensor([1.0, 1.0, 1.0, 0.3])  # the last is not confident enough: not counted
    pred = torch.tensor([[[0.04, 0], [0.07, 0], [0.2, 0], [1.0, 0]]], dtype=torch.float64)  # crop units
    out = p.hmr2_pck(pred, gt)
    assert out["pck@0.05"].item() == pytest.approx(1 / 3) and out["pck@0.1"].item() == pytest.approx(2 / 3)
    # A crop 1.5x the box: distances in box units are 1.5x larger (0.06, 0.105, 0.3).
    assert p.hmr2_pck(pred, gt, 1.5)["pck@0.1"].item() == pytest.approx(1 / 3)


# Written out from smpler-facts.md (constants.py), not taken from the module under test.
H36M_SLOTS = [3, 2, 1, 4, 5, 6, 16, 15, 14, 11, 12, 13, 8, 10]  # R_Ankle ... Neck, Head
J24_SLOTS = [*range(12), 12, 18]  # 12 limb joints, Neck, Head (not Top_of_Head, 13)


def _h36m17_from_j14(j14, pelvis):
    """Place J14 joints into the H36M-17 slots SMPLer maps them from; the other slots hold noise."""
    j17 = _kp(17, seed=9)
    j17[:, H36M_SLOTS] = j14 + pelvis[:, None]
    j17[:, 0] = pelvis
    return j17


def test_smpler_maps_the_joints_and_centres_on_the_mid_hip():
    j14 = _kp(14)
    gt24 = _kp(24, seed=3)
    gt24[:, J24_SLOTS] = j14
    pelvis = torch.tensor([[0.5, 0.1, 3.0], [-0.2, 0.0, 4.0]], dtype=torch.float64)
    pred = _h36m17_from_j14(j14, pelvis)
    zero = p.smpler_3d(pred, gt24)
    assert zero["mpjpe"].abs().max() < 1e-9  # the unused H36M slots (torso, nose...) and J24 ones do not count
    ankle = pred.clone()
    ankle[:, 3, 0] += 0.014  # H36M R_Ankle -> J14 0: 14 mm over 14 joints
    torch.testing.assert_close(p.smpler_3d(ankle, gt24)["mpjpe"], torch.full((2,), 1.0, dtype=torch.float64))
    hip = pred.clone()
    hip[:, 1, 1] += 0.014  # H36M R_Hip -> J14 2: the mid-hip moves 7 mm, so every joint is 7 mm off
    torch.testing.assert_close(p.smpler_3d(hip, gt24)["mpjpe"], torch.full((2,), 7.0, dtype=torch.float64))


def test_smpler_pve_is_on_pelvis_relative_meshes():
    j14, gt24 = _kp(14), _kp(24, seed=3)
    gt24[:, J24_SLOTS] = j14
    pred = _h36m17_from_j14(j14, torch.zeros(2, 3, dtype=torch.float64))
    verts = _kp(30, seed=5)
    shift = torch.tensor([[0.0, 0.0, 2.0]] * 2, dtype=torch.float64)
    out = p.smpler_3d(pred, gt24, verts + shift[:, None] + 0.003, verts, shift, torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(out["pve"], torch.full((2,), 3 * 3**0.5, dtype=torch.float64))  # (3, 3, 3) mm
    with pytest.raises(ValueError, match="pelvis"):
        p.smpler_3d(pred, gt24, verts, verts)
