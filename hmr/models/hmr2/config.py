"""Architecture configs of the HMR 2.0 family and the registry of its standard sizes.

Every architecture number is a dataclass field, saved as YAML through :mod:`hmr.config`. The registry
names the configurations of 4D-Humans (``hmr2_vit_h``) and Project_HMR (``hmr2_vit_s``), plus ViTPose-B/L
backbones with 4D-Humans' head (``hmr2_vit_b``, ``hmr2_vit_l``; no published weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hmr.models.backbones.vit import ViTConfig
from hmr.models.heads.smpl_transformer import SMPLHeadConfig
from hmr.models.predictor import IMAGENET_MEAN, IMAGENET_STD
from hmr.models.registry import ModelEntry


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
    bbox_shape: tuple[int, int] = (192, 256)  # (w, h) aspect person boxes are padded to before the square crop
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

# Where 4D-Humans' own downloader puts its checkpoint; reused when present.
_4DH_CACHE = "~/.cache/4DHumans/logs/train/multiruns/hmr2/0/checkpoints"

HMR2_MODELS: dict[str, ModelEntry] = {
    "hmr2_vit_s": ModelEntry(
        "hmr2",
        _hmr2("hmr2_vit_s", 384, 12, 12, 0.1, 512),
        "Project_HMR: ViTPose-S (384/12/12) + decoder head (mlp 512, context 384)",
        ("hmr2_vit_s.safetensors", "epoch_0086-step_000086130.ckpt"),
        _PH_SOURCE,
    ),
    "hmr2_vit_b": ModelEntry(
        "hmr2",
        _hmr2("hmr2_vit_b", 768, 12, 12, 0.3, 1024),
        "ViTPose-B (768/12/12) + 4D-Humans' head",
        ("hmr2_vit_b.safetensors",),
    ),  # fmt: skip
    "hmr2_vit_l": ModelEntry(
        "hmr2",
        _hmr2("hmr2_vit_l", 1024, 24, 16, 0.5, 1024),
        "ViTPose-L (1024/24/16) + 4D-Humans' head",
        ("hmr2_vit_l.safetensors",),
    ),  # fmt: skip
    "hmr2_vit_h": ModelEntry(
        "hmr2",
        _hmr2("hmr2_vit_h", 1280, 32, 16, 0.55, 1024),
        "4D-Humans HMR 2.0: ViT-H (1280/32/16) + decoder head (mlp 1024, context 1280)",
        ("hmr2_vit_h.safetensors", "epoch=35-step=1000000.ckpt"),
        _4DH_SOURCE,
        (_4DH_CACHE,),
    ),
}
