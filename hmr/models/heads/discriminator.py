"""HMR's pose and shape discriminator, as 4D-Humans trains HMR 2.0 with it (hmr2-facts.md §3.6).

Input: body-pose rotation matrices (B, 23, 3, 3) and betas (B, 10). A shared 1x1-conv trunk embeds each joint's
rotation (9 -> 32 -> 32); 23 per-joint linear outputs, a shape branch (10 -> 10 -> 5 -> 1) and a whole-pose
branch (736 -> 1024 -> 1024 -> 1) give (B, 25) scores = [23 joints, betas, all joints]. Xavier-uniform weights,
zero biases; 1,807,619 parameters. Parameter names are 4D-Humans' (``D_conv1``, ``pose_out.N``, ``betas_fc1``,
``D_alljoints_fc1``...), so the ``discriminator.*`` entries of its checkpoints load as they are.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_BODY_JOINTS = 23


class Discriminator(nn.Module):
    def __init__(self, num_joints: int = NUM_BODY_JOINTS, num_betas: int = 10):
        super().__init__()
        self.num_joints, self.num_betas = num_joints, num_betas
        self.D_conv1 = nn.Conv2d(9, 32, kernel_size=1)
        self.D_conv2 = nn.Conv2d(32, 32, kernel_size=1)
        self.pose_out = nn.ModuleList([nn.Linear(32, 1) for _ in range(num_joints)])
        self.betas_fc1 = nn.Linear(num_betas, 10)
        self.betas_fc2 = nn.Linear(10, 5)
        self.betas_out = nn.Linear(5, 1)
        self.D_alljoints_fc1 = nn.Linear(32 * num_joints, 1024)
        self.D_alljoints_fc2 = nn.Linear(1024, 1024)
        self.D_alljoints_out = nn.Linear(1024, 1)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, body_pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """(B, 23, 3, 3) rotations and (B, 10) betas -> (B, 25) scores (real close to 1 under LSGAN)."""
        b = body_pose.shape[0]
        x = body_pose.reshape(b, self.num_joints, 1, 9).permute(0, 3, 1, 2)  # (B, 9, 23, 1)
        x = torch.relu(self.D_conv2(torch.relu(self.D_conv1(x))))  # (B, 32, 23, 1)
        per_joint = torch.cat([self.pose_out[j](x[:, :, j, 0]) for j in range(self.num_joints)], dim=1)
        shape = self.betas_out(torch.relu(self.betas_fc2(torch.relu(self.betas_fc1(betas)))))
        whole = torch.relu(self.D_alljoints_fc2(torch.relu(self.D_alljoints_fc1(x.reshape(b, -1)))))
        return torch.cat([per_joint, shape, self.D_alljoints_out(whole)], dim=1)
