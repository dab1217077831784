"""Architecture configs of the SMPL-Pose family (SMPLer + two gated additions) and its registry entries.

``model_type="smpler"`` is SMPLer (HRNet + IEF initial estimate + 3 transformer blocks); ``"baseline"`` is
its stage-1 model (HRNet + IEF regressor only). ``graph_attention`` / ``language_prior`` build the additions
(:mod:`hmr.models.smplpose.priors`); with both off the network is SMPLer's, key for key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hmr.models.backbones.hrnet import HRNetConfig
from hmr.models.heads.ief import IEFConfig
from hmr.models.predictor import IMAGENET_MEAN, IMAGENET_STD
from hmr.models.registry import ModelEntry
from hmr.models.smplpose.transformer import SMPLerConfig

MODEL_TYPES = ("smpler", "baseline")


@dataclass
class SMPLPoseConfig:
    """A whole SMPL-Pose model: HRNet, IEF regressor, SMPLer transformer, additions, input and crop camera."""

    name: str = "smplpose_w32"
    architecture: str = "smplpose"
    model_type: str = "smpler"
    backbone: HRNetConfig = field(default_factory=HRNetConfig)
    regressor: IEFConfig = field(default_factory=IEFConfig)
    transformer: SMPLerConfig = field(default_factory=SMPLerConfig)
    graph_attention: bool = True  # kinematic hop bias + learned adjacency in the token self-attention
    language_prior: bool = True  # joint-description embeddings added to the joint tokens
    image_size: int = 224
    image_mean: tuple[float, float, float] = IMAGENET_MEAN  # on [0, 1] pixels; the model scales by 255
    image_std: tuple[float, float, float] = IMAGENET_STD
    focal_length: float = 5000.0  # SMPLer's constants.focal_length, pixels of the image_size crop
    bbox_shape: tuple[int, int] = (224, 224)  # SMPLer crops square boxes
    keypoint_sets: tuple[str, ...] = ("openpose25", "extra19")

    def validate(self) -> None:
        t = self.transformer
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.model_type == "baseline" and (self.graph_attention or self.language_prior):
            raise ValueError("graph_attention and language_prior act in the transformer, which the baseline lacks")
        if self.image_size % 32:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of 32 (HRNet's coarsest stride)")
        if t.dim % t.heads:
            raise ValueError(f"transformer.dim ({t.dim}) is not divisible by transformer.heads ({t.heads})")
        if self.regressor.rot6d_layout not in ("spin", "hmr2"):
            raise ValueError(f"regressor.rot6d_layout must be 'spin' or 'hmr2', got {self.regressor.rot6d_layout!r}")
        if (self.graph_attention or self.language_prior) and self.regressor.num_joints != 24:
            raise ValueError("graph_attention and language_prior describe SMPL's 24 joints (regressor.num_joints)")


def _config(width: int, model_type: str) -> SMPLPoseConfig:
    smpler = model_type == "smpler"
    suffix = "" if smpler else "_baseline"
    return SMPLPoseConfig(name=f"smplpose_w{width}{suffix}", model_type=model_type,
                          backbone=HRNetConfig(width=width), graph_attention=smpler, language_prior=smpler)  # fmt: skip


_SOURCE = (
    "SMPLer (github.com/xuxy09/SMPLer): pretrained/{} from the Tencent Weiyun link in its README (they load as "
    "SMPLer, the additions off)"
)

SMPLPOSE_MODELS: dict[str, ModelEntry] = {
    "smplpose_w32": ModelEntry(
        "smplpose",
        _config(32, "smpler"),
        "SMPL-Pose: HRNet-W32 + SMPLer transformer (128 wide, 3 blocks) + graph attention + language prior",
        ("smplpose_w32.safetensors", "SMPLer_h36m.pt", "SMPLer_3dpw.pt"),
        _SOURCE.format("SMPLer_h36m.pt or SMPLer_3dpw.pt"),
    ),
    "smplpose_w48": ModelEntry(
        "smplpose",
        _config(48, "smpler"),
        "SMPL-Pose: HRNet-W48 + SMPLer transformer (128 wide, 3 blocks) + graph attention + language prior",
        ("smplpose_w48.safetensors", "SMPLer-L_h36m.pt", "SMPLer-L_3dpw.pt"),
        _SOURCE.format("SMPLer-L_h36m.pt or SMPLer-L_3dpw.pt"),
    ),
    "smplpose_w32_baseline": ModelEntry(
        "smplpose",
        _config(32, "baseline"),
        "SMPLer's stage-1 model: HRNet-W32 + IEF regressor",
        ("smplpose_w32_baseline.safetensors",),
    ),  # fmt: skip
    "smplpose_w48_baseline": ModelEntry(
        "smplpose",
        _config(48, "baseline"),
        "SMPLer's stage-1 model: HRNet-W48 + IEF regressor",
        ("smplpose_w48_baseline.safetensors",),
    ),  # fmt: skip
}
