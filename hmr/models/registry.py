"""One registry for every model family (as timm's ``create_model``).

A family (:class:`ModelFamily`) registers its config dataclass, how to build it, how to read its reference
checkpoints, and its named standard configurations (:class:`ModelEntry`). ``create_model``, ``load_model``,
``list_models``, ``hmr model ...`` and ``hmr demo --checkpoint`` then work for it with no edits elsewhere.

Every family's model is a predictor with the same contract:

* ``model.config``: a dataclass with ``name``, ``architecture`` (the family name), ``image_size`` (side of the
  square crop, pixels) and ``bbox_shape`` ((w, h) aspect that person boxes are padded to before cropping);
* ``model.normalize(pixels)``: (B, 3, S, S) RGB crops, 0..255 -> the network's input;
* ``model(crops, box_center, box_size, image_size, focal_length)`` -> :class:`hmr.outputs.MeshOutput`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from hmr import config as config_io
from hmr.models.mean_params import MeanParams
from hmr.models.weights import checkpoint_state, load_network_state, read_safetensors, save_safetensors, torch_load

MODEL_DIR_ENV_VAR = "HMR_MODEL_DIR"


class GuessedConfigWarning(UserWarning):
    """An architecture setting that neither the checkpoint's tensors nor its config hold was guessed."""


@dataclass(frozen=True)
class ModelFamily:
    """What a family gives the registry.

    build(config, body_model, mean_params, empty) -> model; ``empty=True`` puts the network on the meta
    device, to be filled by ``load_state_dict(..., assign=True)``.
    network(config) -> the trainable network alone on the meta device (checks a checkpoint without a body model).
    owns(state) -> whether a reference checkpoint's ``state_dict`` belongs to this family.
    convert(path, checkpoint) -> (network state, config, guessed) for a reference checkpoint: its network
    tensors under this toolkit's names, the config they imply, and the settings that had to be guessed
    ({"backbone.num_heads": 1}); raises ValueError when the file is not usable.
    describe(config) -> one line for ``hmr model info``.
    complete_overrides(config, overrides) -> overrides with the fields that the given ones imply for a loaded
    checkpoint (e.g. a head count fixes the head width when their product is in the tensors).
    """

    name: str
    config_class: type
    build: Callable[..., nn.Module]
    network: Callable[[Any], nn.Module]
    owns: Callable[[dict], bool]
    convert: Callable[[Path, Any], tuple[dict[str, torch.Tensor], Any, dict[str, Any]]]
    describe: Callable[[Any], str]
    complete_overrides: Callable[[Any, dict], dict] = lambda config, overrides: overrides


@dataclass(frozen=True)
class ModelEntry:
    """A named standard configuration and where its published weights come from (if any)."""

    family: str
    config: Any
    description: str
    weights: tuple[str, ...] = ()  # file names to look for, best first
    weights_source: str = ""  # empty: no published weights
    search_dirs: tuple[str, ...] = ()  # where the reference project's own downloader puts them


FAMILIES: dict[str, ModelFamily] = {}
MODELS: dict[str, ModelEntry] = {}
# suffix -> load(path, body_model, device, overrides) for network files that are not torch checkpoints (.onnx)
FILE_LOADERS: dict[str, Callable[..., nn.Module]] = {}


def register_family(family: ModelFamily, models: dict[str, ModelEntry]) -> None:
    """Add a family and its named configurations (names are unique across families)."""
    taken = sorted(set(models) & set(MODELS))
    if family.name in FAMILIES or taken:
        raise ValueError(f"already registered: family {family.name!r} or models {taken}")
    FAMILIES[family.name] = family
    MODELS.update(models)


def register_file_loader(suffix: str, load: Callable[..., nn.Module]) -> None:
    """Let :func:`load_model` open files ending in ``suffix`` with ``load(path, body_model, device, overrides)``."""
    FILE_LOADERS[suffix] = load


def list_models() -> list[str]:
    return list(MODELS)


def _family(architecture: str) -> ModelFamily:
    if architecture not in FAMILIES:
        raise ValueError(f"unknown model family {architecture!r}; registered: {', '.join(FAMILIES)}")
    return FAMILIES[architecture]


def model_config(name: str, **overrides) -> Any:
    """A fresh copy of a registered config; ``overrides`` replace fields, and a dict given for a nested
    config replaces only the fields it names (``head={"depth": 2}``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    return config_io.override(MODELS[name].config, **overrides)


def _default_body_model():
    from hmr.body import load_body_model

    return load_body_model()


def create_model(name: str, body_model=None, mean_params: MeanParams | str | os.PathLike | None = None, **overrides):
    """A registered architecture with random weights. ``overrides`` replace config fields
    (``head={"depth": 2}``); ``mean_params`` is a :class:`MeanParams` or a ``smpl_mean_params.npz`` path
    (default: derived from the body model); ``body_model`` defaults to ``hmr.body.load_body_model()``."""
    cfg = model_config(name, **overrides)
    if mean_params is not None and not isinstance(mean_params, MeanParams):
        mean_params = MeanParams.from_npz(mean_params)
    body_model = body_model if body_model is not None else _default_body_model()
    return _family(cfg.architecture).build(cfg, body_model, mean_params, False)


def save_model(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as ``path`` (.safetensors, network weights only) + ``path.with_suffix('.yaml')``."""
    return save_safetensors(model.state_dict(), model.config, path)


