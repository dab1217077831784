"""The references' training losses on a :class:`~hmr.data.Batch` and a network's
:class:`~hmr.outputs.MeshOutput` (hmr2-facts.md §3.7, smpler-facts.md §2.6).

Units: 2D keypoints in normalised crop units (``pixels / S - 0.5``, HMR 2.0's convention; SMPLer works in
``2 x`` those, [-1, 1], so its squared 2D error is 4x ours at the same weight: :data:`SMPLER_WEIGHTS` keeps
its numbers by using 4 x 100), 3D in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hmr.data import Batch
from hmr.data.sample import J24_TO_44, PELVIS_INDEX
from hmr.evaluation.protocols import H36M_J17_TO_J14, J24_TO_J14
from hmr.geometry import axis_angle_to_matrix


@dataclass
class LossWeights:
    """Weights of the loss terms (0 turns a term off). Defaults: 4D-Humans' HMR 2.0
    (``0.05·3D + 0.01·2D + 0.001·global_orient + 0.001·body_pose + 0.0005·betas + 0.0005·adversarial``)."""

    keypoints_3d: float = 0.05
    keypoints_2d: float = 0.01
    global_orient: float = 0.001
    body_pose: float = 0.001
    betas: float = 0.0005
    adversarial: float = 0.0005
    vertices: float = 0.0  # SMPLer's terms (SMPL-Pose recipes)
    joints_3d_h36m: float = 0.0
    joints_2d_j14: float = 0.0
    rotations: float = 0.0


SMPLER_WEIGHTS = LossWeights(keypoints_3d=0.0, keypoints_2d=0.0, global_orient=0.0, body_pose=0.0, betas=0.0,
                             adversarial=0.0, vertices=100.0, joints_3d_h36m=1000.0, joints_2d_j14=400.0,
                             rotations=50.0)  # fmt: skip


def keypoint_2d_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """4D-Humans: L1 x confidence, summed over keypoints and coordinates and over the batch (no mean)."""
    return (gt[..., 2:] * (pred - gt[..., :2]).abs()).sum()


def keypoint_3d_loss(pred: torch.Tensor, gt: torch.Tensor, pelvis: int = PELVIS_INDEX) -> torch.Tensor:
    """4D-Humans: L1 after subtracting each set's pelvis, x confidence, summed."""
    pred = pred - pred[:, pelvis : pelvis + 1]
    target = gt[..., :3] - gt[:, pelvis : pelvis + 1, :3]
    return (gt[..., 3:] * (pred - target).abs()).sum()


