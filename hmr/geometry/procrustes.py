"""Similarity Procrustes alignment (scale, rotation, translation), batched."""

from __future__ import annotations

import torch


def procrustes_transform(
    source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, with_scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The similarity transform taking (B, N, 3) ``source`` closest to ``target`` (weighted least squares,
    optional (B, N) weights, no reflections): scale (B,), rotation (B, 3, 3) and translation (B, 3), the
    aligned source being ``scale * source @ rotation.T + translation``. ``with_scale=False``: a rigid
    transform (scale 1)."""
    if weights is None:
        weights = torch.ones(source.shape[:2], dtype=source.dtype, device=source.device)
    w = (weights / weights.sum(-1, keepdim=True).clamp_min(1e-12))[..., None]
    mu_s, mu_t = (w * source).sum(1, keepdim=True), (w * target).sum(1, keepdim=True)
    xs, xt = source - mu_s, target - mu_t
    var_s = (w * xs.pow(2)).sum((1, 2))
    cov = (w * xt).transpose(1, 2) @ xs  # (B,3,3) target-by-source
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.ones_like(sig)
    d[:, -1] = torch.sign(torch.linalg.det(u @ vh))
    rot = u @ torch.diag_embed(d) @ vh
    scale = (sig * d).sum(-1) / var_s.clamp_min(1e-12) if with_scale else torch.ones_like(var_s)
    shift = mu_t[:, 0] - scale[:, None] * (rot @ mu_s[:, 0, :, None])[..., 0]
    return scale, rot, shift


def procrustes_align(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Align (B, N, 3) ``source`` to ``target`` with the best similarity transform; returns aligned source.

    Least squares over points (optionally weighted, (B, N)); reflections are excluded (det fix).
    """
    scale, rot, shift = procrustes_transform(source, target, weights)
    return scale[:, None, None] * source @ rot.transpose(1, 2) + shift[:, None]
