"""Reading and writing HMR 2.0 weights without running code from the files.

Formats read:

* 4D-Humans Lightning ``.ckpt``: ``state_dict`` + ``hyper_parameters['cfg']`` (a yacs ``CfgNode``; turned
  into plain dicts through an allow-list, yacs is never imported), or a ``model_config.yaml`` next to it
  or in the run folder above its ``checkpoints/`` folder (4D-Humans' layout).
* Project_HMR ``.ckpt``: no hyper-parameters; the architecture is read from the tensor shapes.
* ViTPose ``.pth`` backbone weights (``{'state_dict': ...}`` or raw; ``backbone.`` prefixes stripped,
  ``keypoint_head.*`` ignored) for training initialisation.
* Our own checkpoints: ``<name>.safetensors`` + ``<name>.yaml`` (the :class:`HMR2Config`).

Pickled checkpoints are read with ``torch.load(weights_only=True)``. Classes the pickle names outside
torch's allow-list become inert stand-ins (they run nothing); only yacs ``CfgNode`` stand-ins are read
as configuration, everything else they hold (e.g. Lightning callback state) is ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hmr import config as config_io
from hmr.io.atomic import atomic_path
from hmr.models.config import REGISTRY, HMR2Config, ViTConfig, override_config

MODEL_DIR_ENV_VAR = "HMR_MODEL_DIR"
# Where 4D-Humans' own downloader puts its checkpoint; reused when present.
_4DH_CACHE = Path("~/.cache/4DHumans/logs/train/multiruns/hmr2/0/checkpoints")
IGNORED_PREFIXES = ("smpl.", "discriminator.")  # licensed SMPL buffers, training-only discriminator
IGNORED_KEYS = ("initialized",)
_STAND_IN = "__hmr_stand_in__"
# Dict subclasses a checkpoint may pickle (loaded as plain dicts); the first is the only config node read.
_DICT_LIKE = ("yacs.config.CfgNode", "pytorch_lightning.utilities.parsing.AttributeDict",
              "lightning_fabric.utilities.data.AttributeDict", "lightning.fabric.utilities.data.AttributeDict")  # fmt: skip


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the architecture."""


class GuessedConfigWarning(UserWarning):
    """An architecture setting that neither the checkpoint's tensors nor its config hold was guessed."""


# ------------------------------------------------------------------------------------------ reading
def _dict_stand_in(name: str) -> type:
    def __new__(cls, *args, **kwargs):
        # SETITEMS/BUILD are only allowed on (Ordered)dicts by torch's weights-only unpickler.
        obj = OrderedDict()
        obj.__dict__[_STAND_IN] = name
        return obj

    return type("DictStandIn", (), {"__new__": __new__, "__module__": __name__})


