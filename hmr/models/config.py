"""Architecture configs of the HMR 2.0 family and the registry of its standard sizes.

Every architecture number is a dataclass field, saved as YAML through :mod:`hmr.config`. The registry
names the configurations of 4D-Humans (``hmr2_vit_h``) and Project_HMR (``hmr2_vit_s``), plus ViTPose-B/L
backbones with 4D-Humans' head (``hmr2_vit_b``, ``hmr2_vit_l``; no published weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ViTConfig:
    """ViTPose-style plain ViT. ``img_size`` is (H, W) of the centre columns the backbone sees."""

    img_size: tuple[int, int] = (256, 192)
    patch_size: int = 16
    patch_padding: int = 2  # ViTPose: 4 + 2 * (ratio // 2 - 1) with ratio 1
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.55
    norm_eps: float = 1e-6

    @property
    def num_pos_embed(self) -> int:
        """Rows of ``pos_embed``: one per patch of the unpadded image plus ViTPose's unused cls slot."""
        return (self.img_size[0] // self.patch_size) * (self.img_size[1] // self.patch_size) + 1


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


@dataclass
class HMR2Config:
    """A whole HMR 2.0 model: backbone, head, input normalisation, crop camera and keypoint sets."""

    name: str = "hmr2_vit_h"
    architecture: str = "hmr2"
    backbone: ViTConfig = field(default_factory=ViTConfig)
    head: SMPLHeadConfig = field(default_factory=SMPLHeadConfig)
    image_size: int = 256
    image_mean: tuple[float, float, float] = IMAGENET_MEAN  # on [0, 1] pixels; the model scales by 255
    image_std: tuple[float, float, float] = IMAGENET_STD
    focal_length: float = 5000.0  # crop-camera focal length in pixels of the image_size crop
    keypoint_sets: tuple[str, ...] = ("openpose25", "extra19")

    def validate(self) -> None:
        b, h = self.backbone, self.head
        if h.context_dim != b.embed_dim:
            raise ValueError(f"head.context_dim ({h.context_dim}) must equal backbone.embed_dim ({b.embed_dim})")
        if b.embed_dim % b.num_heads:
            raise ValueError(f"backbone.embed_dim ({b.embed_dim}) is not divisible by num_heads ({b.num_heads})")
        if b.img_size[0] != self.image_size or not 0 < b.img_size[1] <= self.image_size:
            raise ValueError(
                f"backbone.img_size {tuple(b.img_size)} must be ({self.image_size}, W<={self.image_size}): the "
                f"backbone sees the centre columns of the {self.image_size}x{self.image_size} crop"
            )
        if (self.image_size - b.img_size[1]) % 2:
            raise ValueError("image_size - backbone width must be even (centre columns are cut symmetrically)")
        if h.rot6d_layout not in ("hmr2", "spin"):
            raise ValueError(f"head.rot6d_layout must be 'hmr2' or 'spin', got {h.rot6d_layout!r}")


@dataclass(frozen=True)
class RegistryEntry:
    """A named standard configuration and where its published weights come from (if any)."""

    config: HMR2Config
    description: str
    weights: tuple[str, ...] = ()  # file names to look for, best first
    weights_source: str = ""  # empty: no published weights


def _hmr2(name: str, embed: int, depth: int, heads: int, drop_path: float, mlp_dim: int) -> HMR2Config:
    return HMR2Config(
        name=name,
        backbone=ViTConfig(embed_dim=embed, depth=depth, num_heads=heads, drop_path_rate=drop_path),
        head=SMPLHeadConfig(mlp_dim=mlp_dim, context_dim=embed),
    )


_4DH_SOURCE = (
    "4D-Humans (github.com/shubham-goel/4D-Humans): its demo downloads hmr2_data.tar.gz into ~/.cache/4DHumans; "
    "the checkpoint is logs/train/multiruns/hmr2/0/checkpoints/epoch=35-step=1000000.ckpt with "
    "model_config.yaml in logs/train/multiruns/hmr2/0/"
)
_PH_SOURCE = (
    "Project_HMR (github.com/gregpierreputra/Project_HMR): epoch_0086-step_000086130.ckpt from the Google Drive "
    "link in its README"
)

REGISTRY: dict[str, RegistryEntry] = {
    "hmr2_vit_s": RegistryEntry(
        _hmr2("hmr2_vit_s", 384, 12, 12, 0.1, 512),
        "Project_HMR: ViTPose-S (384/12/12) + decoder head (mlp 512, context 384)",
        ("hmr2_vit_s.safetensors", "epoch_0086-step_000086130.ckpt"),
        _PH_SOURCE,
    ),
    "hmr2_vit_b": RegistryEntry(
        _hmr2("hmr2_vit_b", 768, 12, 12, 0.3, 1024),
        "ViTPose-B (768/12/12) + 4D-Humans' head",
        ("hmr2_vit_b.safetensors",),
    ),  # fmt: skip
    "hmr2_vit_l": RegistryEntry(
        _hmr2("hmr2_vit_l", 1024, 24, 16, 0.5, 1024),
        "ViTPose-L (1024/24/16) + 4D-Humans' head",
        ("hmr2_vit_l.safetensors",),
    ),  # fmt: skip
    "hmr2_vit_h": RegistryEntry(
        _hmr2("hmr2_vit_h", 1280, 32, 16, 0.55, 1024),
        "4D-Humans HMR 2.0: ViT-H (1280/32/16) + decoder head (mlp 1024, context 1280)",
        ("hmr2_vit_h.safetensors", "epoch=35-step=1000000.ckpt"),
        _4DH_SOURCE,
    ),
}


def registry_config(name: str, **overrides) -> HMR2Config:
    """A fresh copy of a registered config; ``overrides`` replace top-level fields, and a dict given for
    ``backbone``/``head`` replaces only the fields it names (``head={"depth": 2}``)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(REGISTRY)}")
    return override_config(REGISTRY[name].config, **overrides)


def override_config(cfg: HMR2Config, **overrides) -> HMR2Config:
    """``cfg`` with ``overrides`` applied (see :func:`registry_config`), validated."""
    known = {f.name for f in dataclasses.fields(HMR2Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; known: {sorted(known)}")
    fields = {"backbone": dataclasses.replace(cfg.backbone), "head": dataclasses.replace(cfg.head), **overrides}
    for part in ("backbone", "head"):
        if isinstance(fields[part], dict):
            sub = getattr(cfg, part)
            bad = sorted(set(fields[part]) - {f.name for f in dataclasses.fields(sub)})
            if bad:
                raise ValueError(f"unknown {part} config fields {bad}")
            fields[part] = dataclasses.replace(sub, **fields[part])
    cfg = dataclasses.replace(cfg, **fields)
    cfg.validate()
    return cfg
