"""HMR 2.0 model family: architecture against the reference key lists, outputs, conventions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr import config as config_io
from hmr.body import BodyModel, KeypointSet, KeypointSetUnavailableError
from hmr.body.keypoints import EXTRA19_NAMES
from hmr.geometry import rot6d_to_matrix, weak_perspective_projection
from hmr.models import HMR2, MODELS, HMR2Config, MeanParams, create_model, model_config
from hmr.models.hmr2 import HMR2_MODELS
from tests.synthetic_smpl import synthetic_smpl_arrays

DATA = Path(__file__).parent / "data"


def make_body_model(extra19: bool = True) -> BodyModel:
    """SMPL-structured synthetic model (6890 vertices, so openpose25 exists) plus a synthetic extra19."""
    bm = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), name="synthetic")
    if extra19:
        rng = np.random.default_rng(1)
        reg = np.zeros((19, 6890))
        for k in range(19):
            reg[k, rng.choice(6890, 4, replace=False)] = 0.25
        bm.add_keypoint_set("extra19", KeypointSet.from_dense(EXTRA19_NAMES, None, reg, 24))
    return bm


def small_overrides(embed: int = 64, heads: int = 2) -> dict:
    """A tiny architecture with the reference's structure (for fast forward passes)."""
    return {
        "backbone": {"embed_dim": embed, "depth": 2, "num_heads": heads},
        "head": {"dim": 32, "depth": 2, "heads": 2, "dim_head": 8, "mlp_dim": 48, "context_dim": embed},
    }


@pytest.fixture(scope="module")
def body_model() -> BodyModel:
    return make_body_model()


def read_key_list(name: str) -> dict[str, tuple[int, ...]]:
    """Reference state-dict keys -> shapes, minus what loading ignores (smpl.*, discriminator.*, initialized)."""
    out = {}
    for line in (DATA / name).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        if key == "initialized" or key.startswith(("smpl.", "discriminator.")):
            continue
        out[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def vit_params(c: int, depth: int) -> int:
    """ViTPose parameter count: patch embed, pos_embed (193 slots), blocks (qkv, proj, fc1, fc2, 2 norms), last norm."""
    return (3 * 256 * c + c) + 193 * c + depth * (12 * c * c + 13 * c) + 2 * c


def head_params(context: int, mlp: int, depth: int = 6, dim: int = 1024, inner: int = 512) -> int:
    layer = (2 * dim + 3 * inner * dim + inner * dim + dim) + (
        2 * dim + inner * dim + 2 * inner * context + inner * dim + dim
    )
    layer += 2 * dim + dim * mlp + mlp + mlp * dim + dim
    return (dim + dim) + dim + depth * layer + (144 + 10 + 3) * (dim + 1)


def test_count_formulas_reproduce_the_facts():
    """The formulas used for ViT-B/L below give the verified reference counts for ViT-S and ViT-H."""
    assert (vit_params(384, 12), head_params(384, 512)) == (21_663_744, 27_747_485)
    assert (vit_params(1280, 32), head_params(1280, 1024)) == (630_912_000, 39_547_037)


@pytest.mark.parametrize(
    "name,backbone,head",
    [
        ("hmr2_vit_s", 21_663_744, 27_747_485),  # facts section 6 (Project_HMR)
        ("hmr2_vit_h", 630_912_000, 39_547_037),  # facts section 6 (4D-Humans)
        ("hmr2_vit_b", vit_params(768, 12), head_params(768, 1024)),
        ("hmr2_vit_l", vit_params(1024, 24), head_params(1024, 1024)),
    ],
)
def test_parameter_counts(name, backbone, head, body_model):
    model = HMR2(model_config(name), body_model, empty=True)  # meta tensors: counts without memory
    assert count(model.backbone) == backbone
    assert count(model.smpl_head) == head


@pytest.mark.parametrize(
    "name,keys", [("hmr2_vit_h", "hmr2_state_dict_keys.txt"), ("hmr2_vit_s", "project_hmr_state_dict_keys.txt")]
)
def test_state_dict_equals_reference_key_list(name, keys, body_model):
    model = HMR2(model_config(name), body_model, empty=True)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == read_key_list(keys)


@pytest.mark.parametrize("name", list(HMR2_MODELS))
def test_each_size_builds_and_runs(name, body_model):
    depth = {"hmr2_vit_s": 12, "hmr2_vit_b": 2, "hmr2_vit_l": 1, "hmr2_vit_h": 1}[name]
    model = create_model(name, body_model=body_model, backbone={"depth": depth}, head={"depth": 1}).eval()
    cfg = model.config
    assert cfg.backbone.embed_dim == MODELS[name].config.backbone.embed_dim
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 256, 192))
        out = model(torch.randn(2, 3, 256, 256))
    assert feats.shape == (1, cfg.backbone.embed_dim, 16, 12)
    assert out.global_orient.shape == (2, 1, 3, 3) and out.body_pose.shape == (2, 23, 3, 3)
    assert out.betas.shape == (2, 10) and out.pred_cam.shape == (2, 3) and out.pred_cam_t.shape == (2, 3)
    assert out.keypoints_2d.shape == (2, 44, 2) and out.keypoints_3d.shape == (2, 44, 3)
    assert out.vertices.shape == (2, 6890, 3)
    assert out.cam_t_full is None and out.keypoints_2d_full is None
    assert out.keypoint_names[:2] == ("nose", "neck") and out.keypoint_names[39] == "pelvis_mpii"
    rot = torch.cat([out.global_orient, out.body_pose], 1)
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-5)