class _Opaque:
    """Stand-in for any other class or function a checkpoint names: keeps its arguments, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _opaque_stand_in(name: str) -> type:
    return type("Opaque", (_Opaque,), {"__module__": __name__, "name": name})


def torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` (memory-mapped when possible), with inert stand-ins for foreign
    classes (module doc). Errors name the file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise ValueError(f"{path}: empty file, not a checkpoint")
    zipped = head == b"PK\x03\x04"
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if zipped else []
        stand_ins = [(_dict_stand_in(n) if n in _DICT_LIKE else _opaque_stand_in(n), n) for n in unsafe]
        with torch.serialization.safe_globals(stand_ins), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as err:  # any failure means a file we cannot use
        raise ValueError(f"{path}: cannot read this checkpoint safely: {_load_failure(err, zipped)}") from None


def _load_failure(err: Exception, zipped: bool) -> str:
    """Why torch.load failed, in our words: torch's own text suggests ``weights_only=False``, which would
    run whatever code the file holds."""
    text = str(err)
    if found := re.search(r"(?:GLOBAL|global:? GLOBAL) ([\w.]+)", text):
        return f"it references {found.group(1)}, which is refused (a pickle can run code)"
    if zipped:
        return "damaged or truncated zip archive"
    return "not a PyTorch checkpoint (or a damaged one)"


def plain_config(obj: Any) -> Any:
    """A yacs ``CfgNode`` stand-in (or dict) -> nested plain dicts/lists/scalars; other objects -> None."""
    if isinstance(obj, dict):
        name = getattr(obj, "__dict__", {}).get(_STAND_IN)
        if name is not None and name != _DICT_LIKE[0]:
            return None
        return {str(k): plain_config(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_config(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return None


def _is_ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def read_reference_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """A 4D-Humans / Project_HMR Lightning checkpoint -> (state_dict, 4D-Humans cfg as plain dict or None).

    The cfg comes from ``hyper_parameters['cfg']``, else from ``model_config.yaml`` beside the file or in the
    run folder above its ``checkpoints/`` folder (where 4D-Humans' training writes it).
    """
    path = Path(path).expanduser()
    ckpt = torch_load(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no state_dict of tensors in this file; is it an HMR 2.0 checkpoint?")
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
    return dict(state), cfg


# ------------------------------------------------------------------------------ architecture
def _count(state: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.fullmatch(k))})


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
    base = next((e.config for e in REGISTRY.values() if e.config.backbone.embed_dim == embed), None)
    guessed = {}
    heads = base.backbone.num_heads if base else max(1, embed // 64)
    if base is None:
        guessed["backbone.num_heads"] = heads
    backbone = ViTConfig(
        embed_dim=embed,
        depth=_count(state, r"backbone\.blocks\.(\d+)\.norm1\.weight"),
        num_heads=heads,
        patch_size=proj.shape[-1],
        mlp_ratio=fc1.shape[0] / embed,
        qkv_bias="backbone.blocks.0.attn.qkv.bias" in state,
        drop_path_rate=base.backbone.drop_path_rate if base else 0.0,
    )
    inner = to_q.shape[0]
    heads = (base or REGISTRY["hmr2_vit_h"].config).head.heads
    if inner % heads:
        heads = 1
    if base is None or heads != base.head.heads:
        guessed["head.heads"] = heads
    head = {
        "dim": to_q.shape[1], "depth": _count(state, r"smpl_head\.transformer\.transformer\.layers\.(\d+)\.0\.norm\.weight"),
        "heads": heads, "dim_head": inner // heads, "mlp_dim": net0.shape[0], "context_dim": to_kv.shape[1],
        "num_betas": decshape.shape[0], "num_body_joints": decpose.shape[0] // 6 - 1,
    }  # fmt: skip
    cfg = override_config(HMR2Config(name="hmr2_custom"), backbone=backbone, head=head)
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
           "image_mean": model.get("IMAGE_MEAN"), "image_std": model.get("IMAGE_STD")}  # fmt: skip
    top = {k: (tuple(v) if isinstance(v, list) else v) for k, v in top.items() if v is not None}
    if "image_size" in top and top["image_size"] != base.image_size:
        raise ValueError(f"{source}: MODEL.IMAGE_SIZE {top['image_size']} is not supported (the ViT sees 256x192)")
    return override_config(base, head=head, backbone=backbone, **top), _unset(guessed, head=head, backbone=backbone)


def _unset(guessed: dict[str, int], **given) -> dict[str, int]:
    """``guessed`` without the settings that ``given`` (config overrides) fixes."""
    fixed = set()
    for part, value in given.items():
        fields = (
            value if isinstance(value, dict) else (dataclasses.asdict(value) if dataclasses.is_dataclass(value) else {})
        )
        fixed |= {f"{part}.{k}" for k in fields}
    return {k: v for k, v in guessed.items() if k not in fixed}


# ------------------------------------------------------------------------------------ loading
def load_network_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Strict load of every network key (``smpl.*``, ``discriminator.*``, ``initialized`` are ignored);
    all missing, unexpected and mis-shaped keys are reported in one error."""
    expected = model.state_dict(keep_vars=True)
    state = {k: v for k, v in state.items() if not _is_ignored(k)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        parts = [f"{label} ({len(keys)}): {_short(keys)}" for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if keys]  # fmt: skip
        raise CheckpointMismatchError(f"{source} does not fit {name}: " + "; ".join(parts))
    check_finite(state, source)
    # Keep the model's dtypes (fp16 checkpoints load into float32 models).
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=assign)


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming the first tensor that holds NaN or infinite values."""
    for key, value in state.items():
        if value.is_floating_point() and value.device.type != "meta" and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{source}: tensor {key} holds {bad} NaN or infinite values of {value.numel()} "
                             "(a corrupt checkpoint or a diverged training run)")  # fmt: skip


def _short(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """ViTPose ``.pth`` weights (``{'state_dict': ...}`` or raw, with or without ``backbone.``) into a ViT."""
    ckpt = torch_load(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict of backbone tensors")
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    load_network_state(backbone, state, str(path))


# ------------------------------------------------------------------------------- own format
def save_checkpoint(state: dict[str, torch.Tensor], cfg: HMR2Config, path: str | os.PathLike) -> Path:
    """Write network weights to ``path`` (.safetensors) and ``cfg`` to the ``.yaml`` beside it (both
    atomically). The config is also kept in the safetensors metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: own checkpoints are .safetensors files")
    state = {k: v.detach().cpu().contiguous() for k, v in state.items() if not _is_ignored(k)}
    meta = {"format": "hmr", "architecture": cfg.architecture,
            "config": yaml.safe_dump(config_io.to_dict(cfg), sort_keys=False)}  # fmt: skip
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
        config_io.save_yaml(cfg, path.with_suffix(".yaml"))
    return path


def read_own_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], HMR2Config]:
    """(state_dict, config) of a checkpoint written by :func:`save_checkpoint`; the ``.yaml`` beside it wins
    over the copy in the metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as err:  # any failure means a file we cannot use
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    yaml_path = path.with_suffix(".yaml")
    if yaml_path.is_file():
        cfg = config_io.load_yaml(HMR2Config, yaml_path)
    elif "config" in meta:
        cfg = config_io.from_dict(HMR2Config, yaml.safe_load(meta["config"]), f" {path} metadata")
    else:
        raise ValueError(f"{path}: no model config (expected {yaml_path.name} beside it)")
    return state, cfg


def read_checkpoint(path: Path, **overrides) -> tuple[dict[str, torch.Tensor], HMR2Config]:
    """(state_dict, config) of any supported full-model checkpoint (module doc). ``overrides`` replace config
    fields as in ``create_model`` (``backbone={"num_heads": 4}``); a setting that neither the file nor the
    overrides give is guessed with a :class:`GuessedConfigWarning`."""
    if path.suffix == ".safetensors":
        state, cfg = read_own_checkpoint(path)
        guessed = {}
    else:
        state, ref_cfg = read_reference_checkpoint(path)
        if not any(k.startswith("smpl_head.") for k in state):
            raise ValueError(
                f"{path}: has no smpl_head weights; backbone-only weights (ViTPose .pth) initialise training: "
                "create_model(...) then hmr.models.load_backbone_weights(model.backbone, path)"
            )
        cfg, guessed = config_from_4d_humans(ref_cfg, state, str(path)) if ref_cfg else infer_config(state, str(path))
    head = overrides.get("head")
    if isinstance(head, dict) and "heads" in head and "dim_head" not in head:
        # The tensors fix heads x dim_head; a given head count sets the head width.
        overrides["head"] = {**head, "dim_head": cfg.head.heads * cfg.head.dim_head // head["heads"]}
    if overrides:
        cfg = override_config(cfg, **overrides)
        guessed = _unset(guessed, **overrides)
    if guessed:
        settings = ", ".join(f"{k}={v}" for k, v in guessed.items())
        example = ", ".join(f"{k.split('.')[0]}={{{k.split('.')[1]!r}: N}}" for k in guessed)
        warnings.warn(f"{path}: the checkpoint does not say its attention head counts; guessed {settings}. If it "
                      f"was trained otherwise its outputs are wrong: pass load_model(path, {example})",
                      GuessedConfigWarning, stacklevel=3)  # fmt: skip
    return state, cfg


def check_network_state(state: dict[str, torch.Tensor], cfg: HMR2Config, source: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` fits ``cfg`` (no body model needed)."""
    from hmr.models.mean_params import MeanParams
    from hmr.models.smpl_head import SMPLTransformerDecoderHead
    from hmr.models.vit import ViT

    head = cfg.head
    zeros = MeanParams(np.zeros(6 * (head.num_body_joints + 1)), np.zeros(head.num_betas), np.zeros(3))
    net = nn.Module()
    with torch.device("meta"):
        net.backbone = ViT(cfg.backbone)
        net.smpl_head = SMPLTransformerDecoderHead(head, zeros)
    net.config = cfg
    load_network_state(net, state, source, assign=True)


