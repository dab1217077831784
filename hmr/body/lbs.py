"""Functional core of SMPL-family linear blend skinning (no module state, any vertex count)."""

from __future__ import annotations

import torch


def kinematic_levels(parents: list[int]) -> list[list[int]]:
    """Group joints by tree depth so forward kinematics runs one batched step per level."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= 0:
            if p >= j:
                raise ValueError(f"joint {j} has parent {p}; parents must precede their children")
            depth[j] = depth[p] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


def forward_kinematics(
    rotmats: torch.Tensor, rest_joints: torch.Tensor, parents: list[int], levels: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local rotations (B,J,3,3) and rest joints (B,J,3) -> world rotations (B,J,3,3), posed joints (B,J,3)."""
    rel = rest_joints.clone()
    rel[:, 1:] = rest_joints[:, 1:] - rest_joints[:, parents[1:]]
    world_r = torch.empty_like(rotmats)
    world_t = torch.empty_like(rest_joints)
    world_r[:, levels[0]] = rotmats[:, levels[0]]
    world_t[:, levels[0]] = rel[:, levels[0]]
    for level in levels[1:]:
        par = [parents[j] for j in level]
        pr = world_r[:, par]
        world_r[:, level] = pr @ rotmats[:, level]
        world_t[:, level] = (pr @ rel[:, level, :, None]).squeeze(-1) + world_t[:, par]
    return world_r, world_t


def skin(
    betas: torch.Tensor,
    rotmats: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor | None,
    j_template: torch.Tensor,
    j_shapedirs: torch.Tensor,
    weights: torch.Tensor,
    parents: list[int],
    levels: list[list[int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL skinning. Returns vertices (B,V,3) and joints (B,J,3), before any global translation.

    ``shapedirs`` (V,3,S) and ``j_shapedirs`` (J,3,S) = J_regressor applied to shapedirs, so joints are
    regressed from betas directly instead of from the shaped mesh (same result, by linearity).
    ``posedirs`` is (P, V*3) with P = 9*(J-1), or None when the model has no pose correctives.
    """
    b = betas.shape[0]
    n = betas.shape[1]
    v_shaped = v_template + torch.einsum("bs,vcs->bvc", betas, shapedirs[..., :n])
    rest_joints = j_template + torch.einsum("bs,jcs->bjc", betas, j_shapedirs[..., :n])
    if posedirs is not None:
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(b, -1)
        v_shaped = v_shaped + (pose_feature @ posedirs).view(b, -1, 3)
    world_r, joints = forward_kinematics(rotmats, rest_joints, parents, levels)
    # Skinning transform of joint j maps a rest-pose point x to R_j x + (t_j - R_j J_j).
    offset = joints - (world_r @ rest_joints[..., None]).squeeze(-1)
    per_joint = torch.cat([world_r.reshape(b, -1, 9), offset], dim=-1)  # (B,J,12)
    per_vertex = torch.matmul(weights, per_joint)  # (B,V,12)
    rot = per_vertex[..., :9].view(b, -1, 3, 3)
    vertices = (rot * v_shaped[:, :, None, :]).sum(-1) + per_vertex[..., 9:]
    return vertices, joints
