"""Mesh-recovery networks: one registry of model families (docs/models.md, docs/architecture.md).

``create_model(name, **overrides)`` builds a registered architecture with random weights (training);
``load_model(checkpoint_or_name)`` builds one from weights (any registered family's reference checkpoints, or
our own ``.safetensors``); ``save_model`` writes our format; ``list_models()`` names what is registered.
"""

# Registers the HMR 2.0 and SMPL-Pose families, and .onnx files with load_model.
from hmr.models import hmr2, onnx, smplpose
from hmr.models.backbones.hrnet import HRNetConfig, load_hrnet_weights
from hmr.models.backbones.vit import ViTConfig
from hmr.models.heads.smpl_transformer import SMPLHeadConfig
from hmr.models.hmr2 import HMR2, HMR2Config
from hmr.models.hmr2.convert import load_backbone_weights
from hmr.models.mean_params import MeanParams
from hmr.models.registry import (
    FAMILIES,
    MODEL_DIR_ENV_VAR,
    MODELS,
    GuessedConfigWarning,
    ModelEntry,
    ModelFamily,
    create_model,
    list_models,
    load_model,
    model_config,
    register_family,
    save_model,
)
from hmr.models.smplpose import SMPLPose, SMPLPoseConfig
from hmr.models.weights import CheckpointMismatchError

__all__ = [
    "FAMILIES", "MODELS", "MODEL_DIR_ENV_VAR", "HMR2", "HMR2Config", "SMPLHeadConfig", "ViTConfig", "MeanParams",
    "CheckpointMismatchError", "GuessedConfigWarning", "ModelEntry", "ModelFamily", "create_model", "list_models",
    "load_model", "model_config", "register_family", "save_model", "load_backbone_weights", "hmr2",
    "SMPLPose", "SMPLPoseConfig", "HRNetConfig", "load_hrnet_weights", "smplpose", "onnx",
]  # fmt: skip
