"""SMPLer's transformer blocks, written from their spec (smpler-facts.md section 2.5); parameter names follow
SMPLer's checkpoints (``transformer.{i}.trans_block.trans_units.{u}.global_unit...``).

Each block refines 26 tokens (24 joint rotations, shape, camera) with ``units_per_block`` units of

* multi-scale attention: one cross-attention layer per HRNet map (stride 4, 8, 16, 32), outputs averaged;
* joint-aware attention: each joint token attends to the 8x8 window of the stride-4 map around its projected
  joint, with a learned relative-position bias read bilinearly from a (heads, 9, 9) table;
* self-attention among the 26 tokens (where SMPL-Pose's graph bias is added),

and reads out a rotation residual per joint (6D), a shape residual and a camera residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hmr.geometry import matrix_to_rot6d
from hmr.models.smplpose.priors import KinematicGraphBias


@dataclass
class SMPLerConfig:
    """SMPLer's transformer (``TranformerConfig``) and SMPL-Pose's graph-bias sizes."""

    dim: int = 128
    heads: int = 4
    mlp_dim: int = 256
    num_blocks: int = 3
    units_per_block: int = 2
    sampling_radius: int = 4  # the joint window is 2r x 2r pixels of the stride-4 map
    dropout: float = 0.1
    attn_dropout: float = 0.1
    norm_eps: float = 1e-12
    graph_max_hops: int = 6  # hop distances beyond this share one bias
    graph_embed_dim: int = 16  # rank of the learned adjacency


# ------------------------------------------------------------------------------------- joint windows
def joint_windows(joints2d: torch.Tensor, size: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling positions around projected joints on a ``size`` x ``size`` map.

    ``joints2d`` (B, J, 2) are (x, y) in [-1, 1] with ``align_corners=True`` (-1 and 1 are the centres of the
    first and last pixel), i.e. pixel ``p = (x + 1) / 2 * (size - 1)``. Returns the window's integer pixels
    (B, J, (2r)^2, 2) ``floor(p) + k`` for k in -r+1..r (x varying fastest), clamped to the map, and their
    offsets ``(pixel - p) / r`` (about [-1, 1]) that index the relative-position table.
    """
    p = (joints2d + 1) / 2 * (size - 1)
    k = torch.arange(1 - radius, radius + 1, device=joints2d.device)
    dy, dx = torch.meshgrid(k, k, indexing="ij")
    steps = torch.stack([dx, dy], dim=-1).reshape(-1, 2)
    pixels = (p.floor().long()[:, :, None] + steps).clamp(0, size - 1)
    return pixels, (pixels.to(p.dtype) - p[:, :, None]) / radius


