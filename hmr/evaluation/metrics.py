"""Error metrics of 3D human mesh recovery, one implementation for evaluation, training validation, the
benchmarks and the video outputs. Batched torch, computed in float64 (the papers' numbers are sums of many
small errors); each returns per-sample values in the inputs' units (metres in, metres out), to be averaged
or scaled (x1000 for mm) by the caller. Protocols (which joints, which centring) are not here:
docs/evaluation.md.
"""

from __future__ import annotations

import torch

from hmr.geometry import procrustes_align
from hmr.geometry.motion import acceleration, finite_difference

__all__ = ["acceleration", "acceleration_error", "jitter", "mean_point_error", "mpjpe", "pa_mpjpe",
           "pa_point_errors", "pa_pve", "pck", "point_errors", "pve"]  # fmt: skip


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return pred.double(), target.double()


def point_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, N, D) x2 -> (B, N) Euclidean distance of each pair of corresponding points."""
    pred, target = _pair(pred, target)
    return (pred - target).norm(dim=-1)


def pa_point_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`point_errors` after the similarity Procrustes alignment of :func:`pa_mpjpe`."""
    pred, target = _pair(pred, target)
    return point_errors(procrustes_align(pred, target), target)


def mean_point_error(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N, D) x2 -> (B,) mean Euclidean distance of corresponding points; ``weights`` (B, N) >= 0
    weight the mean (a sample whose weights are all 0 gives NaN)."""
    dist = point_errors(pred, target)
    if weights is None:
        return dist.mean(-1)
    w = torch.as_tensor(weights).double()
    return (dist * w).sum(-1) / w.sum(-1)


def mpjpe(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-joint position error of (B, J, 3) joints, as given (centre them first: the protocol's job)."""
    return mean_point_error(pred, target, weights)


def pa_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJPE after aligning each prediction to its target with the best similarity transform (isotropic
    scale, rotation without reflection, translation): the reference implementations' SVD with the
    determinant fix, so a mirrored prediction is not mirrored back."""
    return pa_point_errors(pred, target).mean(-1)


def pve(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-vertex error of (B, V, 3) meshes with the same topology (centre them first)."""
    return mean_point_error(pred, target)


def pa_pve(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-vertex error after similarity Procrustes alignment of the whole mesh."""
    return pa_mpjpe(pred, target)


def pck(pred: torch.Tensor, target: torch.Tensor, box_size: torch.Tensor, threshold: float,
        visible: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """(B, K, 2) pixels x2 -> (B,) share of visible keypoints closer than ``threshold * box_size`` ((B,)
    pixels, the person's box side): PCK@0.05 / @0.1 as HMR 2.0 reports it. NaN for a sample with no
    visible keypoint."""
    pred, target = _pair(pred, target)
    dist = (pred - target).norm(dim=-1) / torch.as_tensor(box_size).double()[:, None]
    vis = torch.ones_like(dist, dtype=torch.bool) if visible is None else torch.as_tensor(visible).bool()
    hit = ((dist < threshold) & vis).double().sum(-1)
    return hit / vis.double().sum(-1)


def acceleration_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(T, J, 3) x2 -> (T-2,) mean difference of predicted and true joint accelerations per frame
    (units per frame²), as in HMMR / VIBE."""
    pred, target = _pair(pred, target)
    if pred.shape[0] < 3:
        return pred.new_zeros(0)
    return (finite_difference(pred, 2) - finite_difference(target, 2)).norm(dim=-1).mean(-1)


def jitter(joints: torch.Tensor, fps: float) -> torch.Tensor:
    """(T, J, 3) -> (T-3,) mean joint jerk ``|d³x/dt³|`` per frame, in units per s³ at ``fps`` (the smoothness
    measure of TCMR / SmoothNet, which report it in 10 m/s³)."""
    x = torch.as_tensor(joints).double()
    if x.shape[0] < 4:
        return x.new_zeros(0)
    return finite_difference(x, 3).norm(dim=-1).mean(-1) * fps**3
