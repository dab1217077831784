"""SMPLer's checkpoints -> this toolkit's network state and config, without running their code.

* SMPLer and its stage-1 baseline save ``{'model', 'optimizer', 'epoch', 'global_iter'}`` while training and
  release raw state dicts (``pretrained/SMPLer_h36m.pt`` ...); both hold SMPLer's key names, which are ours.
* ``smpl_handler.*`` (the licensed SMPL model and the H36M / 3DPW joint regressor) is dropped: the model uses
  the body model it is given.
* The architecture is read from the tensor shapes, attention heads included (the relative-position table
  is (1, heads, 2r + 1, 2r + 1)), so nothing is guessed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmr.config import override
from hmr.models.backbones.hrnet import HRNetConfig
from hmr.models.mean_params import MeanParams
from hmr.models.smplpose.config import SMPLPOSE_MODELS, SMPLPoseConfig
from hmr.models.smplpose.model import SMPLerNetwork
from hmr.models.weights import (
    CheckpointMismatchError,
    checkpoint_state,
    count_indices,
    load_network_state,
    read_safetensors,
    torch_load,
)

IGNORED_PREFIXES = ("smpl_handler.",)
_UNIT = "transformer.0.trans_block.trans_units.0."


def owns(state: dict) -> bool:
    """An HRNet ``backbone.*`` with SMPLer's IEF regressor ``SMPL_predictor.*`` (HMR 2.0 has a ViT)."""
    return "SMPL_predictor.decpose.weight" in state and "backbone.transition1.0.0.weight" in state


def convert(path: Path, ckpt: Any) -> tuple[dict[str, torch.Tensor], SMPLPoseConfig, dict[str, Any]]:
    """A SMPLer / baseline checkpoint -> (network state, config, guessed settings: always none)."""
    state = checkpoint_state(ckpt)
    if state is None:
        raise ValueError(f"{path}: no SMPLer state dict in this file")
    state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    return state, infer_config(state, str(path)), {}


def infer_config(state: dict[str, torch.Tensor], source: str) -> SMPLPoseConfig:
    """The architecture the tensor shapes imply, named after the registry entry it equals: ``smpler_w32`` /
    ``smpler_w48`` for SMPLer's own networks (the additions off), ``smplpose_custom`` for other sizes."""
    try:
        width = state["backbone.transition1.0.0.weight"].shape[0]
        fc1, decpose = state["SMPL_predictor.fc1.weight"], state["SMPL_predictor.decpose.weight"]
        num_betas = state["SMPL_predictor.decshape.weight"].shape[0]
    except KeyError as err:
        raise CheckpointMismatchError(f"{source}: not a SMPLer checkpoint (no {err} tensor)") from None
    backbone = HRNetConfig(
        width=width,
        stem_blocks=count_indices(state, r"backbone\.layer1\.(\d+)\.conv1\.weight"),
        num_modules=tuple(
            count_indices(state, rf"backbone\.stage{s}\.(\d+)\.branches\.0\.0\.conv1\.weight") for s in (2, 3, 4)
        ),
        num_blocks=count_indices(state, r"backbone\.stage2\.0\.branches\.0\.(\d+)\.conv1\.weight"),
    )
    fields: dict[str, Any] = {
        "backbone": backbone,
        "regressor": {"hidden": fc1.shape[0], "num_joints": decpose.shape[0] // 6, "num_betas": num_betas},
        "model_type": "smpler" if f"{_UNIT}local_unit.trans_layer_list.0.transformer_layer.mlp.1.weight" in state
        else "baseline",
        "graph_attention": f"{_UNIT}self_trans_layer.graph_bias.hop_table" in state,
        "language_prior": "joint_text_prior.embeddings" in state,
    }  # fmt: skip
    if fields["model_type"] == "smpler":
        table = state[f"{_UNIT}local_unit.relative_position_encoding_table.0"]
        mlp = state[f"{_UNIT}self_trans_layer.self_trans_layer.mlp.1.weight"]
        fields["transformer"] = {
            "dim": mlp.shape[1], "heads": table.shape[1], "mlp_dim": mlp.shape[0],
            "num_blocks": count_indices(state, r"transformer\.(\d+)\.theta_predictor\.weight"),
            "units_per_block": count_indices(state, r"transformer\.0\.trans_block\.trans_units\.(\d+)\.local_unit\..*"),
            "sampling_radius": (table.shape[-1] - 1) // 2,
        }  # fmt: skip
        if fields["graph_attention"]:
            fields["transformer"]["graph_max_hops"] = (
                state[f"{_UNIT}self_trans_layer.graph_bias.hop_table"].shape[1] - 2
            )
            fields["transformer"]["graph_embed_dim"] = state[f"{_UNIT}self_trans_layer.graph_bias.node_source"].shape[1]
    cfg = override(SMPLPoseConfig(name="smplpose_custom"), **fields)
    for name, entry in SMPLPOSE_MODELS.items():
        base = dataclasses.replace(entry.config, name=cfg.name)
        if cfg == base:
            cfg.name = name
        elif cfg == dataclasses.replace(base, graph_attention=False, language_prior=False):
            cfg.name = name.replace("smplpose", "smpler")
    return cfg


def network(cfg: SMPLPoseConfig) -> SMPLerNetwork:
    """The network alone, on the meta device."""
    r = cfg.regressor
    zeros = MeanParams(np.zeros(6 * r.num_joints), np.zeros(r.num_betas), np.zeros(3))
    with torch.device("meta"):
        return SMPLerNetwork(cfg, zeros)


def describe(cfg: SMPLPoseConfig) -> str:
    b, r, t = cfg.backbone, cfg.regressor, cfg.transformer
    hrnet = f"HRNet-W{b.width} ({'/'.join(map(str, b.num_modules))} modules x {b.num_blocks} blocks)"
    ief = f"IEF {r.hidden} x {r.iterations}"
    if cfg.model_type == "baseline":
        return f"{cfg.name} ({hrnet}, {ief}, no transformer)"
    extra = [n for n, on in (("graph attention", cfg.graph_attention), ("language prior", cfg.language_prior)) if on]
    return (f"{cfg.name} ({hrnet}, {ief}, SMPLer {t.num_blocks} blocks x {t.units_per_block} units, {t.dim} wide, "
            f"{t.heads} heads, {2 * t.sampling_radius}x{2 * t.sampling_radius} joint windows; "
            f"{' + '.join(extra) or 'no additions'})")  # fmt: skip


def load_pretrained(model: torch.nn.Module, path: str | os.PathLike) -> list[str]:
    """Initialise ``model`` from the checkpoint of a smaller SMPL-Pose network, as SMPLer's stage 2 starts from
    stage 1: a baseline into an SMPLer model, SMPLer into a model with the additions (their gates stay
    zero, so it starts out computing SMPLer). Every tensor of the file must fit a key of ``model``; returns
    the model's keys that keep their initialisation."""
    path = Path(path)
    state = read_safetensors(path)[0] if path.suffix == ".safetensors" else convert(path, torch_load(path))[0]
    own = model.state_dict()
    kept = [k for k in own if k not in state]
    load_network_state(model, {**state, **{k: own[k] for k in kept}}, str(path))
    return kept
