"""HMR 2.0's SMPL transformer-decoder head, written from its spec (docs/models.md).

One zero query token is embedded (``Linear(1 -> dim)`` + learned position), refined by ``depth`` pre-norm
layers of self-attention, cross-attention to the image tokens and a feed-forward block, then read out as
residuals on the mean parameters: 6D joint rotations, betas and a weak-perspective camera. Parameter
names match 4D-Humans' checkpoints (``transformer.transformer.layers.L.{0,1,2}...``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hmr.geometry import rot6d_to_matrix
from hmr.models.mean_params import MeanParams


@dataclass
class SMPLHeadConfig:
    """SMPL transformer-decoder head (single query token, cross-attention to the image tokens)."""

    dim: int = 1024
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 1024
    context_dim: int = 1280
    dropout: float = 0.0
    emb_dropout: float = 0.0
    norm_eps: float = 1e-5
    num_body_joints: int = 23
    num_betas: int = 10
    ief_iters: int = 1
    rot6d_layout: str = "hmr2"
    init_decoder_xavier: bool = False


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


class _Attention(nn.Module):
    """Multi-head softmax(q k^T / sqrt(dim_head)) v and the output projection, shared by self- and
    cross-attention; ``projections`` are the input layers, registered under their reference names."""

    def __init__(self, cfg: SMPLHeadConfig, **projections: nn.Linear):
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        for name, layer in projections.items():
            setattr(self, name, layer)
        # 4D-Humans skips the output projection exactly when one head already spans the model width.
        if cfg.heads == 1 and cfg.dim_head == cfg.dim:
            self.to_out = nn.Identity()
        else:
            self.to_out = nn.Sequential(nn.Linear(cfg.heads * cfg.dim_head, cfg.dim), nn.Dropout(cfg.dropout))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b = q.shape[0]
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, out.shape[2], -1))


class _SelfAttention(_Attention):
    def __init__(self, cfg: SMPLHeadConfig):
        super().__init__(cfg, to_qkv=nn.Linear(cfg.dim, 3 * cfg.heads * cfg.dim_head, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(*self.to_qkv(x).chunk(3, dim=-1))


class _CrossAttention(_Attention):
    def __init__(self, cfg: SMPLHeadConfig):
        inner = cfg.heads * cfg.dim_head
        super().__init__(
            cfg,
            to_kv=nn.Linear(cfg.context_dim, 2 * inner, bias=False),
            to_q=nn.Linear(cfg.dim, inner, bias=False),
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = self.to_kv(context).chunk(2, dim=-1)
        return self.attend(self.to_q(x), k, v)


class _FeedForward(nn.Module):
    def __init__(self, cfg: SMPLHeadConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.dim, cfg.mlp_dim), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_dim, cfg.dim), nn.Dropout(cfg.dropout),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _CrossAttentionLayers(nn.Module):
    def __init__(self, cfg: SMPLHeadConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    _PreNorm(cfg.dim, _SelfAttention(cfg), cfg.norm_eps),
                    _PreNorm(cfg.dim, _CrossAttention(cfg), cfg.norm_eps),
                    _PreNorm(cfg.dim, _FeedForward(cfg), cfg.norm_eps),
                ]
            )  # fmt: skip
            for _ in range(cfg.depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for self_attn, cross_attn, ff in self.layers:
            x = self_attn(x) + x
            x = cross_attn(x, context=context) + x
            x = ff(x) + x
        return x


class _TokenDecoder(nn.Module):
    def __init__(self, cfg: SMPLHeadConfig):
        super().__init__()
        self.to_token_embedding = nn.Linear(1, cfg.dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, 1, cfg.dim))
        self.dropout = nn.Dropout(cfg.emb_dropout)
        self.transformer = _CrossAttentionLayers(cfg)

    def forward(self, token: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.to_token_embedding(token)) + self.pos_embedding
        return self.transformer(x, context)


@dataclass
class HeadOutput:
    """rotmats (B, J, 3, 3) with the root first; betas (B, S); pred_cam (B, 3) weak perspective [s, tx, ty]."""

    rotmats: torch.Tensor
    betas: torch.Tensor
    pred_cam: torch.Tensor


class SMPLTransformerDecoderHead(nn.Module):
    """Image features (B, C, H, W) or tokens (B, N, C) -> :class:`HeadOutput`."""

    def __init__(self, cfg: SMPLHeadConfig, mean_params: MeanParams):
        super().__init__()
        self.config = cfg
        self.num_joints = cfg.num_body_joints + 1
        mean_params.check(self.num_joints, cfg.num_betas)
        self.transformer = _TokenDecoder(cfg)
        self.decpose = nn.Linear(cfg.dim, 6 * self.num_joints)
        self.decshape = nn.Linear(cfg.dim, cfg.num_betas)
        self.deccam = nn.Linear(cfg.dim, 3)
        if cfg.init_decoder_xavier:
            for lin in (self.decpose, self.decshape, self.deccam):
                nn.init.xavier_uniform_(lin.weight, gain=0.01)
        self.register_buffer("init_body_pose", torch.as_tensor(mean_params.pose, dtype=torch.float32)[None])
        self.register_buffer("init_betas", torch.as_tensor(mean_params.betas, dtype=torch.float32)[None])
        self.register_buffer("init_cam", torch.as_tensor(mean_params.cam, dtype=torch.float32)[None])

    def forward(self, features: torch.Tensor) -> HeadOutput:
        context = features.flatten(2).transpose(1, 2) if features.dim() == 4 else features
        b = context.shape[0]
        pose, betas, cam = (p.expand(b, -1) for p in (self.init_body_pose, self.init_betas, self.init_cam))
        token = context.new_zeros(b, 1, 1)
        for _ in range(self.config.ief_iters):
            out = self.transformer(token, context)[:, 0]
            pose = self.decpose(out) + pose
            betas = self.decshape(out) + betas
            cam = self.deccam(out) + cam
        rotmats = rot6d_to_matrix(pose.reshape(b, self.num_joints, 6), self.config.rot6d_layout)
        return HeadOutput(rotmats, betas, cam)
