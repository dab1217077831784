"""HMR 2.0 model family: ViT backbones + SMPL transformer-decoder head (docs/models.md).

``create_model(name, **overrides)`` builds a registered architecture with random weights (training);
``load_model(checkpoint_or_name)`` builds one from weights (4D-Humans / Project_HMR ``.ckpt`` or our own
``.safetensors``); ``save_model`` writes our format.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hmr.models.checkpoint import (
    MODEL_DIR_ENV_VAR,
    CheckpointMismatchError,
    load_backbone_weights,
    load_network_state,
    read_checkpoint,
    resolve_weights,
    save_checkpoint,
)
from hmr.models.config import REGISTRY, HMR2Config, SMPLHeadConfig, ViTConfig, registry_config
from hmr.models.hmr2 import HMR2
from hmr.models.mean_params import MeanParams

__all__ = [
    "REGISTRY", "HMR2", "HMR2Config", "SMPLHeadConfig", "ViTConfig", "MeanParams", "CheckpointMismatchError",
    "MODEL_DIR_ENV_VAR", "create_model", "load_model", "save_model", "load_backbone_weights", "registry_config",
]  # fmt: skip


def _default_body_model():
    try:
        from hmr.body import load_body_model
    except ImportError:
        raise RuntimeError(
            "no body model given and this install has no default one; pass body_model=BodyModel.from_file(...)"
        ) from None
    return load_body_model()


def create_model(
    name: str,
    body_model=None,
    mean_params: MeanParams | str | os.PathLike | None = None,
    **overrides,
) -> HMR2:
    """A registered architecture with random weights. ``overrides`` replace config fields
    (``head={"depth": 2}``); ``mean_params`` is a :class:`MeanParams` or a ``smpl_mean_params.npz`` path
    (default: derived from the body model); ``body_model`` defaults to ``hmr.body.load_body_model()``."""
    cfg = registry_config(name, **overrides)
    if mean_params is not None and not isinstance(mean_params, MeanParams):
        mean_params = MeanParams.from_npz(mean_params)
    return HMR2(cfg, body_model if body_model is not None else _default_body_model(), mean_params)


def save_model(model: HMR2, path: str | os.PathLike) -> Path:
    """Write ``model`` as ``path`` (.safetensors, network weights only) + ``path.with_suffix('.yaml')``."""
    return save_checkpoint(model.state_dict(), model.config, path)


def load_model(source: str | os.PathLike, body_model=None, device: str | torch.device = "cpu", **overrides) -> HMR2:
    """An HMR 2.0 model with weights, in eval mode, on ``device``.

    ``source``: a 4D-Humans or Project_HMR ``.ckpt``, our ``.safetensors``, or a registry name (its weights
    are looked up in ``$HMR_MODEL_DIR``, ``~/.cache/hmr/models`` and, for ``hmr2_vit_h``, 4D-Humans' cache).
    ``overrides`` replace config fields as in :func:`create_model`, e.g. ``backbone={"num_heads": 4}`` for a
    checkpoint whose head count is neither in its config nor implied by a registered width (it is then
    guessed, with a ``GuessedConfigWarning``).
    """
    path = resolve_weights(source)
    state, cfg = read_checkpoint(path, **overrides)
    model = HMR2(cfg, body_model if body_model is not None else _default_body_model(), empty=True)
    load_network_state(model, state, str(path), assign=True)
    return model.to(device).eval()