def parameter_loss(pred: torch.Tensor, gt: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """4D-Humans: squared error (rotation matrices or betas) x has_param, summed."""
    err = (pred - gt) ** 2
    return (has.reshape(-1, *([1] * (err.dim() - 1))) * err).sum()


def hmr2_losses(out, batch: Batch, w: LossWeights) -> dict[str, torch.Tensor]:
    """HMR 2.0's supervised terms (weighted later): keypoints_2d, keypoints_3d, global_orient, body_pose, betas."""
    gt_go = axis_angle_to_matrix(batch.global_orient.reshape(-1, 1, 3).to(out.global_orient))
    gt_bp = axis_angle_to_matrix(batch.body_pose.reshape(-1, 23, 3).to(out.body_pose))
    terms = {}
    if w.keypoints_2d:
        terms["keypoints_2d"] = keypoint_2d_loss(out.keypoints_2d, batch.normalised_keypoints_2d().to(out.keypoints_2d))
    if w.keypoints_3d:
        terms["keypoints_3d"] = keypoint_3d_loss(out.keypoints_3d, batch.keypoints_3d.to(out.keypoints_3d))
    if w.global_orient:
        terms["global_orient"] = parameter_loss(out.global_orient, gt_go, batch.has_global_orient.to(gt_go))
    if w.body_pose:
        terms["body_pose"] = parameter_loss(out.body_pose, gt_bp, batch.has_body_pose.to(gt_bp))
    if w.betas:
        terms["betas"] = parameter_loss(out.betas[:, :10], batch.betas.to(out.betas), batch.has_betas.to(out.betas))
    return terms


def _mid_hip(j14: torch.Tensor) -> torch.Tensor:
    return j14 - j14[:, 2:4].mean(1, keepdim=True)


def smpler_losses(out, batch: Batch, model, w: LossWeights) -> dict[str, torch.Tensor]:
    """SMPLer's terms (means, as its trainer takes them): vertices minus pelvis (L1, has_smpl), the 14 H36M
    joints regressed from the mesh against the dataset's J24 -> J14 joints, both mid-hip centred (MSE x
    confidence), their 2D projections against the 2D joints (MSE x confidence), and the 24 rotation matrices
    (L1, has_smpl). Pelvis = the mesh's H36M joint 0."""
    rot = torch.cat([out.global_orient, out.body_pose], 1)
    pred_body = model.pose_body(rot, out.betas, ("h36m17",))
    gt_rot = axis_angle_to_matrix(torch.cat([batch.global_orient[:, None], batch.body_pose.reshape(-1, 23, 3)], 1).to(rot))
    with torch.no_grad():
        gt_body = model.pose_body(gt_rot, batch.betas.to(rot), ("h36m17",))
    has = batch.has_body_pose.to(rot)
    n_smpl = has.sum().clamp(min=1)
    terms = {}
    pred_h36m, gt_h36m = pred_body.keypoint_set("h36m17"), gt_body.keypoint_set("h36m17")
    if w.vertices:
        pv = pred_body.vertices - pred_h36m[:, :1]
        gv = gt_body.vertices - gt_h36m[:, :1]
        terms["vertices"] = (has[:, None, None] * (pv - gv).abs()).sum() / (n_smpl * pv.shape[1] * 3)
    j24_3d = batch.keypoints_3d.to(rot)[:, list(J24_TO_44)][:, list(J24_TO_J14)]
    pred_j14 = pred_h36m[:, list(H36M_J17_TO_J14)]
    if w.joints_3d_h36m:
        conf = j24_3d[..., 3:]
        err = conf * (_mid_hip(pred_j14) - _mid_hip(j24_3d[..., :3])) ** 2
        terms["joints_3d_h36m"] = err.mean()
    if w.joints_2d_j14:
        from hmr.geometry.camera import perspective_projection

        f = pred_body.vertices.new_full((rot.shape[0],), model.config.focal_length / model.config.image_size)
        pred2d = perspective_projection(pred_j14, out.pred_cam_t, f)
        gt2d = batch.normalised_keypoints_2d().to(rot)[:, list(J24_TO_44)][:, list(J24_TO_J14)]
        terms["joints_2d_j14"] = (gt2d[..., 2:] * (pred2d - gt2d[..., :2]) ** 2).mean()
    if w.rotations:
        terms["rotations"] = (has[:, None, None, None] * (rot - gt_rot).abs()).sum() / (n_smpl * 24 * 9)
    return terms


def adversarial_generator_loss(scores_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN generator term, 4D-Humans: ``sum((D(fake) - 1)²) / B``."""
    return ((scores_fake - 1.0) ** 2).sum() / scores_fake.shape[0]


def adversarial_discriminator_loss(scores_fake: torch.Tensor, scores_real: torch.Tensor, batch_size: int) -> torch.Tensor:
    """LSGAN discriminator term: ``(sum(D(fake)²) + sum((D(real) - 1)²)) / B`` with B the image batch."""
    return ((scores_fake**2).sum() + ((scores_real - 1.0) ** 2).sum()) / batch_size


def weighted_total(terms: dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    total = sum(getattr(w, k) * v for k, v in terms.items())
    if not torch.isfinite(total):  # 4D-Humans raises too: a NaN step would poison the weights
        raise FloatingPointError(f"non-finite loss: {', '.join(f'{k}={float(v):.4g}' for k, v in terms.items())}")
    return total
