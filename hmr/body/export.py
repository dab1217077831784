"""The body model as an ONNX graph: ``pose`` (B, J, 3) axis-angle + ``betas`` (B, S) -> ``vertices`` (B, V, 3),
``joints`` (B, J, 3), metres, body frame (docs/models.md, "ONNX export").

:class:`BodyModelGraph` is textbook SMPL blend shapes and linear blend skinning in plain torch ops (with
:func:`hmr.body.lbs.forward_kinematics`, which exports): the fast skinning of :mod:`hmr.body.lbs` uses oneDNN's
private ops and custom autograd Functions, which do not export. Its tests compare the two, which also checks
the fast path against the formula.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from hmr.body.lbs import forward_kinematics
from hmr.body.model import BodyModel
from hmr.geometry.rotation import axis_angle_to_matrix
from hmr.io.onnx import export_onnx, max_differences
from hmr.version import __version__

KIND = "hmr-body-model"
INPUTS = ["pose", "betas"]
OUTPUTS = ["vertices", "joints"]


class BodyModelGraph(nn.Module):
    """``forward(pose, betas) -> (vertices, joints)``: the body model's mesh and kinematic joints without
    translation, as ``BodyModel.forward`` computes them (axis-angle ``pose``, root first, SMPL order)."""

    def __init__(self, body_model: BodyModel, dtype: torch.dtype = torch.float32):
        super().__init__()
        for name in ("v_template", "shapedirs", "j_regressor", "weights", "posedirs"):
            t = getattr(body_model, name)
            self.register_buffer(name, None if t is None else t.detach().to("cpu", dtype).clone())
        self.parents, self.levels = list(body_model.parents), body_model.levels

    def forward(self, pose: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, nj = pose.shape[0], len(self.parents)
        rot = axis_angle_to_matrix(pose)  # (B, J, 3, 3)
        shaped = self.v_template + torch.einsum("vcs,bs->bvc", self.shapedirs[..., : betas.shape[1]], betas)
        rest = torch.einsum("jv,bvc->bjc", self.j_regressor, shaped)  # joints regressed from the shaped mesh
        posed = shaped
        if self.posedirs is not None:  # pose correctives: (V*3, 9(J-1)) on the flattened R - I of the non-roots
            eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
            posed = shaped + ((rot[:, 1:] - eye).reshape(b, -1) @ self.posedirs.T).view(b, -1, 3)
        world_rot, joints = forward_kinematics(rot, rest, self.parents, self.levels)
        # Skinning: each vertex moves by the weighted sum of the joints' [R | t - R J_rest] transforms.
        offset = joints - (world_rot @ rest[..., None])[..., 0]
        per_joint = torch.cat([world_rot, offset[..., None]], -1).reshape(b, nj, 12)
        blend = (self.weights @ per_joint).view(b, -1, 3, 4)  # (B, V, 3, 4)
        vertices = (blend[..., :3] @ posed[..., None])[..., 0] + blend[..., 3]
        return vertices, joints


def export_body(body_model: BodyModel, path: str | os.PathLike, verify: bool = True) -> tuple[Path, dict[str, float]]:
    """Write ``body_model`` as an ONNX graph (float32) to ``path``; returns the path and, with ``verify``, the
    largest |onnxruntime - BodyModel.forward| (metres) per output on two random poses (0 for none)."""
    g = torch.Generator().manual_seed(0)
    nj, ns = body_model.num_joints, body_model.num_betas
    pose, betas = 0.5 * torch.randn(2, nj, 3, generator=g), torch.randn(2, ns, generator=g)
    meta = {
        "hmr.version": __version__, "hmr.body_model": body_model.name,
        "hmr.num_vertices": str(body_model.num_vertices),
        "hmr.num_joints": str(nj), "hmr.num_betas": str(ns), "hmr.parents": json.dumps(body_model.parents),
        "hmr.joint_names": json.dumps(list(body_model.joint_names)),
        "hmr.faces": json.dumps(body_model.faces.cpu().numpy().tolist(), separators=(",", ":")),
        "hmr.pose_correctives": str(body_model.posedirs is not None).lower(),
        "hmr.units": "metres, body frame (docs/conventions.md)",
    }  # fmt: skip
    path = export_onnx(BodyModelGraph(body_model), (pose, betas), path, INPUTS, OUTPUTS, KIND, meta)
    if not verify:
        return path, {}
    dev, dt = body_model.v_template.device, body_model.v_template.dtype
    with torch.no_grad():
        ref = body_model(global_orient=pose[:, :1].to(dev, dt), body_pose=pose[:, 1:].to(dev, dt),
                         betas=betas.to(dev, dt), keypoint_sets=())  # fmt: skip
    return path, max_differences(path, KIND, {"pose": pose, "betas": betas},
                                 {"vertices": ref.vertices, "joints": ref.joints})  # fmt: skip