def resolve_weights(source: str | os.PathLike) -> Path:
    """A checkpoint path, or the weights file of a registry name (``$HMR_MODEL_DIR``,
    ``~/.cache/hmr/models``, and 4D-Humans' cache for ``hmr2_vit_h``) with an error naming what is missing."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the checkpoint file inside it")
    name = str(source)
    if name not in REGISTRY:
        raise FileNotFoundError(f"{source}: no such checkpoint file and not a registered model ({', '.join(REGISTRY)})")
    entry = REGISTRY[name]
    candidates = weight_candidates(name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = f"Get them from {entry.weights_source}" if entry.weights_source else "No weights are published for it"
    raise FileNotFoundError(
        f"no weights for {name}: looked for {', '.join(str(c) for c in candidates)}. {where}; put the file in "
        f"${MODEL_DIR_ENV_VAR} (or pass its path), or build an untrained model with "
        f"hmr.models.create_model({name!r})"
    )


def weight_candidates(name: str) -> list[Path]:
    entry = REGISTRY[name]
    dirs = [Path(d).expanduser() for d in (os.environ.get(MODEL_DIR_ENV_VAR), "~/.cache/hmr/models") if d]
    candidates = [d / f for d in dirs for f in entry.weights]
    if name == "hmr2_vit_h":
        candidates.append(_4DH_CACHE.expanduser() / entry.weights[-1])
    return candidates
