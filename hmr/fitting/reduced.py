"""A body model that computes only one keypoint map (and the joints), for fast fitting."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hmr.body import BodyModel, KeypointSet
from hmr.body.lbs import forward_kinematics


class ReducedBodyModel(nn.Module):
    """Joints and the keypoints of one :class:`KeypointSet`, exactly as the full ``model`` gives them.

    A vertex keypoint is ``sum_v m_v x_v`` over skinned vertices, and skinning is linear in the rest-pose
    vertex (template, shape and pose blend shapes) per joint, so every (keypoint, joint) pair collapses into
    one "virtual vertex" skinned by that joint alone: position ``sum_v m_v w_vj x_v`` with weight 1, plus a
    translation-only vertex at the origin with weight ``sum_v m_v w_vj - 1``. Regressors over thousands of
    vertices thus cost a few virtual vertices per keypoint.
    """

    def __init__(self, model: BodyModel, keypoints: KeypointSet):
        super().__init__()
        nj, nv = model.num_joints, model.num_vertices
        on_vertex = keypoints.cols >= nj
        rows, verts, w = keypoints.rows[on_vertex], keypoints.cols[on_vertex] - nj, keypoints.weights[on_vertex]
        used = np.unique(verts)
        m = np.zeros((keypoints.num, len(used)))
        np.add.at(m, (rows, np.searchsorted(used, verts)), w)
        idx = torch.as_tensor(used, dtype=torch.long, device=model.v_template.device)
        sw = model.weights[idx].double().cpu().numpy()  # (U, J)
        x = [model.v_template[idx].double().cpu().numpy()[..., None], model.shapedirs[idx].double().cpu().numpy()]
        if model.posedirs is not None:
            x.append(model.posedirs.view(nv, 3, -1)[idx].double().cpu().numpy())
        x = np.concatenate(x, -1)  # (U, 3, 1+S+P): template, shape and pose blend shapes
        mw = m[:, :, None] * sw[None]  # (K, U, J)
        pos = np.einsum("kuj,ucd->kjcd", mw, x)  # (K, J, 3, D)
        total = mw.sum(1)  # (K, J)
        k_idx, j_idx = np.nonzero(np.abs(mw).sum(1) > 0)
        n = len(k_idx)
        # Virtual vertices: n with weight 1 at ``pos``, then n at the origin with weight ``total - 1``.
        vx = np.concatenate([pos[k_idx, j_idx], np.zeros((n, 3, x.shape[-1]))])
        vw = np.zeros((2 * n, nj))
        vw[np.arange(n), j_idx] = 1.0
        vw[n + np.arange(n), j_idx] = total[k_idx, j_idx] - 1.0
        kp_rows = np.concatenate([keypoints.rows[~on_vertex], k_idx, k_idx])
        kp_cols = np.concatenate([keypoints.cols[~on_vertex], nj + np.arange(2 * n)])
        kp_w = np.concatenate([keypoints.weights[~on_vertex], np.ones(2 * n)])

        dev, dt = model.v_template.device, model.v_template.dtype
        s = model.num_betas
        flat = torch.as_tensor(vx.reshape(2 * n * 3, -1), dtype=dt, device=dev)
        self.parents, self.levels, self.num_betas = model.parents, model.levels, s
        self.register_buffer("v_template", flat[:, :1].contiguous())
        self.register_buffer("shapedirs", flat[:, 1 : 1 + s].contiguous())
        self.register_buffer("posedirs", flat[:, 1 + s :].contiguous() if model.posedirs is not None else None)
        self.register_buffer("j_template", model.j_template.clone())
        self.register_buffer("j_shapedirs", model.j_shapedirs.clone())
        # Every virtual vertex follows one joint (``vertex_joint``) with weight ``vertex_weight``, so skinning
        # is a gather of joint transforms, made of plain tensor operations (forward-mode differentiable).
        self.register_buffer("vertex_joint", torch.as_tensor(np.abs(vw).argmax(1), dtype=torch.long, device=dev))
        self.register_buffer(
            "vertex_weight", torch.as_tensor(vw[np.arange(2 * n), np.abs(vw).argmax(1)], dtype=dt, device=dev)
        )
        # Keypoints as one dense (K, J + virtual vertices) product: tiny, and cheaper than scattered sums.
        kp_matrix = np.zeros((keypoints.num, nj + 2 * n))
        np.add.at(kp_matrix, (kp_rows, kp_cols), kp_w)
        self.register_buffer("kp_matrix", torch.as_tensor(kp_matrix, dtype=dt, device=dev))
        # A translation moves each keypoint by its total weight (1 for points and normalised regressors).
        total_w = np.bincount(keypoints.rows, keypoints.weights, minlength=keypoints.num)
        self.register_buffer("kp_total", torch.as_tensor(total_w, dtype=dt, device=dev)[:, None])
        self.num_keypoints = keypoints.num

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, J, 3) joints of the shaped body at rest."""
        return self.j_template + torch.einsum("bs,jcs->bjc", betas, self.j_shapedirs[..., : betas.shape[1]])

    def forward(
        self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local rotations (B, J, 3, 3), betas (B, S) -> keypoints (B, K, 3), joints (B, J, 3)."""
        b = betas.shape[0]
        feats = [betas]
        dirs = [self.shapedirs[:, : betas.shape[1]]]
        if self.posedirs is not None:
            eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
            feats.append((rotmats[:, 1:] - eye).reshape(b, -1))
            dirs.append(self.posedirs)
        rest = (self.v_template[:, 0] + torch.cat(feats, 1) @ torch.cat(dirs, 1).T).view(b, -1, 3)
        rest_joints = self.rest_joints(betas)
        world, joints = forward_kinematics(rotmats, rest_joints, self.parents, self.levels)
        offset = joints - (world @ rest_joints[..., None])[..., 0]
        rot_v, off_v = world[:, self.vertex_joint], offset[:, self.vertex_joint]
        verts = ((rot_v @ rest[..., None])[..., 0] + off_v) * self.vertex_weight[:, None]
        out = self.kp_matrix @ torch.cat([joints, verts], dim=1)
        if transl is None:
            return out, joints
        return out + self.kp_total * transl[:, None], joints + transl[:, None]
