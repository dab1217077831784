"""HMR/SPIN's iterative error feedback (IEF) regressor, written from its spec (smpler-facts.md section 2.3).

A pooled image feature and the current estimate (6D pose per joint, betas, weak-perspective camera) pass
``Linear -> ReLU -> Dropout -> Linear -> ReLU -> Dropout``; three linear read-outs add residuals to the
estimate, which starts at the mean parameters (buffers ``init_pose``, ``init_shape``, ``init_cam``). This
repeats ``iterations`` times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hmr.geometry import rot6d_to_matrix
from hmr.models.heads.smpl_transformer import HeadOutput
from hmr.models.mean_params import MeanParams


@dataclass
class IEFConfig:
    hidden: int = 1024
    iterations: int = 3
    dropout: float = 0.5
    num_joints: int = 24  # root included
    num_betas: int = 10
    rot6d_layout: str = "spin"


class IEFRegressor(nn.Module):
    """(B, in_dim) features -> :class:`HeadOutput` (rotations root first, betas, camera)."""

    def __init__(self, in_dim: int, cfg: IEFConfig, mean_params: MeanParams):
        super().__init__()
        self.config = cfg
        mean_params.check(cfg.num_joints, cfg.num_betas)
        npose = 6 * cfg.num_joints
        self.fc1 = nn.Linear(in_dim + npose + cfg.num_betas + 3, cfg.hidden)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.fc2 = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop2 = nn.Dropout(cfg.dropout)
        self.decpose = nn.Linear(cfg.hidden, npose)
        self.decshape = nn.Linear(cfg.hidden, cfg.num_betas)
        self.deccam = nn.Linear(cfg.hidden, 3)
        for lin in (self.decpose, self.decshape, self.deccam):  # small first residuals: start near the mean
            nn.init.xavier_uniform_(lin.weight, gain=0.01)
        self.register_buffer("init_pose", torch.as_tensor(mean_params.pose, dtype=torch.float32)[None])
        self.register_buffer("init_shape", torch.as_tensor(mean_params.betas, dtype=torch.float32)[None])
        self.register_buffer("init_cam", torch.as_tensor(mean_params.cam, dtype=torch.float32)[None])

    def forward(self, x: torch.Tensor) -> HeadOutput:
        b = x.shape[0]
        pose, betas, cam = (p.expand(b, -1) for p in (self.init_pose, self.init_shape, self.init_cam))
        for _ in range(self.config.iterations):
            h = self.drop1(torch.relu(self.fc1(torch.cat([x, pose, betas, cam], dim=1))))
            h = self.drop2(torch.relu(self.fc2(h)))
            pose = pose + self.decpose(h)
            betas = betas + self.decshape(h)
            cam = cam + self.deccam(h)
        rotmats = rot6d_to_matrix(pose.reshape(b, self.config.num_joints, 6), self.config.rot6d_layout)
        return HeadOutput(rotmats, betas, cam)
