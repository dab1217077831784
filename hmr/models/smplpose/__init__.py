"""The SMPL-Pose family: SMPLer (HRNet + SMPLer transformer, xuxy09/SMPLer) with gated adaptive graph attention
and language priors, and SMPLer's stage-1 baseline (docs/models.md)."""

from hmr.models.registry import ModelFamily, register_family
from hmr.models.smplpose import convert
from hmr.models.smplpose.config import SMPLPOSE_MODELS, SMPLPoseConfig
from hmr.models.smplpose.convert import load_pretrained
from hmr.models.smplpose.model import SMPLPose

register_family(
    ModelFamily(
        name="smplpose",
        config_class=SMPLPoseConfig,
        build=lambda cfg, body_model, mean_params, empty: SMPLPose(cfg, body_model, mean_params, empty),
        network=convert.network,
        owns=convert.owns,
        convert=convert.convert,
        describe=convert.describe,
    ),
    SMPLPOSE_MODELS,
)

__all__ = ["SMPLPose", "SMPLPoseConfig", "SMPLPOSE_MODELS", "load_pretrained"]
