"""Weights files, for every model family, without running code from them.

* ``torch_load``: pickled checkpoints (``.ckpt``, ``.pth``) through ``torch.load(weights_only=True)``. Classes
  the pickle names outside torch's allow-list become inert stand-ins (they run nothing); dict-like config
  nodes (yacs ``CfgNode``, Lightning's ``AttributeDict``) come back as dicts, read by :func:`plain_config`.
* Our own format: ``<name>.safetensors`` (network tensors, the config in its metadata) + ``<name>.yaml``.
* ``load_network_state``: a strict load that reports every mismatch at once and refuses non-finite weights.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from hmr import config as config_io
from hmr.io.atomic import atomic_path

_STAND_IN = "__hmr_stand_in__"
# Dict subclasses a checkpoint may pickle (loaded as plain dicts); the first is the only config node read.
_DICT_LIKE = ("yacs.config.CfgNode", "pytorch_lightning.utilities.parsing.AttributeDict",
              "lightning_fabric.utilities.data.AttributeDict", "lightning.fabric.utilities.data.AttributeDict")  # fmt: skip


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the architecture."""


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


def checkpoint_state(ckpt: Any) -> dict | None:
    """The weights in a loaded checkpoint: Lightning's ``state_dict``, a training dict's ``model`` (SMPLer), or
    the dict itself (a raw state dict); None when it is no dict."""
    if not isinstance(ckpt, dict):
        return None
    return next((ckpt[k] for k in ("state_dict", "model") if isinstance(ckpt.get(k), dict)), ckpt)


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


# ------------------------------------------------------------------------------------ loading
def load_network_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Strict load of every network key; all missing, unexpected and mis-shaped keys are reported in one
    error, and a tensor holding NaN or infinite values is refused by name."""
    expected = model.state_dict(keep_vars=True)
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


def count_indices(state: dict, pattern: str) -> int:
    """How many distinct values the regex group 1 of ``pattern`` takes over the keys of ``state`` (e.g. the
    number of blocks, for architectures read from tensor names)."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.fullmatch(k))})


def _short(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


# ------------------------------------------------------------------------------- own format
def save_safetensors(state: dict[str, torch.Tensor], cfg: Any, path: str | os.PathLike) -> Path:
    """Write network weights to ``path`` (.safetensors) and the config dataclass ``cfg`` to the ``.yaml`` beside
    it (both atomically). The config and its family (``cfg.architecture``) are also kept in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: own checkpoints are .safetensors files")
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": "hmr", "architecture": cfg.architecture,
            "config": yaml.safe_dump(config_io.to_dict(cfg), sort_keys=False)}  # fmt: skip
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
        config_io.save_yaml(cfg, path.with_suffix(".yaml"))
    return path


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a ``.safetensors`` file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except Exception as err:  # any failure means a file we cannot use
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