def test_registry_settings():
    s, h = MODELS["hmr2_vit_s"].config, MODELS["hmr2_vit_h"].config
    assert (s.backbone.embed_dim, s.backbone.depth, s.backbone.num_heads, s.backbone.drop_path_rate) == (
        384,
        12,
        12,
        0.1,
    )
    assert (s.head.mlp_dim, s.head.context_dim) == (512, 384)
    assert (h.backbone.embed_dim, h.backbone.depth, h.backbone.num_heads, h.backbone.drop_path_rate) == (
        1280,
        32,
        16,
        0.55,
    )
    assert (h.head.mlp_dim, h.head.context_dim, h.head.dim, h.head.depth, h.head.heads, h.head.dim_head) == (
        1024, 1280, 1024, 6, 8, 64,
    )  # fmt: skip
    b, l = MODELS["hmr2_vit_b"].config.backbone, MODELS["hmr2_vit_l"].config.backbone
    assert (b.embed_dim, b.depth, b.num_heads, l.embed_dim, l.depth, l.num_heads) == (768, 12, 12, 1024, 24, 16)


def test_config_yaml_round_trip_and_overrides(tmp_path):
    cfg = model_config("hmr2_vit_l", head={"ief_iters": 3}, focal_length=4000.0)
    assert cfg.head.ief_iters == 3 and cfg.head.mlp_dim == 1024 and cfg.focal_length == 4000.0
    assert MODELS["hmr2_vit_l"].config.head.ief_iters == 1  # the registry is not modified
    config_io.save_yaml(cfg, tmp_path / "m.yaml")
    assert config_io.load_yaml(HMR2Config, tmp_path / "m.yaml") == cfg
    with pytest.raises(ValueError, match="unknown head config fields"):
        model_config("hmr2_vit_s", head={"layers": 2})
    with pytest.raises(ValueError, match="unknown config fields"):
        model_config("hmr2_vit_s", depth=2)
    with pytest.raises(ValueError, match="context_dim"):
        model_config("hmr2_vit_s", head={"context_dim": 1280})
    with pytest.raises(ValueError, match="unknown model"):
        model_config("hmr2_vit_xl")


def _zero_readout(model: HMR2) -> None:
    """Make the head output exactly its mean parameters (decoders zero)."""
    with torch.no_grad():
        for lin in (model.smpl_head.decpose, model.smpl_head.decshape, model.smpl_head.deccam):
            lin.weight.zero_()
            lin.bias.zero_()


def _tiny(body_model, **kwargs) -> HMR2:
    return create_model("hmr2_vit_s", body_model=body_model, **small_overrides(), **kwargs).eval()


