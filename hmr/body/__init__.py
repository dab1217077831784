"""Body models: SMPL-structured linear blend skinning with keypoint sets."""

from hmr.body.default import DEFAULT_MODEL_NAME, load_body_model
from hmr.body.keypoints import KEYPOINT_SET_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS, KeypointSet
from hmr.body.model import (
    SMPL_ENV_VAR,
    BodyModel,
    BodyModelNotFoundError,
    BodyModelOutput,
    KeypointSetUnavailableError,
)

__all__ = [
    "KEYPOINT_SET_NAMES", "SMPL_JOINT_NAMES", "SMPL_PARENTS", "SMPL_ENV_VAR", "BodyModel",
    "BodyModelNotFoundError", "BodyModelOutput", "KeypointSet", "KeypointSetUnavailableError",
    "DEFAULT_MODEL_NAME", "load_body_model",
]  # fmt: skip
