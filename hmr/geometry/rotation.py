"""Rotation conversions. Rotation matrices act on column vectors: ``x' = R @ x``.

Axis-angle vectors are ``angle * unit_axis`` in radians. Quaternions are ``(w, x, y, z)``.
Two 6D layouts exist in this field and decode the same six numbers differently
(``docs/conventions.md``):

* ``"hmr2"`` (4D-Humans, Zhou et al. as written there): ``x.reshape(2, 3)``; the two rows are the
  first two columns of the matrix.
* ``"spin"`` (SPIN, and the ``pose`` vector of ``smpl_mean_params.npz``): ``x.reshape(3, 2)``; its
  two columns are the first two columns of the matrix.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Rot6DLayout = Literal["hmr2", "spin"]


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices: ``skew(v) @ w == v x w``."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3), exact and differentiable at zero (Taylor terms near 0)."""
    theta2 = (aa * aa).sum(-1, keepdim=True).unsqueeze(-1)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos(t))/t^2 with their series where t is tiny, so gradients stay finite.
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    k = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def so3_right_jacobian(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) right Jacobian ``Jr`` of SO(3): ``exp(aa + d) ~ exp(aa) exp(Jr d)``.

    It turns derivatives with respect to a local rotation increment into derivatives with respect to the
    axis-angle vector itself (series near zero, where ``Jr`` tends to the identity)."""
    theta2 = (aa * aa).sum(-1, keepdim=True).unsqueeze(-1)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-6
    a = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    b = torch.where(small, 1 / 6 - theta2 / 120, (theta - torch.sin(theta)) / (theta2 * theta).clamp_min(1e-18))
    k = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye - a * k + b * (k @ k)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 4) unit quaternion (w, x, y, z) with w >= 0."""
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # Four candidate solutions; the one with the largest denominator is numerically best.
    q_abs = (
        torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
        .clamp_min(0)
        .sqrt()
    )
    cands = (
        torch.stack(
            [
                torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
                torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
                torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], dim=-1),
                torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], dim=-1),
            ],
            dim=-2,
        )
        / (2 * q_abs.clamp_min(0.1))[..., None]
    )
    best = q_abs.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (w, x, y, z), any norm -> (..., 3, 3)."""
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    q = F.normalize(q, dim=-1)
    q = torch.where(q[..., :1] < 0, -q, q)
    sin_half = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[..., :1])
    # angle / sin(angle/2) -> 2 as the angle -> 0.
    scale = torch.where(sin_half < 1e-6, 2 + angle**2 / 12, angle / sin_half.clamp_min(1e-12))
    return q[..., 1:] * scale


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3), angle in [0, pi]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) smallest rotations turning directions ``a`` (..., 3) onto directions ``b`` (broadcastable);
    neither needs unit length. Opposite directions have no unique answer (any half turn); this returns none."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1).expand_as(a)
    axis = torch.linalg.cross(a, b, dim=-1)
    angle = torch.atan2(axis.norm(dim=-1, keepdim=True), (a * b).sum(-1, keepdim=True))
    return axis_angle_to_matrix(torch.nn.functional.normalize(axis, dim=-1) * angle)


def _rot6d_columns(x: torch.Tensor, layout: Rot6DLayout) -> tuple[torch.Tensor, torch.Tensor]:
    if layout == "hmr2":
        return x[..., 0:3], x[..., 3:6]
    if layout == "spin":
        return x[..., 0::2], x[..., 1::2]
    raise ValueError(f"unknown 6D layout {layout!r}; use 'hmr2' or 'spin'")


def rot6d_to_matrix(x: torch.Tensor, layout: Rot6DLayout = "hmr2") -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt on the two encoded columns (see module doc)."""
    a1, a2 = _rot6d_columns(x, layout)
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(m: torch.Tensor, layout: Rot6DLayout = "hmr2") -> torch.Tensor:
    """(..., 3, 3) -> (..., 6), the inverse of :func:`rot6d_to_matrix` for rotation matrices."""
    c1, c2 = m[..., :, 0], m[..., :, 1]
    if layout == "hmr2":
        return torch.cat([c1, c2], dim=-1)
    if layout == "spin":
        return torch.stack([c1, c2], dim=-1).flatten(-2)
    raise ValueError(f"unknown 6D layout {layout!r}; use 'hmr2' or 'spin'")


def as_rotation_matrices(x: torch.Tensor, num_joints: int, name: str) -> torch.Tensor:
    """Accept (B, J*3), (B, J, 3) axis-angle or (B, J, 3, 3) matrices; return (B, J, 3, 3)."""
    b = x.shape[0]
    if x.dim() == 4 and x.shape[1:] == (num_joints, 3, 3):
        return x
    if x.dim() == 2 and x.shape[1] == 9 * num_joints:
        return x.reshape(b, num_joints, 3, 3)
    if (x.dim() == 2 and x.shape[1] == 3 * num_joints) or (x.dim() == 3 and x.shape[1:] == (num_joints, 3)):
        return axis_angle_to_matrix(x.reshape(b, num_joints, 3))
    raise ValueError(
        f"{name} has shape {tuple(x.shape)}; expected (B,{3 * num_joints}) or (B,{num_joints},3) axis-angle "
        f"or (B,{num_joints},3,3) rotation matrices"
    )
