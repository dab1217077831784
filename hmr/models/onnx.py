"""ONNX export of any registered network, and :class:`OnnxNetwork`, which runs such a file with onnxruntime
as a predictor like the others (docs/models.md, "ONNX export").

The graph is the family's ``regress``: normalised ``crops`` (B, 3, S, S) -> ``rotmats`` (B, J, 3, 3), ``betas``
(B, S_betas), ``pred_cam`` (B, 3). Posing the body model stays outside it (in torch, as for every network).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
import yaml
from torch import nn

from hmr import config as config_io
from hmr.body import BodyModel
from hmr.io.onnx import export_onnx, max_differences, open_session, read_metadata
from hmr.models.heads.smpl_transformer import HeadOutput
from hmr.models.predictor import MeshPredictor
from hmr.models.registry import FAMILIES, register_file_loader
from hmr.version import __version__

KIND = "hmr-network"
INPUTS = ["crops"]
OUTPUTS = ["rotmats", "betas", "pred_cam"]


class _Regress(nn.Module):
    """The exported function: the family's ``regress`` with its outputs as a tuple."""

    def __init__(self, model: MeshPredictor):
        super().__init__()
        self.model = model

    def forward(self, crops: torch.Tensor):
        est = self.model.regress(crops)
        return est.rotmats, est.betas, est.pred_cam


def export_network(model: MeshPredictor, path: str | os.PathLike, verify: bool = True) -> tuple[Path, dict[str, float]]:
    """Write ``model``'s network (float32, CPU) to ``path`` (.onnx); returns the path and, with ``verify``, the
    largest |onnxruntime - torch| per output on two random crops (0 for none)."""
    if isinstance(model, OnnxNetwork):
        raise ValueError(f"{model.path}: is already an ONNX network")
    first = next(model.parameters())
    if first.device.type != "cpu" or first.dtype != torch.float32:
        model = copy.deepcopy(model).to("cpu", torch.float32)  # the caller's model stays where it is
    training = model.training
    try:
        return _export(model.eval(), path, verify)
    finally:
        model.train(training)


def _export(model: MeshPredictor, path: str | os.PathLike, verify: bool) -> tuple[Path, dict[str, float]]:
    cfg = model.config
    s = cfg.image_size
    crops = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))  # 2: a batch of 1 would specialise
    with torch.no_grad():
        expected = _Regress(model)(crops)  # run once before tracing (fills the body model's caches eagerly)
    body = model.body_model
    meta = {
        "hmr.version": __version__, "hmr.architecture": cfg.architecture, "hmr.name": cfg.name,
        "hmr.config": yaml.safe_dump(config_io.to_dict(cfg), sort_keys=False),
        "hmr.image_size": str(s), "hmr.focal_length": repr(float(cfg.focal_length)),
        "hmr.pixel_mean": json.dumps([round(255 * m, 6) for m in cfg.image_mean]),
        "hmr.pixel_std": json.dumps([round(255 * m, 6) for m in cfg.image_std]),
        "hmr.input": f"crops (batch, 3, {s}, {s}) float32 RGB, (pixel - pixel_mean) / pixel_std on 0..255 pixels",
        "hmr.body_model": body.name,
        "hmr.body_model_data": "joints" if model.regress_reads_body else "none",
    }  # fmt: skip
    if model.regress_reads_body:
        meta["hmr.body_model_fingerprint"] = joint_data_fingerprint(body, expected[1].shape[1])
    path = export_onnx(_Regress(model), (crops,), path, INPUTS, OUTPUTS, KIND, meta)
    if not verify:
        return path, {}
    return path, max_differences(path, KIND, {"crops": crops}, dict(zip(OUTPUTS, expected, strict=True)))


def joint_data_fingerprint(body_model: BodyModel, num_betas: int) -> str:
    """A short hash of what an exported graph holds of the body model: parents, rest joints and the first
    ``num_betas`` joint shape directions (float32)."""
    h = hashlib.sha256(json.dumps(body_model.parents).encode())
    for t in (body_model.j_template, body_model.j_shapedirs[..., :num_betas]):
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class OnnxNetwork(MeshPredictor):
    """A network exported by :func:`export_network`, run by onnxruntime on the CPU (inference only: no gradients).
    ``config`` is the family's config rebuilt from the file; the body model is posed in torch, so ``forward``
    and the :class:`~hmr.outputs.MeshOutput` are those of every predictor."""

    def __init__(self, path: str | os.PathLike, body_model: BodyModel, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session, meta = open_session(path, KIND, threads)
        family = FAMILIES.get(meta.get("hmr.architecture", ""))
        if family is None or "hmr.config" not in meta:
            raise ValueError(f"{self.path}: model family {meta.get('hmr.architecture')!r} is not registered here "
                             f"({', '.join(FAMILIES)})")  # fmt: skip
        self.config = config_io.from_dict(family.config_class, yaml.safe_load(meta["hmr.config"]), f" {path} metadata")
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        if [i.name for i in self.session.get_inputs()] != INPUTS or sorted(shapes) != sorted(OUTPUTS):
            raise ValueError(f"{self.path}: expected input {INPUTS} and outputs {OUTPUTS}")
        num_joints, num_betas = shapes["rotmats"][1], shapes["betas"][1]
        if meta.get("hmr.body_model_data", "none") != "none":
            fingerprint = joint_data_fingerprint(body_model, num_betas) if body_model.num_joints == num_joints else ""
            if fingerprint != meta.get("hmr.body_model_fingerprint"):
                raise ValueError(
                    f"{self.path}: its graph holds the joints of body model {meta.get('hmr.body_model')!r}, not of "
                    f"{body_model.name!r}; run it with that body model or export it again with this one"
                )
        self.metadata = meta
        self.attach_body(body_model, num_joints, num_betas)

    def regress(self, crops: torch.Tensor) -> HeadOutput:
        x = crops.detach().to("cpu", torch.float32).contiguous().numpy()
        rot, betas, cam = (torch.from_numpy(a).to(crops.device) for a in self.session.run(OUTPUTS, {"crops": x}))
        return HeadOutput(rot, betas, cam)


def describe(path: str | os.PathLike) -> list[str]:
    """Lines for ``hmr model info FILE.onnx``."""
    meta = read_metadata(path, KIND)
    family = FAMILIES.get(meta.get("hmr.architecture", ""))
    arch = meta.get("hmr.architecture", "?")
    if family is not None and "hmr.config" in meta:
        cfg = config_io.from_dict(family.config_class, yaml.safe_load(meta["hmr.config"]), f" {path} metadata")
        arch = family.describe(cfg)
    body = meta.get("hmr.body_model_data", "none")
    return [
        f"onnx network: {path} (hmr {meta.get('hmr.version')}, format {meta.get('hmr.format_version')})",
        f"architecture: {arch}",
        f"input: {meta.get('hmr.input')}",
        f"body model: {meta.get('hmr.body_model')}" + ("" if body == "none" else f" (its {body} are in the graph)"),
    ]


def _load(path: Path, body_model: BodyModel, device: str | torch.device, overrides: dict) -> OnnxNetwork:
    if overrides:
        raise ValueError(f"{path}: an exported network's architecture is fixed; config overrides "
                         f"({', '.join(overrides)}) do not apply")  # fmt: skip
    return OnnxNetwork(path, body_model).to(device).eval()


register_file_loader(".onnx", _load)