def test_mean_pose_6d_decoding_golden(tmp_path, body_model):
    """smpl_mean_params.npz stores SPIN-layout 6D; HMR 2.0 decodes it with its own layout (facts 3.3)."""
    first = torch.tensor([1.0, 0.0, 0.0, -1.0000005, 0.0, 1.5e-7])
    x90 = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # +90 degrees about x
    assert torch.allclose(rot6d_to_matrix(first, "spin"), torch.diag(torch.tensor([1.0, -1, -1])), atol=1e-6)
    assert torch.allclose(rot6d_to_matrix(first, "hmr2"), x90, atol=1e-6)

    identity_spin = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    pose = np.array(first.tolist() + identity_spin * 23, dtype=np.float32)
    np.savez(tmp_path / "smpl_mean_params.npz", pose=pose, shape=np.full(10, 0.1), cam=np.array([0.9, 0.0, 0.0]))
    model = _tiny(body_model, mean_params=tmp_path / "smpl_mean_params.npz")
    assert torch.equal(model.smpl_head.init_body_pose[0], torch.from_numpy(pose))  # stored verbatim
    _zero_readout(model)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert torch.allclose(out.global_orient[0, 0], x90, atol=1e-6)
    # SPIN's identity [1,0,0,1,0,0] read in HMR 2.0's layout has columns (1,0,0), (1,0,0): degenerate.
    assert torch.isnan(out.body_pose).any() or not torch.allclose(out.body_pose[0, 0], torch.eye(3))
    assert torch.allclose(out.betas, torch.full((1, 10), 0.1)) and torch.allclose(
        out.pred_cam, torch.tensor([[0.9, 0, 0]])
    )


def test_default_mean_params_from_body_model(body_model):
    mp = MeanParams.from_body_model(body_model)
    assert mp.pose.shape == (144,) and not mp.betas.any() and mp.cam.tolist() == pytest.approx([0.9, 0, 0])
    model = _tiny(body_model)
    _zero_readout(model)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert torch.allclose(out.global_orient[0, 0], torch.diag(torch.tensor([1.0, -1, -1])), atol=1e-6)
    assert torch.allclose(out.body_pose, torch.eye(3).expand(1, 23, 3, 3), atol=1e-6)
    # Upright in the camera frame (y down): the head is above (smaller y than) the ankles.
    names = out.keypoint_names
    assert out.keypoints_3d[0, names.index("head_top_lsp"), 1] < out.keypoints_3d[0, names.index("right_ankle"), 1]


def test_mean_params_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="smpl_mean_params.npz"):
        MeanParams.from_npz(tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", pose=np.zeros(144))
    with pytest.raises(ValueError, match="missing array"):
        MeanParams.from_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", pose=np.array([{"a": 1}], dtype=object), shape=np.zeros(10), cam=np.zeros(3))
    with pytest.raises(ValueError, match="holds Python objects"):
        MeanParams.from_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "short.npz", pose=np.zeros(72), shape=np.zeros(10), cam=np.zeros(3))
    with pytest.raises(ValueError, match="144"):
        create_model("hmr2_vit_s", body_model=make_body_model(), mean_params=tmp_path / "short.npz")


def test_crop_to_full_hand_computed(body_model):
    """640x480 image, box centre (400, 300), side 200, pred_cam [0.5, 0.1, -0.2]:
    f = 5000/256*640 = 12500; b*s = 100; t = [0.1 + 2*80/100, -0.2 + 2*60/100, 2*12500/100]."""
    model = _tiny(body_model)
    _zero_readout(model)
    model.smpl_head.init_cam.copy_(torch.tensor([[0.5, 0.1, -0.2]]))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256), torch.tensor([[400.0, 300.0]]), torch.tensor([200.0]),
                    torch.tensor([[640.0, 480.0]]))  # fmt: skip
    assert torch.allclose(out.cam_t_full, torch.tensor([[1.7, 1.0, 250.0]]), atol=1e-5)
    assert torch.allclose(out.focal_length, torch.tensor([[12500.0, 12500.0]]))
    assert torch.allclose(out.pred_cam_t, torch.tensor([[0.1, -0.2, 2 * 5000 / (256 * 0.5)]]))
    p = out.keypoints_3d + out.cam_t_full[:, None]
    expected = 12500 * p[..., :2] / p[..., 2:] + torch.tensor([320.0, 240.0])
    assert torch.allclose(out.keypoints_2d_full, expected, atol=1e-3)


