"""The two reference systems' evaluation protocols: which joints, which centring, which units
(docs/evaluation.md). Inputs in metres, outputs per sample in millimetres (2D: shares in [0, 1])."""

from __future__ import annotations

import torch

from hmr.evaluation import metrics

# HMR 2.0 (hmr2/utils/pose_utils.py Evaluator): the 44 keypoints are openpose25 + extra19.
HMR2_PELVIS = 39  # extra19's MPII pelvis
HMR2_EVAL_JOINTS = (*range(25, 38), 43)  # the 14 LSP-style joints: 12 limb joints, LSP neck, H36M head
HMR2_PCK_THRESHOLDS = (0.05, 0.1)  # fractions of the box size
HMR2_MIN_CONFIDENCE = 0.5  # keypoints counted in PCK

# SMPLer (trainer.py, utils/eval_metrics.py, constants.py).
H36M_J17_TO_J14 = (3, 2, 1, 4, 5, 6, 16, 15, 14, 11, 12, 13, 8, 10)
J24_TO_J14 = (*range(12), 12, 18)  # 12 limb joints, neck, head
J14_HIPS = (2, 3)  # right and left hip: the mid-hip both are centred on


def _xyz(points: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(points).double()[..., :3]  # ground truth may carry a confidence column


def hmr2_3d(pred_kp44: torch.Tensor, gt_kp44: torch.Tensor) -> dict[str, torch.Tensor]:
    """HMR 2.0 on 3DPW-TEST / H36M-VAL-P2: (B, 44, 3) predicted and (B, 44, 3 or 4) true keypoints; both minus
    their pelvis (joint 39), then the 14 joints 25-37 and 43: ``mpjpe`` and ``pa_mpjpe`` (B,) in mm, and per
    joint as ``mpjpe_joints`` / ``pa_mpjpe_joints`` (B, 14)."""
    pred, gt = _xyz(pred_kp44), _xyz(gt_kp44)
    pred = (pred - pred[:, HMR2_PELVIS : HMR2_PELVIS + 1])[:, HMR2_EVAL_JOINTS]
    gt = (gt - gt[:, HMR2_PELVIS : HMR2_PELVIS + 1])[:, HMR2_EVAL_JOINTS]
    return _joint_scores(pred, gt)


def _joint_scores(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mpjpe``, ``pa_mpjpe`` (B,) mm and their per-joint values ``mpjpe_joints``, ``pa_mpjpe_joints`` (B, J)."""
    err, pa = 1000 * metrics.point_errors(pred, gt), 1000 * metrics.pa_point_errors(pred, gt)
    return {"mpjpe": err.mean(-1), "pa_mpjpe": pa.mean(-1), "mpjpe_joints": err, "pa_mpjpe_joints": pa}


def hmr2_pck(pred_crop: torch.Tensor, gt_crop: torch.Tensor, expand_factor: torch.Tensor | float = 1.0,
             thresholds: tuple[float, ...] = HMR2_PCK_THRESHOLDS) -> dict[str, torch.Tensor]:  # fmt: skip
    """HMR 2.0 on LSP-EXTENDED / COCO-VAL / POSETRACK-VAL: (B, K, 2) predicted and (B, K, 3) true keypoints in
    normalised crop units ([-0.5, 0.5] across the crop) with the true confidence last; distances scaled by
    ``expand_factor`` (B,) or scalar = box size / crop size, then PCK at each threshold (share of the box size)
    over the keypoints with confidence > 0.5: ``{"pck@0.05": (B,), ...}``, and per keypoint ``pck@0.05_joints``
    (B, K): 1 hit, 0 miss, NaN not counted."""
    gt = torch.as_tensor(gt_crop).double()
    factor = torch.as_tensor(expand_factor, dtype=torch.float64).reshape(-1, 1, 1)
    pred, target = torch.as_tensor(pred_crop).double()[..., :2] * factor, gt[..., :2] * factor
    ones = torch.ones(pred.shape[0], dtype=torch.float64)
    visible = gt[..., 2] > HMR2_MIN_CONFIDENCE
    out = {}
    for t in thresholds:
        out[f"pck@{t:g}"] = metrics.pck(pred, target, ones, t, visible)
        hit = ((pred - target).norm(dim=-1) < t).double()
        out[f"pck@{t:g}_joints"] = torch.where(visible, hit, torch.full_like(hit, float("nan")))
    return out


def smpler_3d(pred_h36m17: torch.Tensor, gt_j24: torch.Tensor, pred_vertices: torch.Tensor | None = None,
              gt_vertices: torch.Tensor | None = None, pred_pelvis: torch.Tensor | None = None,
              gt_pelvis: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """SMPLer on Human3.6M / 3DPW: predicted (B, 17, 3) H36M joints (regressed from the mesh) -> 14 joints;
    true (B, 24, 3 or 4) joints -> 14 joints; both re-centred on the mid-hip: ``mpjpe`` and ``pa_mpjpe`` (B,) in
    mm (SMPLer first subtracts the regressed pelvis, which the mid-hip centring cancels). With meshes, ``pve``
    (B,) in mm between the vertices minus their pelvis (``pred_pelvis``/``gt_pelvis`` (B, 3): H36M joint 0 of
    each mesh, as SMPLer takes it)."""
    pred = _xyz(pred_h36m17)[:, H36M_J17_TO_J14]
    gt = _xyz(gt_j24)[:, J24_TO_J14]
    pred = pred - pred[:, J14_HIPS].mean(1, keepdim=True)
    gt = gt - gt[:, J14_HIPS].mean(1, keepdim=True)
    out = _joint_scores(pred, gt)
    if pred_vertices is not None and gt_vertices is not None:
        if pred_pelvis is None or gt_pelvis is None:
            raise ValueError("pve needs both meshes' pelvis positions (H36M joint 0 of each mesh)")
        pv = _xyz(pred_vertices) - _xyz(pred_pelvis)[:, None]
        gv = _xyz(gt_vertices) - _xyz(gt_pelvis)[:, None]
        out["pve"] = 1000 * metrics.pve(pv, gv)
    return out
