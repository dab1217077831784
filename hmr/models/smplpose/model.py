"""SMPL-Pose: HRNet + IEF initial estimate + SMPLer transformer (+ gated additions) + body model, crops in,
:class:`MeshOutput` out (smpler-facts.md section 2, docs/models.md)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from hmr.body import SMPL_PARENTS, BodyModel
from hmr.geometry import rot6d_to_matrix, weak_perspective_projection
from hmr.models.backbones.hrnet import HRNet
from hmr.models.heads.ief import IEFRegressor
from hmr.models.heads.smpl_transformer import HeadOutput
from hmr.models.mean_params import MeanParams
from hmr.models.precision import backbone_autocast
from hmr.models.predictor import MeshPredictor
from hmr.models.smplpose.config import SMPLPoseConfig
from hmr.models.smplpose.priors import JointTextPrior, load_joint_text
from hmr.models.smplpose.transformer import SMPLerBlock

# SMPLer starts the camera at s = 1 (no translation) and ignores the cam of smpl_mean_params.npz.
SMPLER_INIT_CAM = (1.0, 0.0, 0.0)

JointsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (rotmats, betas) -> (B, J, 3) posed joints


class SMPLerNetwork(nn.Module):
    """The trainable network under SMPLer's key names: ``backbone.*`` (HRNet), ``SMPL_predictor.*`` (IEF),
    ``init_query_layer_{beta,theta,cam}``, ``global_feat_projection``, ``transformer.{i}.*``; SMPL-Pose's
    ``joint_text_prior.*`` and ``...self_trans_layer.graph_bias.*`` when built."""

    def __init__(self, config: SMPLPoseConfig, mean_params: MeanParams):
        super().__init__()
        config.validate()
        self.config = config
        b, r, t = config.backbone, config.regressor, config.transformer
        self.backbone = HRNet(b)
        self.SMPL_predictor = IEFRegressor(b.channels[-1], r, mean_params)
        if config.model_type == "baseline":
            # It reads only the stride-32 map: the last module's fusions into the other branches get no gradient.
            # They stay in the state dict (SMPLer's layout, loaded by SMPLer's stage 2) but do not train.
            self.backbone.final_module.fuse_layers[:-1].requires_grad_(False)
        else:
            self.init_query_layer_beta = nn.Linear(r.num_betas, t.dim)
            self.init_query_layer_theta = nn.Linear(9, t.dim)
            self.init_query_layer_cam = nn.Linear(3, t.dim)
            self.global_feat_projection = nn.Linear(b.channels[-1], t.dim)
            parents = SMPL_PARENTS if config.graph_attention else None
            self.transformer = nn.ModuleList(
                SMPLerBlock(t, b.channels, config.image_size // 4, r.num_joints, r.num_betas, r.rot6d_layout, parents)
                for _ in range(t.num_blocks)
            )
        self.joint_text_prior = (
            JointTextPrior(load_joint_text(), t.dim, t.num_blocks) if config.language_prior else None
        )

    def regress(self, crops: torch.Tensor, joints: JointsFn) -> HeadOutput:
        """Normalised crops -> the final (rotations, betas, camera). ``joints(rotmats, betas)`` gives the body
        model's 24 posed joints, which, projected with the current camera, place each block's joint windows."""
        with backbone_autocast(self, crops):
            feats = [f.float() for f in self.backbone(crops)]
        global_feat = feats[-1].flatten(2).mean(2)
        est = self.SMPL_predictor(global_feat)
        if self.config.model_type == "baseline":
            return est
        rot, betas, cam = est.rotmats, est.betas, est.pred_cam
        query = torch.cat([
            self.init_query_layer_theta(rot.flatten(2)), self.init_query_layer_beta(betas)[:, None],
            self.init_query_layer_cam(cam)[:, None],
        ], dim=1) + self.global_feat_projection(global_feat)[:, None]  # fmt: skip
        prior = self.joint_text_prior
        for i, block in enumerate(self.transformer):
            joints2d = weak_perspective_projection(joints(rot, betas), cam)
            d6, d_betas, d_cam, query = block(query, feats, joints2d, None if prior is None else prior(i))
            rot = rot @ rot6d_to_matrix(d6, self.config.regressor.rot6d_layout)  # R <- R dR, every joint at once
            betas, cam = betas + d_betas, cam + d_cam
        return HeadOutput(rot, betas, cam)


class SMPLPose(SMPLerNetwork, MeshPredictor):
    """SMPL-Pose / SMPLer predictor (:mod:`hmr.models.smplpose.config`). ``state_dict()`` holds only the network;
    the body model is a submodule for ``.to()`` but its (licensed) arrays are never saved with the weights."""

    def __init__(self, config: SMPLPoseConfig, body_model: BodyModel, mean_params: MeanParams | None = None,
                 empty: bool = False):  # fmt: skip
        """``empty=True`` puts the network's tensors on the meta device, for ``load_state_dict(assign=True)``."""
        r = config.regressor
        mean_params = mean_params or MeanParams.from_body_model(body_model, r.num_betas, r.rot6d_layout)
        mean_params = dataclasses.replace(mean_params, cam=np.asarray(SMPLER_INIT_CAM, np.float32))
        with torch.device("meta") if empty else contextlib.nullcontext():
            super().__init__(config, mean_params)
        self.attach_body(body_model, r.num_joints, r.num_betas)

    @property
    def regress_reads_body(self) -> bool:
        return self.config.model_type != "baseline"  # the transformer blocks read the body's joints

    def regress(self, crops: torch.Tensor) -> HeadOutput:
        """SMPLer's camera [s, tx, ty] projects orthographically, ``s (X + [tx, ty])`` in [-1, 1] crop units; it
        becomes the crop translation as HMR 2.0's does (:meth:`MeshPredictor.mesh_output`). The blocks need only
        the body's joints (:meth:`MeshPredictor.body_joints`: no skinning)."""
        return super().regress(crops, self.body_joints)