def test_keypoints_2d_is_hmr2_weak_perspective(body_model):
    """keypoints_2d = f/256 (X + t) / (Z + t_z) with t_z = 2f/(256 s), i.e. s/2 (X + [tx, ty]) / (1 + Z s 256/(2f)),
    which tends to HMR's weak perspective s (X + t) (in [-1, 1] units) halved as f grows."""
    model = _tiny(body_model)
    with torch.no_grad():
        out = model(torch.randn(3, 3, 256, 256))
    s, t = out.pred_cam[:, None, :1], out.pred_cam[:, None, 1:]
    x, z = out.keypoints_3d[..., :2], out.keypoints_3d[..., 2:]
    expected = s / 2 * (x + t) / (1 + z * s * 256 / (2 * 5000))
    assert torch.allclose(out.keypoints_2d, expected, atol=1e-5)
    far = _tiny(body_model, focal_length=1e9)
    far.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = far(torch.randn(2, 3, 256, 256))
    assert torch.allclose(out.keypoints_2d, weak_perspective_projection(out.keypoints_3d, out.pred_cam) / 2, atol=1e-5)


def test_only_centre_columns_are_seen(body_model):
    model = _tiny(body_model)
    x = torch.randn(1, 3, 256, 256)
    y = x.clone()
    y[..., :32] = 5.0
    y[..., -32:] = -5.0
    with torch.no_grad():
        assert torch.equal(model(x).betas, model(y).betas)


def test_normalize_matches_reference(body_model):
    model = _tiny(body_model)
    pixels = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (pixels.float() - 255 * mean[:, None, None]) / (255 * std[:, None, None])
    assert torch.allclose(model.normalize(pixels), expected, atol=1e-5)


def test_bad_inputs(body_model):
    model = _tiny(body_model)
    with pytest.raises(ValueError, match=r"expected \(B, 3, 256, 256\)"):
        model(torch.randn(1, 3, 256, 192))
    with pytest.raises(ValueError, match="together"):
        model(torch.randn(1, 3, 256, 256), box_center=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="box_size has shape"):
        model(torch.randn(1, 3, 256, 256), torch.zeros(1, 2), torch.zeros(2), torch.ones(1, 2))
    with pytest.raises(KeypointSetUnavailableError, match="extra19"):
        _tiny(make_body_model(extra19=False))


def test_state_dict_has_no_body_model(body_model):
    model = _tiny(body_model)
    keys = list(model.state_dict())
    assert keys and all(k.startswith(("backbone.", "smpl_head.")) for k in keys)
    model.load_state_dict(model.state_dict(), strict=True)
    wrapper = torch.nn.Module()
    wrapper.net = model
    wrapper.load_state_dict(wrapper.state_dict(), strict=True)


