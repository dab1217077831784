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
    CheckpointMismatchError,
    config_from_4d_humans,
    infer_config,
    load_backbone_weights,
    load_network_state,
    read_own_checkpoint,
    read_reference_checkpoint,
    save_checkpoint,
)
from hmr.models.config import REGISTRY, HMR2Config, SMPLHeadConfig, ViTConfig, registry_config
from hmr.models.hmr2 import HMR2
from hmr.models.mean_params import MeanParams

MODEL_DIR_ENV_VAR = "HMR_MODEL_DIR"
# Where 4D-Humans' own downloader puts its checkpoint; reused when present.
_4DH_CACHE = Path("~/.cache/4DHumans/logs/train/multiruns/hmr2/0/checkpoints")

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
    return save_checkpoint(model, path)


def load_model(source: str | os.PathLike, body_model=None, device: str | torch.device = "cpu") -> HMR2:
    """An HMR 2.0 model with weights, in eval mode, on ``device``.

    ``source``: a 4D-Humans or Project_HMR ``.ckpt``, our ``.safetensors``, or a registry name (its weights
    are looked up in ``$HMR_MODEL_DIR``, ``~/.cache/hmr/models`` and, for ``hmr2_vit_h``, 4D-Humans' cache).
    """
    path = _resolve(source)
    if path.suffix == ".safetensors":
        state, cfg = read_own_checkpoint(path)
    else:
        state, ref_cfg = read_reference_checkpoint(path)
        if not any(k.startswith("smpl_head.") for k in state):
            raise ValueError(
                f"{path}: has no smpl_head weights; backbone-only weights (ViTPose .pth) initialise training: "
                "create_model(...) then hmr.models.load_backbone_weights(model.backbone, path)"
            )
        cfg = config_from_4d_humans(ref_cfg, state, str(path)) if ref_cfg else infer_config(state, str(path))
    model = HMR2(cfg, body_model if body_model is not None else _default_body_model(), empty=True)
    load_network_state(model, state, str(path), assign=True)
    return model.to(device).eval()


def _resolve(source: str | os.PathLike) -> Path:
    path = Path(source).expanduser()
    if path.is_file():
        return path
    name = str(source)
    if name not in REGISTRY:
        raise FileNotFoundError(f"{source}: no such checkpoint file and not a registered model ({', '.join(REGISTRY)})")
    entry = REGISTRY[name]
    dirs = [Path(d).expanduser() for d in (os.environ.get(MODEL_DIR_ENV_VAR), "~/.cache/hmr/models") if d]
    candidates = [d / f for d in dirs for f in entry.weights]
    if name == "hmr2_vit_h":
        candidates.append(_4DH_CACHE.expanduser() / entry.weights[-1])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = f"Get them from {entry.weights_source}" if entry.weights_source else "No weights are published for it"
    raise FileNotFoundError(
        f"no weights for {name}: looked for {', '.join(str(c) for c in candidates)}. {where}; put the file in "
        f"${MODEL_DIR_ENV_VAR} (or pass its path), or build an untrained model with "
        f"hmr.models.create_model({name!r})"
    )
