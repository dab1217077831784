"""Model parts against independent formulas (found by mutation testing: shapes alone let these break)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hmr.models import HMR2, HMR2Config, SMPLHeadConfig, ViTConfig, create_model, model_config
from hmr.models.heads.smpl_transformer import SMPLTransformerDecoderHead
from hmr.models.mean_params import MeanParams
from hmr.models.smplpose.convert import describe
from hmr.models.smplpose.transformer import SMPLerConfig, TransformerLayer
from tests.test_models import make_body_model


def test_smpler_attention_and_layer_equal_the_formula():
    """SMPLer's layer: h = x + Linear(MHA(LN(x))), out = h + MLP(h) (facts 2.5); the attention equals
    torch's multi-head attention with the same q/k/v projections and no output projection."""
    torch.manual_seed(0)
    cfg = SMPLerConfig(dropout=0.0, attn_dropout=0.0)
    layer = TransformerLayer(cfg).double().eval()
    x = torch.randn(2, 26, cfg.dim, dtype=torch.float64)
    a = layer.attention
    mha = nn.MultiheadAttention(cfg.dim, cfg.heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
        mha.out_proj.weight.copy_(torch.eye(cfg.dim, dtype=torch.float64))
        mha.out_proj.bias.zero_()
        h = layer.LayerNorm_attn(x)
        torch.testing.assert_close(a(h, h), mha(h, h, h, need_weights=False)[0])
        mid = x + layer.linear_attn(mha(h, h, h, need_weights=False)[0])
        torch.testing.assert_close(layer(x), mid + layer.mlp(mid))


def test_hmr2_decoder_keeps_its_dropout_and_empty_models_hold_no_memory():
    head = SMPLTransformerDecoderHead(SMPLHeadConfig(dim=32, depth=1, heads=2, dim_head=8, mlp_dim=16,
                                                     context_dim=16, dropout=0.1),
                                      MeanParams(np.zeros(144), np.zeros(10), np.zeros(3)))  # fmt: skip
    outs = [m for name, m in head.named_modules() if name.endswith("to_out")]
    assert outs and all(isinstance(m[1], nn.Dropout) and m[1].p == 0.1 for m in outs)
    body = make_body_model()
    cfg = model_config("hmr2_vit_s", backbone={"depth": 1}, head={"depth": 1})
    assert all(p.device.type == "meta" for p in HMR2(cfg, body, empty=True).parameters())
    assert all(p.device.type == "cpu" for p in HMR2(cfg, body).parameters())


def test_config_validation_boundaries():
    HMR2Config(backbone=ViTConfig(img_size=(256, 256)), head=SMPLHeadConfig(context_dim=1280)).validate()  # full width
    with pytest.raises(ValueError, match="centre columns"):
        HMR2Config(backbone=ViTConfig(img_size=(256, 320))).validate()
    model_config("smplpose_w32", regressor={"rot6d_layout": "hmr2"})  # both 6D layouts are allowed
    with pytest.raises(ValueError, match="rot6d_layout"):
        model_config("smplpose_w32", regressor={"rot6d_layout": "quaternion"})


def test_smplpose_describe_names_the_parts():
    assert describe(model_config("smplpose_w32")).endswith("graph attention + language prior)")
    plain = describe(model_config("smplpose_w32", graph_attention=False, language_prior=False))
    assert plain.endswith("no additions)") and "HRNet-W32" in plain and "3 blocks x 2 units" in plain
    assert describe(model_config("smplpose_w48_baseline")).endswith("no transformer)")


def test_full_image_outputs_stay_float32_for_float64_boxes():
    torch.manual_seed(0)
    model = create_model("hmr2_vit_s", body_model=make_body_model(), backbone={"depth": 1}, head={"depth": 1}).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 256, 256), np.array([[320.0, 240.0]]), np.array([200.0]), np.array([[640, 480]]))
    assert out.cam_t_full.dtype == out.keypoints_2d_full.dtype == out.focal_length.dtype == torch.float32