def _manual_head(head, context: torch.Tensor) -> torch.Tensor:
    """The decoder written out with einsum from the spec, to check the module's reshapes and chunk orders."""
    cfg = head.config
    sd = {k: v for k, v in head.state_dict().items()}
    ln = lambda x, p: torch.nn.functional.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], cfg.norm_eps)  # noqa: E731

    def attention(q, k, v):
        split = lambda t: t.reshape(t.shape[0], t.shape[1], cfg.heads, cfg.dim_head)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        w = torch.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(cfg.dim_head)
        return torch.einsum("bhnm,bmhd->bnhd", w.softmax(-1), v).flatten(2)

    x = sd["transformer.to_token_embedding.bias"].expand(context.shape[0], 1, -1) + sd["transformer.pos_embedding"]
    for i in range(cfg.depth):
        p = f"transformer.transformer.layers.{i}."
        h = ln(x, p + "0.norm")
        q, k, v = (h @ sd[p + "0.fn.to_qkv.weight"].T).chunk(3, -1)
        x = x + attention(q, k, v) @ sd[p + "0.fn.to_out.0.weight"].T + sd[p + "0.fn.to_out.0.bias"]
        h = ln(x, p + "1.norm")
        k, v = (context @ sd[p + "1.fn.to_kv.weight"].T).chunk(2, -1)
        x = x + attention(h @ sd[p + "1.fn.to_q.weight"].T, k, v) @ sd[p + "1.fn.to_out.0.weight"].T
        x = x + sd[p + "1.fn.to_out.0.bias"]
        h = ln(x, p + "2.norm") @ sd[p + "2.fn.net.0.weight"].T + sd[p + "2.fn.net.0.bias"]
        x = x + torch.nn.functional.gelu(h) @ sd[p + "2.fn.net.3.weight"].T + sd[p + "2.fn.net.3.bias"]
    pose = x[:, 0] @ sd["decpose.weight"].T + sd["decpose.bias"] + sd["init_body_pose"]
    return rot6d_to_matrix(pose.reshape(-1, 24, 6), "hmr2")


def _manual_vit(vit, x: torch.Tensor) -> torch.Tensor:
    cfg, sd = vit.config, vit.state_dict()
    ln = lambda t, p: torch.nn.functional.layer_norm(t, t.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-6)  # noqa: E731
    t = torch.nn.functional.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16, padding=2)
    hp, wp = t.shape[2:]
    t = t.flatten(2).transpose(1, 2) + sd["pos_embed"][:, 1:] + sd["pos_embed"][:, :1]
    nh, c = cfg.num_heads, cfg.embed_dim
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        qkv = ln(t, p + "norm1") @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        q, k, v = qkv.reshape(t.shape[0], -1, 3, nh, c // nh).unbind(2)
        w = torch.einsum("bnhd,bmhd->bhnm", q, k) * (c // nh) ** -0.5
        a = torch.einsum("bhnm,bmhd->bnhd", w.softmax(-1), v).flatten(2)
        t = t + a @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        h = torch.nn.functional.gelu(ln(t, p + "norm2") @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        t = t + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    t = ln(t, "last_norm")
    return t.transpose(1, 2).reshape(x.shape[0], c, hp, wp)


def test_layers_match_the_spec_written_out(body_model):
    torch.manual_seed(0)
    model = _tiny(body_model)
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        feats = model.backbone(x)
        assert torch.allclose(feats, _manual_vit(model.backbone, x), atol=1e-4)
        context = feats.flatten(2).transpose(1, 2)
        assert torch.allclose(model.smpl_head(feats).rotmats, _manual_head(model.smpl_head, context), atol=1e-4)


def test_train_mode_uses_drop_path(body_model):
    model = create_model("hmr2_vit_s", body_model=body_model, **small_overrides())
    model.train()
    x = torch.randn(2, 3, 256, 256)
    torch.manual_seed(0)
    a = model(x).betas
    torch.manual_seed(1)
    b = model(x).betas
    assert not torch.equal(a, b)  # stochastic depth is active while training (drop_path_rate 0.1)
    a.sum().backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None


def test_mixed_precision_keeps_body_model_float32(body_model):
    model = _tiny(body_model)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 256, 256))
    assert out.vertices.dtype == torch.float32 and torch.isfinite(out.keypoints_2d).all()
    with torch.no_grad():
        ref = body_model(global_orient=out.global_orient, body_pose=out.body_pose, betas=out.betas)
    assert torch.allclose(out.vertices, ref.vertices, atol=1e-6)


def test_default_body_model(monkeypatch):
    import hmr.body

    if not hasattr(hmr.body, "load_body_model"):
        pytest.skip("this checkout has no default body model yet")
    monkeypatch.delenv(hmr.body.SMPL_ENV_VAR, raising=False)
    model = create_model("hmr2_vit_s", **small_overrides()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert out.keypoints_3d.shape == (1, 44, 3) and out.body_model == model.body_model.name
