"""Network precision (``network.precision``, hmr.models.precision): auto picks bf16 only where the device has
it natively, bf16 autocast really runs and stays close to float32, and the ONNX runtime refuses bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hmr.detection import Detections
from hmr.io.images import read_image
from hmr.models import MODELS, create_model, precision, save_model
from hmr.pipeline import Pipeline, PipelineConfig
from hmr.pipeline.config import DetectorSection, NetworkSection
from tests.test_registry import SMALL

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("native", [True, False])
def test_auto_takes_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert precision.resolve_precision("fp32", "cpu") == "fp32" and precision.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision 'half'"):
        precision.resolve_precision("half", "cpu")


def test_native_bf16_follows_onednn(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    assert not precision.native_bf16("cpu")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert precision.native_bf16("cpu") == torch.backends.mkldnn.is_available()


@pytest.mark.parametrize("name", ["hmr2_vit_s", "smplpose_w32"])
def test_bf16_runs_the_backbone_in_bf16_and_stays_near_fp32(name, tmp_path):
    """The same crops through the pipeline at fp32 and bf16: the backbone computes in bf16 and the
    meshes stay within 4 mm (with the heads in bf16 too, 6-18 mm on the small random HMR 2.0 network)."""
    torch.manual_seed(0)
    overrides = {**SMALL[MODELS[name].family], "backbone": {**SMALL[MODELS[name].family]["backbone"]}}
    tiny = save_model(create_model(name, **overrides), tmp_path / "tiny.safetensors")
    image = read_image(ROOT / "examples" / "basketball1.png")
    boxes = Detections.from_boxes([[30, 82, 160, 478], [437, 19, 638, 473]])
    out = {}
    for p in ("fp32", "bf16"):
        pipe = Pipeline(PipelineConfig(network=NetworkSection(str(tiny), precision=p), detector=DetectorSection(tiles=False)))
        assert pipe.precision == p
        seen = []
        layer = next(m for m in pipe.network.backbone.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
        layer.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(out.dtype))
        out[p] = [q.mesh for q in pipe(image, boxes=boxes).people]
        assert seen == [torch.bfloat16 if p == "bf16" else torch.float32]  # the backbone's first layer
        for head in [m for n, m in pipe.network.named_children() if n != "backbone" and n != "body_model"]:
            for w in head.parameters():
                assert w.dtype == torch.float32
    for a, b in zip(out["fp32"], out["bf16"], strict=True):
        assert b.vertices.dtype == torch.float32  # the body model is posed in float32
        diff = (a.vertices - b.vertices).norm(dim=-1).max().item()
        assert diff < 0.004, diff  # metres; full-size figures in docs/benchmarks.md ("precision")


def test_onnx_runtime_refuses_bf16(tmp_path):
    with pytest.raises(ValueError, match="bf16 needs the torch runtime"):
        Pipeline(PipelineConfig(network=NetworkSection(str(tmp_path / "x.onnx"), precision="bf16")))
    with pytest.raises(ValueError, match="network.precision: unknown 'fp8'"):
        PipelineConfig(network=NetworkSection("x", precision="fp8")).validate()