def load_model(source: str | os.PathLike, body_model=None, device: str | torch.device = "cpu", **overrides):
    """A model with weights, in eval mode, on ``device``.

    ``source``: a reference checkpoint of any registered family (4D-Humans or Project_HMR ``.ckpt``, ...),
    our ``.safetensors``, an ``.onnx`` export (run by onnxruntime: :class:`hmr.models.onnx.OnnxNetwork`), or a
    registry name (its weights are looked up in ``$HMR_MODEL_DIR``, ``~/.cache/hmr/models`` and the reference
    project's own download folder). ``overrides`` replace config fields as in :func:`create_model`, e.g.
    ``backbone={"num_heads": 4}`` for a checkpoint whose head count is neither in its config nor implied by a
    registered width (it is then guessed, with a :class:`GuessedConfigWarning`).
    """
    path = resolve_weights(source)
    if path.suffix.lower() in FILE_LOADERS:
        body_model = body_model if body_model is not None else _default_body_model()
        return FILE_LOADERS[path.suffix.lower()](path, body_model, device, overrides)
    state, cfg = read_checkpoint(path, **overrides)
    body_model = body_model if body_model is not None else _default_body_model()
    model = _family(cfg.architecture).build(cfg, body_model, None, True)
    load_network_state(model, state, str(path), assign=True)
    return model.to(device).eval()


def read_checkpoint(path: Path, **overrides) -> tuple[dict[str, torch.Tensor], Any]:
    """(network state, config) of any supported checkpoint. ``overrides`` replace config fields; a setting
    that neither the file nor the overrides give is guessed with a :class:`GuessedConfigWarning`."""
    if path.suffix == ".safetensors":
        state, meta = read_safetensors(path)
        cfg, guessed = _own_config(path, meta), {}
    else:
        ckpt = torch_load(path)
        raw = checkpoint_state(ckpt)
        if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise ValueError(f"{path}: no state_dict of tensors in this file; is it a model checkpoint?")
        family = next((f for f in FAMILIES.values() if f.owns(raw)), None)
        if family is None:
            raise ValueError(f"{path}: its tensors belong to no registered model family ({', '.join(FAMILIES)})")
        state, cfg, guessed = family.convert(path, ckpt)
    if overrides:
        overrides = _family(cfg.architecture).complete_overrides(cfg, overrides)
        cfg = config_io.override(cfg, **overrides)
        guessed = unset(guessed, **overrides)
    if guessed:
        settings = ", ".join(f"{k}={v}" for k, v in guessed.items())
        example = ", ".join(f"{k.split('.')[0]}={{{k.split('.')[1]!r}: N}}" for k in guessed)
        warnings.warn(f"{path}: the checkpoint does not say its attention head counts; guessed {settings}. If it "
                      f"was trained otherwise its outputs are wrong: pass load_model(path, {example})",
                      GuessedConfigWarning, stacklevel=3)  # fmt: skip
    return state, cfg


def unset(guessed: dict[str, Any], **given) -> dict[str, Any]:
    """``guessed`` without the settings that ``given`` (config overrides) fixes."""
    fixed = set()
    for part, value in given.items():
        fields = (
            value if isinstance(value, dict) else (dataclasses.asdict(value) if dataclasses.is_dataclass(value) else {})
        )
        fixed |= {f"{part}.{k}" for k in fields}
    return {k: v for k, v in guessed.items() if k not in fixed}


def _own_config(path: Path, meta: dict[str, str]) -> Any:
    family = _family(meta.get("architecture", "hmr2"))  # files written before the registry carry "hmr2"
    yaml_path = path.with_suffix(".yaml")
    if yaml_path.is_file():
        return config_io.load_yaml(family.config_class, yaml_path)
    if "config" in meta:
        return config_io.from_dict(family.config_class, yaml.safe_load(meta["config"]), f" {path} metadata")
    raise ValueError(f"{path}: no model config (expected {yaml_path.name} beside it)")


def check_network_state(state: dict[str, torch.Tensor], cfg: Any, source: str) -> None:
    """Raise :class:`~hmr.models.weights.CheckpointMismatchError` unless ``state`` fits ``cfg`` (no body model
    needed)."""
    load_network_state(_family(cfg.architecture).network(cfg), state, source, assign=True)


def resolve_weights(source: str | os.PathLike) -> Path:
    """A checkpoint path, or the weights file of a registry name (``$HMR_MODEL_DIR``, ``~/.cache/hmr/models``
    and the entry's own search folders) with an error naming what is missing."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the checkpoint file inside it")
    name = str(source)
    if name not in MODELS:
        raise FileNotFoundError(f"{source}: no such checkpoint file and not a registered model ({', '.join(MODELS)})")
    entry = MODELS[name]
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
    entry = MODELS[name]
    dirs = [Path(d).expanduser() for d in (os.environ.get(MODEL_DIR_ENV_VAR), "~/.cache/hmr/models") if d]
    return [d / f for d in dirs for f in entry.weights] + [
        Path(d).expanduser() / entry.weights[-1] for d in entry.search_dirs
    ]