def gather_windows(feat: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map at integer (x, y) ``pixels`` (B, J, K, 2) -> (B, J, K, C) (nearest sampling)."""
    b, c, _, w = feat.shape
    index = (pixels[..., 1] * w + pixels[..., 0]).reshape(b, 1, -1).expand(-1, c, -1)
    return feat.flatten(2).gather(2, index).reshape(b, c, *pixels.shape[1:3]).permute(0, 2, 3, 1)


def window_bias(table: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(1, heads, 2r + 1, 2r + 1) table read bilinearly (``align_corners=True``: offset -1, 0, 1 are its first,
    centre and last entries) at (B, J, K, 2) (x, y) offsets -> (B, heads, J, K) attention bias."""
    return F.grid_sample(table.expand(offsets.shape[0], -1, -1, -1), offsets, mode="bilinear", align_corners=True)


# ------------------------------------------------------------------------------------------- layers
class _Attention(nn.Module):
    """Multi-head softmax(q k^T / sqrt(d) + bias) v, written out (no fused kernel) so that adding a zero bias
    leaves the result bit-identical to adding none."""

    def __init__(self, cfg: SMPLerConfig):
        super().__init__()
        self.heads = cfg.heads
        self.query, self.key, self.value = (nn.Linear(cfg.dim, cfg.dim) for _ in range(3))
        self.dropout = nn.Dropout(cfg.attn_dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(context)), split(self.value(context))
        scores = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5
        if bias is not None:
            scores = scores + bias
        return (self.dropout(scores.softmax(-1)) @ v).transpose(1, 2).reshape(b, n, d)


class TransformerLayer(nn.Module):
    """SMPLer's pre-norm ``TransformerLayer_v1``: ``h = x + Drop(Linear(Attn(LN(x), context)))``, then
    ``h + Drop(MLP(h))`` with MLP = LN -> Linear -> GELU -> Linear. Without a context it is self-attention on
    LN(x); a context (image tokens) is used as given (not re-normalised)."""

    def __init__(self, cfg: SMPLerConfig):
        super().__init__()
        self.LayerNorm_attn = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attention = _Attention(cfg)
        self.linear_attn = nn.Linear(cfg.dim, cfg.dim)
        self.mlp = nn.Sequential(
            nn.LayerNorm(cfg.dim, eps=cfg.norm_eps), nn.Linear(cfg.dim, cfg.mlp_dim), nn.GELU(),
            nn.Linear(cfg.mlp_dim, cfg.dim),
        )  # fmt: skip
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        h = self.LayerNorm_attn(x)
        x = x + self.dropout(self.linear_attn(self.attention(h, h if context is None else context, bias)))
        return x + self.dropout(self.mlp(x))


class _Holder(nn.Module):
    """One layer under the reference's wrapper name (``transformer_layer``)."""

    def __init__(self, cfg: SMPLerConfig):
        super().__init__()
        self.transformer_layer = TransformerLayer(cfg)


class _GlobalUnit(nn.Module):
    def __init__(self, cfg: SMPLerConfig, num_scales: int):
        super().__init__()
        self.trans_layer_list = nn.ModuleList(_Holder(cfg) for _ in range(num_scales))

    def forward(self, x: torch.Tensor, scales: list[torch.Tensor]) -> torch.Tensor:
        outs = [h.transformer_layer(x, tokens) for h, tokens in zip(self.trans_layer_list, scales, strict=True)]
        return torch.stack(outs).mean(0)


class _LocalUnit(nn.Module):
    def __init__(self, cfg: SMPLerConfig):
        super().__init__()
        side = 2 * cfg.sampling_radius + 1
        self.relative_position_encoding_table = nn.ParameterList(
            [nn.Parameter(torch.randn(1, cfg.heads, side, side) * 0.02)]
        )
        self.trans_layer_list = nn.ModuleList([_Holder(cfg)])

    def forward(self, joints: torch.Tensor, window: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """joints (B, J, D) tokens; window (B, J, K, D) features; offsets (B, J, K, 2) -> (B, J, D)."""
        b, j, k, d = window.shape
        bias = window_bias(self.relative_position_encoding_table[0], offsets).permute(0, 2, 1, 3)
        bias = bias.reshape(b * j, -1, 1, k)
        out = self.trans_layer_list[0].transformer_layer(joints.reshape(b * j, 1, d), window.reshape(b * j, k, d), bias)
        return out.reshape(b, j, d)


class _SelfLayer(nn.Module):
    """The token self-attention, with SMPL-Pose's graph bias when it is built."""

    def __init__(self, cfg: SMPLerConfig, parents: tuple[int, ...] | None):
        super().__init__()
        self.self_trans_layer = TransformerLayer(cfg)
        self.graph_bias = (
            KinematicGraphBias(parents, cfg.heads, cfg.graph_max_hops, cfg.graph_embed_dim) if parents else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.self_trans_layer(x, bias=None if self.graph_bias is None else self.graph_bias())


class _Unit(nn.Module):
    """Multi-scale and joint-aware attention from the same tokens; joint tokens take their mean, shape and
    camera tokens the multi-scale result; then self-attention."""

    def __init__(self, cfg: SMPLerConfig, num_scales: int, parents: tuple[int, ...] | None):
        super().__init__()
        self.global_unit = _GlobalUnit(cfg, num_scales)
        self.local_unit = _LocalUnit(cfg)
        self.self_trans_layer = _SelfLayer(cfg, parents)

    def forward(self, x, scales, window, offsets) -> torch.Tensor:
        g = self.global_unit(x, scales)
        j = window.shape[1]
        local = self.local_unit(x[:, :j], window, offsets)
        return self.self_trans_layer(torch.cat([0.5 * (g[:, :j] + local), g[:, j:]], dim=1))


class _TokenTransformer(nn.Module):
    """SMPLer's ``TransformerBlock``: token embedding + position, feature position embedding (one learned
    stride-4 map, average-pooled for the coarser scales), the units, and ``head(x) + residual(query)``."""

    def __init__(self, cfg: SMPLerConfig, num_tokens: int, feat_size: int, num_scales: int, parents):
        super().__init__()
        self.feat_position_embedding = nn.Parameter(torch.randn(1, cfg.dim, feat_size, feat_size) * 0.1)
        self.early_embedding = nn.Linear(cfg.dim, cfg.dim)
        self.position_embeddings = nn.Embedding(num_tokens, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.trans_units = nn.ModuleList(_Unit(cfg, num_scales, parents) for _ in range(cfg.units_per_block))
        self.head = nn.Linear(cfg.dim, cfg.dim)
        self.residual = nn.Linear(cfg.dim, cfg.dim)
        for m in self.modules():  # SMPLer's init_weights on this block (the feature position map excepted)
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, query, maps, window, offsets, joint_prior: torch.Tensor | None) -> torch.Tensor:
        pos = self.position_embeddings.weight
        if joint_prior is not None:
            pos = pos + F.pad(joint_prior, (0, 0, 0, pos.shape[0] - joint_prior.shape[0]))
        x = self.dropout(self.early_embedding(query) + pos)
        scales, feat_pos = [], self.feat_position_embedding
        for s, m in enumerate(maps):
            feat_pos = F.avg_pool2d(feat_pos, 2) if s else feat_pos
            scales.append((m + feat_pos).flatten(2).transpose(1, 2))
        for unit in self.trans_units:
            x = unit(x, scales, window, offsets)
        return self.head(x) + self.residual(query)


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of every pixel of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SMPLerBlock(nn.Module):
    """SMPLer's ``TransformerBlock_Wrapped``: (tokens (B, J + 2, D), HRNet maps, projected joints (B, J, 2)) ->
    (6D rotation residuals (B, J, 6), shape residual (B, S), camera residual (B, 3), new tokens)."""

    def __init__(self, cfg: SMPLerConfig, map_channels: tuple[int, ...], feat_size: int, num_joints: int,
                 num_betas: int, rot6d_layout: str, parents: tuple[int, ...] | None = None):  # fmt: skip
        super().__init__()
        self.config = cfg
        self.raw_feat_projection_layer = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, cfg.dim, 1), _ChannelNorm(cfg.dim, eps=cfg.norm_eps)) for c in map_channels
        )
        self.joint_feat_projection_layer = nn.Sequential(nn.Linear(cfg.dim, cfg.dim))
        self.trans_block = _TokenTransformer(cfg, num_joints + 2, feat_size, len(map_channels), parents)
        self.theta_predictor = nn.Linear(cfg.dim, 6)
        self.beta_predictor = nn.Linear(cfg.dim, num_betas)
        self.cam_predictor = nn.Linear(cfg.dim, 3)
        with torch.no_grad():  # residuals start near zero, the rotation residual near the identity
            for lin in (self.theta_predictor, self.beta_predictor, self.cam_predictor):
                nn.init.normal_(lin.weight, std=1e-3)
                nn.init.zeros_(lin.bias)
            self.theta_predictor.bias.copy_(0.1 * matrix_to_rot6d(torch.eye(3), rot6d_layout))

    def forward(self, query: torch.Tensor, feats: list[torch.Tensor], joints2d: torch.Tensor,
                joint_prior: torch.Tensor | None = None):  # fmt: skip
        maps = [proj(f) for proj, f in zip(self.raw_feat_projection_layer, feats, strict=True)]
        fine = maps[0]
        j = joints2d.shape[1]
        at_joints = F.grid_sample(fine, joints2d[:, :, None], mode="bilinear", align_corners=True)[..., 0]
        joint_feat = self.joint_feat_projection_layer(at_joints.transpose(1, 2))  # (B, J, D)
        query = query + torch.cat([joint_feat, joint_feat.mean(1, keepdim=True).expand(-1, 2, -1)], dim=1)
        pixels, offsets = joint_windows(joints2d, fine.shape[-1], self.config.sampling_radius)
        tokens = self.trans_block(query, maps, gather_windows(fine, pixels), offsets, joint_prior)
        return (self.theta_predictor(tokens[:, :j]), self.beta_predictor(tokens[:, j]),
                self.cam_predictor(tokens[:, j + 1]), tokens)  # fmt: skip
