"""The body model every part of the toolkit uses: SMPL when the user gives one, else the bundled default."""

from __future__ import annotations

import os

import torch

from hmr.body.assets import DEFAULT_MODEL_NAME, default_model_path
from hmr.body.model import SMPL_ENV_VAR, BodyModel, load_vertex_regressor

__all__ = ["DEFAULT_MODEL_NAME", "default_model_path", "load_body_model"]

def load_body_model(
    path: str | os.PathLike | None = None,
    gender: str = "neutral",
    joint_regressor_extra: str | os.PathLike | None = None,
    h36m_regressor: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
) -> BodyModel:
    """SMPL from ``path`` or ``$HMR_SMPL_PATH`` when either is given, else the bundled default model
    (``hmr-anny-v1``, which defines all five keypoint sets itself). Outputs record ``model.name``."""
    if path is not None or os.environ.get(SMPL_ENV_VAR):
        return BodyModel.from_file(path, gender, joint_regressor_extra, h36m_regressor, dtype)
    model = BodyModel.default(dtype)
    for set_name, reg_path in (("extra19", joint_regressor_extra), ("h36m17", h36m_regressor)):
        if reg_path is None:
            continue
        try:
            model.add_keypoint_set(set_name, load_vertex_regressor(reg_path, set_name, model))
        except ValueError as err:
            raise ValueError(
                f"{err}. No SMPL model was given, so the default body model {model.name!r} is used and it "
                f"defines {set_name} itself: drop the regressor, or give SMPL (--smpl or ${SMPL_ENV_VAR})"
            ) from None
    return model
