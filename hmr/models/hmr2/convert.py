"""HMR 2.0's reference checkpoints -> this toolkit's network state and config, without running their code.

* 4D-Humans Lightning ``.ckpt``: ``state_dict`` + ``hyper_parameters['cfg']`` (a yacs ``CfgNode``, read as
  plain dicts; yacs is never imported), or a ``model_config.yaml`` next to it or in the run folder above its
  ``checkpoints/`` folder (4D-Humans' layout).
* Project_HMR ``.ckpt``: no hyper-parameters; the architecture is read from the tensor shapes.
* ViTPose ``.pth`` backbone weights (``{'state_dict': ...}`` or raw; ``backbone.`` prefixes stripped,
  ``keypoint_head.*`` ignored) for training initialisation.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hmr.config import override
from hmr.models.backbones.vit import ViT, ViTConfig
from hmr.models.heads.smpl_transformer import SMPLTransformerDecoderHead
from hmr.models.hmr2.config import HMR2_MODELS, HMR2Config
from hmr.models.mean_params import MeanParams
from hmr.models.registry import unset
from hmr.models.weights import (
    CheckpointMismatchError,
    checkpoint_state,
    count_indices,
    load_network_state,
    plain_config,
    torch_load,
)

IGNORED_PREFIXES = ("smpl.", "discriminator.")  # licensed SMPL buffers, training-only discriminator
IGNORED_KEYS = ("initialized",)


def _is_ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def owns(state: dict) -> bool:
    """HMR 2.0's checkpoints hold a ``backbone.*`` ViT (and, when complete, a ``smpl_head.*``)."""
    return "backbone.pos_embed" in state or "pos_embed" in state


def convert(path: Path, ckpt: Any) -> tuple[dict[str, torch.Tensor], HMR2Config, dict[str, Any]]:
    """A 4D-Humans / Project_HMR Lightning checkpoint -> (network state, config, guessed settings).

    The 4D-Humans cfg comes from ``hyper_parameters['cfg']``, else from ``model_config.yaml`` beside the file
    or in the run folder above its ``checkpoints/`` folder (where 4D-Humans' training writes it); without one
    the architecture comes from the tensor shapes (:func:`infer_config`).
    """
    state = {k: v for k, v in checkpoint_state(ckpt).items() if not _is_ignored(k)}
    if not any(k.startswith("smpl_head.") for k in state):
        raise ValueError(
            f"{path}: has no smpl_head weights; backbone-only weights (ViTPose .pth) initialise training: "
            "create_model(...) then hmr.models.load_backbone_weights(model.backbone, path)"
        )
    cfg = None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if isinstance(hparams, dict) and isinstance(hparams.get("cfg"), dict):
        cfg = plain_config(hparams["cfg"])
    if cfg is None:
        for candidate in (path.parent / "model_config.yaml", path.parent.parent / "model_config.yaml"):
            if candidate.is_file():
                try:
                    cfg = yaml.safe_load(candidate.read_text())
                except yaml.YAMLError as err:
                    raise ValueError(f"{candidate}: not valid YAML ({err})") from None
                break
    return (state, *(config_from_4d_humans(cfg, state, str(path)) if cfg else infer_config(state, str(path))))


def network(cfg: HMR2Config) -> nn.Module:
    """The backbone and head alone, on the meta device."""
    head = cfg.head
    zeros = MeanParams(np.zeros(6 * (head.num_body_joints + 1)), np.zeros(head.num_betas), np.zeros(3))
    net = nn.Module()
    with torch.device("meta"):
        net.backbone = ViT(cfg.backbone)
        net.smpl_head = SMPLTransformerDecoderHead(head, zeros)
    net.config = cfg
    return net


