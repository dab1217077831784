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


class _ApplyTransforms(torch.autograd.Function):
    """Per-vertex affine transform ``y[v,:,b] = M[v,:,:3,b] x[v,:,b] + M[v,:,3,b]``.

    Written out because autograd's generic backward for the column slices allocates and zero-fills a
    full-size gradient per slice, which cost more than the whole forward.
    """

    @staticmethod
    def forward(ctx, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # m (V,3,4,B), x (V,3,B)
        ctx.save_for_backward(m, x)
        y = torch.addcmul(m[:, :, 3], m[:, :, 0], x[:, 0:1])
        return y.addcmul_(m[:, :, 1], x[:, 1:2]).addcmul_(m[:, :, 2], x[:, 2:3])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        m, x = ctx.saved_tensors
        grad_m = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_m = torch.empty_like(m)
            for k in range(3):
                torch.mul(grad, x[:, k : k + 1], out=grad_m[:, :, k])
            grad_m[:, :, 3] = grad
        if ctx.needs_input_grad[1]:
            grad_x = (grad[:, :, None] * m[:, :, :3]).sum(1)
        return grad_m, grad_x


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
    transl: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL skinning. Returns vertices (B,V,3) and joints (B,J,3), translated by ``transl`` (B,3) if given.

    Vertex data is vertex-major so each step is one large matrix product with the batch as the
    innermost dimension: ``v_template`` (V*3, 1), ``shapedirs`` (V*3, S), ``posedirs`` (V*3, 9(J-1)) or
    None when the model has no pose correctives. ``j_shapedirs`` (J, 3, S) is the joint regressor applied
    to shapedirs, so joints come from betas directly (same result as regressing the shaped mesh).
    """
    b, n = betas.shape
    nv = weights.shape[0]
    # (V*3, B): rest-pose vertices with shape and pose blend shapes.
    v = torch.addmm(v_template, shapedirs[:, :n], betas.T) if n else v_template.expand(-1, b)
    if posedirs is not None:
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(b, -1)
        v = torch.addmm(v, posedirs, pose_feature.T)
    v = v.view(nv, 3, b)
    rest_joints = j_template + torch.einsum("bs,jcs->bjc", betas, j_shapedirs[..., :n])
    world_r, joints = forward_kinematics(rotmats, rest_joints, parents, levels)
    # Skinning transform of joint j maps a rest-pose point x to R_j x + (t_j - R_j J_j).
    offset = joints - (world_r @ rest_joints[..., None]).squeeze(-1)
    per_joint = torch.cat([world_r, offset[..., None]], dim=-1)  # (B,J,3,4)
    per_joint = per_joint.permute(1, 2, 3, 0).reshape(len(parents), 12 * b)
    m = (weights @ per_joint).view(nv, 3, 4, b)
    verts = _ApplyTransforms.apply(m, v).permute(2, 0, 1)
    if transl is None:
        return verts.contiguous(), joints
    # One pass both translates and makes the (B,V,3) result contiguous.
    return torch.add(verts, transl[:, None]).contiguous(), joints + transl[:, None]
