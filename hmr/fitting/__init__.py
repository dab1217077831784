"""Optimisation-based mesh recovery: fit a body model to 2D/3D keypoints (SMPLify-style), no weights needed."""

from hmr.fitting.config import FitConfig, StageConfig
from hmr.fitting.priors import HINGES, JOINT_LIMITS, PosePrior
from hmr.fitting.reduced import ReducedBodyModel
from hmr.fitting.smplify import KEYPOINT_FORMATS, SequenceFitter, fit, keypoint_map

__all__ = [
    "FitConfig", "StageConfig", "KEYPOINT_FORMATS", "SequenceFitter", "fit", "keypoint_map", "HINGES",
    "JOINT_LIMITS", "PosePrior", "ReducedBodyModel",
]  # fmt: skip
