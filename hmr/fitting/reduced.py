"""Body models that compute only one keypoint map or a few surface points (and the joints), for fast fitting."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from hmr.body import BodyModel, KeypointSet
from hmr.body.lbs import ancestor_matrix, forward_kinematics
from hmr.geometry import skew


class _BodyPoints(nn.Module):
    """Points of one body model: their rest positions with blend shapes and the body's forward kinematics
    (the same for every point set of one body model, so one result can serve several)."""

    def _init_body(self, model: BodyModel, rest: torch.Tensor) -> None:
        """``rest`` (P, 3, 1+S+D): each point's template, shape and (with pose correctives) pose blend shapes."""
        s = model.num_betas
        flat = rest.reshape(-1, rest.shape[-1])
        self.parents, self.levels, self.num_betas = model.parents, model.levels, s
        self.register_buffer("v_template", flat[:, :1].contiguous())
        self.register_buffer("shapedirs", flat[:, 1 : 1 + s].contiguous())
        self.register_buffer("posedirs", flat[:, 1 + s :].contiguous() if model.posedirs is not None else None)
        self.register_buffer("j_template", model.j_template.clone())
        self.register_buffer("j_shapedirs", model.j_shapedirs.clone())
        # The blend shapes in one matrix, so a forward pass with all betas does not concatenate them.
        blend = [self.shapedirs] + ([self.posedirs] if self.posedirs is not None else [])
        self.register_buffer("blend_t", torch.cat(blend, 1).T.contiguous())

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, J, 3) joints of the shaped body at rest."""
        return self.j_template + torch.einsum("bs,jcs->bjc", betas, self.j_shapedirs[..., : betas.shape[1]])

    def kinematics(self, rotmats: torch.Tensor, betas: torch.Tensor):
        """Rest joints (B, J, 3), and the world rotations (B, J, 3, 3) and positions (B, J, 3) of the joints: the
        same for every keypoint set of one body model, so one result can serve several reduced models."""
        rest_joints = self.rest_joints(betas)
        world, joints = forward_kinematics(rotmats, rest_joints, self.parents, self.levels)
        return rest_joints, world, joints

    def _posed(self, rotmats: torch.Tensor, betas: torch.Tensor, kinematics=None):
        """Rest points (B, P, 3) with shape and pose blend shapes, then :meth:`kinematics` (computed
        unless given)."""
        b = betas.shape[0]
        feats, dirs = [betas], [self.shapedirs[:, : betas.shape[1]]]
        if self.posedirs is not None:
            eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
            feats.append((rotmats[:, 1:] - eye).reshape(b, -1))
            dirs.append(self.posedirs)
        blend_t = self.blend_t if betas.shape[1] == self.num_betas else torch.cat(dirs, 1).T
        rest = (self.v_template[:, 0] + torch.cat(feats, 1) @ blend_t).view(b, -1, 3)
        return (rest, *(self.kinematics(rotmats, betas) if kinematics is None else kinematics))


class ReducedBodyModel(_BodyPoints):
    """Joints and the keypoints of one :class:`KeypointSet`, exactly as the full ``model`` gives them.

    A vertex keypoint is ``sum_v m_v x_v`` over skinned vertices, and skinning is linear in the rest-pose
    vertex (template, shape and pose blend shapes) per joint, so every (keypoint, joint) pair collapses into
    one "virtual vertex" skinned by that joint alone: position ``sum_v m_v w_vj x_v`` with weight 1, plus a
    translation-only vertex at the origin with weight ``sum_v m_v w_vj - 1``. Regressors over thousands of
    vertices thus cost a few virtual vertices per keypoint.
    """

    def __init__(self, model: BodyModel, keypoints: KeypointSet, jacobian: bool = True):
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
        v_joint = np.abs(vw).argmax(1)
        v_weight = vw[np.arange(2 * n), v_joint]
        kp_rows = np.concatenate([keypoints.rows[~on_vertex], k_idx, k_idx])
        kp_cols = np.concatenate([keypoints.cols[~on_vertex], nj + np.arange(2 * n)])
        kp_w = np.concatenate([keypoints.weights[~on_vertex], np.ones(2 * n)])

        dev, dt = model.v_template.device, model.v_template.dtype
        self._init_body(model, torch.as_tensor(vx, dtype=dt, device=dev))
        # Every virtual vertex follows one joint (``vertex_joint``) with weight ``vertex_weight``, so skinning
        # is a gather of joint transforms, made of plain tensor operations (forward-mode differentiable).
        self.register_buffer("vertex_joint", torch.as_tensor(v_joint, dtype=torch.long, device=dev))
        self.register_buffer("vertex_weight", torch.as_tensor(v_weight, dtype=dt, device=dev))
        # Keypoints as one dense (K, J + virtual vertices) product: tiny, and cheaper than scattered sums.
        kp_matrix = np.zeros((keypoints.num, nj + 2 * n))
        np.add.at(kp_matrix, (kp_rows, kp_cols), kp_w)
        self.register_buffer("kp_matrix", torch.as_tensor(kp_matrix, dtype=dt, device=dev))
        # A translation moves each keypoint by its total weight (1 for points and normalised regressors).
        total_w = np.bincount(keypoints.rows, keypoints.weights, minlength=keypoints.num)
        self.register_buffer("kp_total", torch.as_tensor(total_w, dtype=dt, device=dev)[:, None])
        self.num_keypoints = keypoints.num
        if jacobian:
            self._jacobian_buffers(kp_matrix, total_w, v_joint, v_weight, n, dt, dev)

    def _jacobian_buffers(self, kp_matrix, total_w, v_joint, v_weight, n, dt, dev) -> None:
        """What :meth:`linearise` needs (``jacobian=False`` skips it: (K+J) x J x columns floats, about 80 MB
        for 400 picked vertices)."""
        nj = len(self.parents)
        # For ``linearise``: every column of [joints; virtual vertices] is a point rigidly attached to one
        # joint's frame (a joint to its parent's, the root to itself), moved by the rotations of that frame's
        # ancestors. Rows are the keypoints, then the joints.
        parents = np.asarray(self.parents)
        frame = np.concatenate([np.maximum(parents, 0), v_joint])
        ancestors = ancestor_matrix(self.parents).astype(np.float64)
        col_weight = np.concatenate([np.ones(nj), v_weight])
        rows = np.concatenate([kp_matrix, np.eye(nj, nj + 2 * n)]) * col_weight  # (R, C)
        moved = rows[:, :, None] * ancestors[frame][None]  # (R, C, J): column c's weight in row r if j moves c
        t = functools.partial(torch.as_tensor, dtype=dt, device=dev)
        self.register_buffer("parent_index", torch.as_tensor(np.maximum(parents, 0), dtype=torch.long, device=dev))
        self.register_buffer("col_frame", torch.as_tensor(frame, dtype=torch.long, device=dev))
        self.register_buffer("ancestors", t(ancestors))
        self.register_buffer("rows", t(rows))
        self.register_buffer("moved", t(moved.transpose(0, 2, 1).reshape(-1, nj + 2 * n)))  # (R*J, C)
        self.register_buffer("rows_total", t(np.concatenate([total_w, np.ones(nj)])[:, None]))

    def forward(
        self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None, kinematics=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local rotations (B, J, 3, 3), betas (B, S) -> keypoints (B, K, 3), joints (B, J, 3); ``kinematics``:
        :meth:`kinematics` of the same rotations and betas, when already computed (by a model of the same body)."""
        rest, rest_joints, world, joints = self._posed(rotmats, betas, kinematics)
        offset = joints - (world @ rest_joints[..., None])[..., 0]
        rot_v, off_v = world[:, self.vertex_joint], offset[:, self.vertex_joint]
        verts = ((rot_v @ rest[..., None])[..., 0] + off_v) * self.vertex_weight[:, None]
        out = self.kp_matrix @ torch.cat([joints, verts], dim=1)
        if transl is None:
            return out, joints
        return out + self.kp_total * transl[:, None], joints + transl[:, None]

    def linearise(
        self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, with_joints: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints and joints, ``(B, K+J, 3)`` (as :meth:`forward` gives them, stacked; keypoints only unless
        ``with_joints``), and their Jacobian ``(B, K+J, 3, 3J+S+3)`` with respect to a rotation increment per
        joint (``R_j <- R_j exp([e_j]x)``, radians, in the joint's local frame), the betas and the translation.
        Analytic, for Gauss-Newton fits.

        A point attached to joint f moves by ``e_a`` of each ancestor a of f as ``(G_a e_a) x (p - J_a)``; the
        sums over each row's points are formed once per ancestor, so the cost does not grow with the number
        of virtual vertices a keypoint uses.
        """
        b, nj, s = betas.shape[0], len(self.parents), betas.shape[1]
        rest, rest_joints, world, joints = self._posed(rotmats, betas)
        f = self.col_frame
        nr = len(self.rows) if with_joints else self.num_keypoints
        rows, moved = self.rows[:nr], self.moved[: nr * nj]
        g = world[:, f]  # (B, C, 3, 3)
        points = (g @ (torch.cat([rest_joints, rest], 1) - rest_joints[:, f])[..., None])[..., 0] + joints[:, f]
        out = rows @ points + self.rows_total[:nr] * transl[:, None]

        # Rotations: -[q_ra - m_ra J_a]x G_a, with q_ra the (weighted) sum of row r's points that joint a moves.
        q = (moved @ points).view(b, -1, nj, 3)
        lever = q - moved.sum(-1).view(-1, nj, 1) * joints[:, None]  # (B, R, J, 3)
        d_rot = -torch.linalg.cross(lever[..., None], world[:, None], dim=-2)  # (B, R, J, 3, 3): column i = axis i
        d_rot = d_rot.permute(0, 1, 3, 2, 4).reshape(b, -1, 3, nj * 3)
        if self.posedirs is not None:
            # Pose blend shapes: d(R_k - I)/de_k,i = R_k [e_i]x, through the rest vertices of the virtual points.
            basis = skew(torch.eye(3, dtype=rotmats.dtype, device=rotmats.device))  # (3, 3, 3)
            d_feat = (rotmats[:, 1:, None] @ basis).reshape(b, nj - 1, 3, 9)
            pd = self.posedirs.view(-1, 3, nj - 1, 9)
            d_rest = torch.einsum("vxke,bkie->bvxki", pd, d_feat).reshape(b, -1, 3, (nj - 1) * 3)
            d_pts = g[:, nj:] @ d_rest  # (B, V, 3, 3(J-1))
            d_rot[..., 3:] += torch.einsum("rv,bvxk->brxk", rows[:, nj:], d_pts)
        # Betas: a point moves with its rest offset from its frame's joint and with that joint.
        sd = self.j_shapedirs[..., :s]
        p = self.parent_index
        step = world[:, p] @ (sd - sd[p])  # (B, J, 3, S): the bone to each joint from its parent
        step[:, 0] = sd[0]
        d_joint = torch.einsum("fa,baxs->bfxs", self.ancestors, step)
        col_dirs = torch.cat([sd, self.shapedirs[:, :s].view(-1, 3, s)], 0)
        d_pts = g @ (col_dirs - sd[f]) + d_joint[:, f]  # (B, C, 3, S)
        d_betas = torch.einsum("rc,bcxs->brxs", rows, d_pts)
        d_transl = (self.rows_total[:nr, :, None] * torch.eye(3, dtype=out.dtype, device=out.device)).expand(
            b, -1, 3, 3
        )
        return out, torch.cat([d_rot, d_betas, d_transl], -1)


class SurfacePoints(_BodyPoints):
    """Vertices ``index`` of ``model``, skinned directly, exactly as the full model gives them; ``forward`` as
    :meth:`ReducedBodyModel.forward`. For picked vertices (the silhouette's surface points) this is cheaper than
    a :class:`ReducedBodyModel`, whose virtual vertices pay off for regressors over many vertices."""

    def __init__(self, model: BodyModel, index):
        super().__init__()
        nv = model.num_vertices
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long, device=model.v_template.device)
        rest = [model.v_template[idx][..., None], model.shapedirs[idx]]
        if model.posedirs is not None:
            rest.append(model.posedirs.view(nv, 3, -1)[idx])
        self._init_body(model, torch.cat(rest, -1))
        self.register_buffer("weights", model.weights[idx].clone())  # (P, J)

    def forward(
        self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None, kinematics=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rest, rest_joints, world, joints = self._posed(rotmats, betas, kinematics)
        offset = joints - (world @ rest_joints[..., None])[..., 0]
        per_point = (self.weights @ torch.cat([world.flatten(-2), offset], -1)).unflatten(-1, (4, 3))  # (B, P, 4, 3)
        points = (per_point[..., :3, :] @ rest[..., None])[..., 0] + per_point[..., 3, :]
        if transl is None:
            return points, joints
        return points + transl[:, None], joints + transl[:, None]
