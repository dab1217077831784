"""Body models: SMPL-structured linear blend skinning with keypoint sets."""

from hmr.body.assets import DEFAULT_MODEL_NAME
from hmr.body.default import load_body_model
from hmr.body.errors import BodyModelNotFoundError, KeypointSetUnavailableError
from hmr.body.keypoints import KEYPOINT_SET_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS, KeypointSet
from hmr.body.model import SMPL_ENV_VAR, BodyModel, BodyModelOutput

__all__ = [
    "KEYPOINT_SET_NAMES", "SMPL_JOINT_NAMES", "SMPL_PARENTS", "SMPL_ENV_VAR", "BodyModel",
    "BodyModelNotFoundError", "BodyModelOutput", "KeypointSet", "KeypointSetUnavailableError",
    "DEFAULT_MODEL_NAME", "load_body_model",
]  # fmt: skip