def complete_overrides(cfg: HMR2Config, overrides: dict) -> dict:
    """The tensors fix the decoder's heads x dim_head: a given head count sets the head width."""
    head = overrides.get("head")
    if isinstance(head, dict) and "heads" in head and "dim_head" not in head:
        return {**overrides, "head": {**head, "dim_head": cfg.head.heads * cfg.head.dim_head // head["heads"]}}
    return overrides


def describe(cfg: HMR2Config) -> str:
    b, h = cfg.backbone, cfg.head
    return (f"{cfg.name} (ViT {b.embed_dim}/{b.depth}/{b.num_heads}, decoder {h.dim} x {h.depth} layers, "
            f"{h.heads}x{h.dim_head} heads, mlp {h.mlp_dim}, context {h.context_dim}, IEF {h.ief_iters})")  # fmt: skip


# ------------------------------------------------------------------------------ architecture
def infer_config(state: dict[str, torch.Tensor], source: str) -> tuple[HMR2Config, dict[str, int]]:
    """The architecture that the tensor shapes imply, and the settings that had to be guessed. Head counts
    cannot be seen in the shapes: they come from the registry entry with the same backbone width (ViTPose's
    conventions); for other widths they are guessed (``embed_dim // 64`` backbone heads, the registry's
    decoder heads) and listed as ``{"backbone.num_heads": n, "head.heads": n}``."""
    try:
        pos, proj = state["backbone.pos_embed"], state["backbone.patch_embed.proj.weight"]
        fc1 = state["backbone.blocks.0.mlp.fc1.weight"]
        net0 = state["smpl_head.transformer.transformer.layers.0.2.fn.net.0.weight"]
        to_kv = state["smpl_head.transformer.transformer.layers.0.1.fn.to_kv.weight"]
        to_q = state["smpl_head.transformer.transformer.layers.0.1.fn.to_q.weight"]
        decpose, decshape = state["smpl_head.decpose.weight"], state["smpl_head.decshape.weight"]
    except KeyError as err:
        raise CheckpointMismatchError(f"{source}: not an HMR 2.0 checkpoint (no {err} tensor)") from None
    embed = pos.shape[-1]
    base = next((e.config for e in HMR2_MODELS.values() if e.config.backbone.embed_dim == embed), None)
    guessed = {}
    heads = base.backbone.num_heads if base else max(1, embed // 64)
    if base is None:
        guessed["backbone.num_heads"] = heads
    backbone = ViTConfig(
        embed_dim=embed,
        depth=count_indices(state, r"backbone\.blocks\.(\d+)\.norm1\.weight"),
        num_heads=heads,
        patch_size=proj.shape[-1],
        mlp_ratio=fc1.shape[0] / embed,
        qkv_bias="backbone.blocks.0.attn.qkv.bias" in state,
        drop_path_rate=base.backbone.drop_path_rate if base else 0.0,
    )
    inner = to_q.shape[0]
    heads = (base or HMR2_MODELS["hmr2_vit_h"].config).head.heads
    if inner % heads:
        heads = 1
    if base is None or heads != base.head.heads:
        guessed["head.heads"] = heads
    head = {
        "dim": to_q.shape[1], "depth": count_indices(state, r"smpl_head\.transformer\.transformer\.layers\.(\d+)\.0\.norm\.weight"),
        "heads": heads, "dim_head": inner // heads, "mlp_dim": net0.shape[0], "context_dim": to_kv.shape[1],
        "num_betas": decshape.shape[0], "num_body_joints": decpose.shape[0] // 6 - 1,
    }  # fmt: skip
    cfg = override(HMR2Config(name="hmr2_custom"), backbone=backbone, head=head)
    if base is not None and dataclasses.replace(cfg, name=base.name) == base:
        cfg.name = base.name
    return cfg, guessed


def config_from_4d_humans(cfg: dict, state: dict[str, torch.Tensor], source: str) -> tuple[HMR2Config, dict]:
    """Map 4D-Humans' ``MODEL``/``EXTRA``/``SMPL`` config onto the shape-inferred architecture; returns it
    with the settings still guessed (see :func:`infer_config`)."""
    model = cfg.get("MODEL") or {}
    smpl_head = model.get("SMPL_HEAD") or {}
    checks = (
        ("MODEL.BACKBONE.TYPE", (model.get("BACKBONE") or {}).get("TYPE", "vit"), "vit"),
        ("MODEL.SMPL_HEAD.TYPE", smpl_head.get("TYPE", "transformer_decoder"), "transformer_decoder"),
        ("MODEL.SMPL_HEAD.TRANSFORMER_INPUT", smpl_head.get("TRANSFORMER_INPUT", "zero"), "zero"),
        ("MODEL.SMPL_HEAD.JOINT_REP", smpl_head.get("JOINT_REP", "6d"), "6d"),
        ("MODEL.SMPL_HEAD.TRANSFORMER_DECODER.norm",
         {k.lower(): v for k, v in (smpl_head.get("TRANSFORMER_DECODER") or {}).items()}.get("norm", "layer"), "layer"),
    )  # fmt: skip
    for key, value, supported in checks:
        if value != supported:
            raise ValueError(f"{source}: {key} = {value!r} is not supported (only {supported!r})")
    base, guessed = infer_config(state, source)
    decoder = {k.lower(): v for k, v in (smpl_head.get("TRANSFORMER_DECODER") or {}).items()}
    head = {k: decoder[k] for k in ("depth", "heads", "dim_head", "mlp_dim", "dropout", "emb_dropout", "context_dim")
            if decoder.get(k) is not None}  # fmt: skip
    # 4D-Humans hard-codes its ViT-H; configs of other backbones may name their head count.
    backbone = {k.lower(): v for k, v in (model.get("BACKBONE") or {}).items()}
    backbone = {"num_heads": int(backbone["num_heads"])} if backbone.get("num_heads") else {}
    head["ief_iters"] = smpl_head.get("IEF_ITERS", 1)
    head["init_decoder_xavier"] = bool(smpl_head.get("INIT_DECODER_XAVIER", False))
    if (cfg.get("SMPL") or {}).get("NUM_BODY_JOINTS") is not None:
        head["num_body_joints"] = cfg["SMPL"]["NUM_BODY_JOINTS"]
    top = {"image_size": model.get("IMAGE_SIZE"), "focal_length": (cfg.get("EXTRA") or {}).get("FOCAL_LENGTH"),
           "image_mean": model.get("IMAGE_MEAN"), "image_std": model.get("IMAGE_STD"),
           "bbox_shape": model.get("BBOX_SHAPE")}  # fmt: skip
    top = {k: (tuple(v) if isinstance(v, list) else v) for k, v in top.items() if v is not None}
    if "image_size" in top and top["image_size"] != base.image_size:
        raise ValueError(f"{source}: MODEL.IMAGE_SIZE {top['image_size']} is not supported (the ViT sees 256x192)")
    return override(base, head=head, backbone=backbone, **top), unset(guessed, head=head, backbone=backbone)


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """ViTPose ``.pth`` weights (``{'state_dict': ...}`` or raw, with or without ``backbone.``) into a ViT."""
    state = checkpoint_state(torch_load(path))
    if state is None:
        raise ValueError(f"{path}: expected a state_dict of backbone tensors")
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    load_network_state(backbone, state, str(path))
