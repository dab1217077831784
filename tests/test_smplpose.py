"""SMPL-Pose family: SMPLer's architecture against the reference key lists and counts, numbers computed by
hand (6D decoding, R <- R dR, camera, joint windows), the gated additions, and SMPLer's checkpoints."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr.body import SMPL_JOINT_NAMES
from hmr.cli import main as cli_main
from hmr.geometry import rot6d_to_matrix, weak_perspective_projection
from hmr.io.arrays import load_npz
from hmr.models import FAMILIES, CheckpointMismatchError, create_model, load_model, model_config
from hmr.models.backbones.hrnet import HRNet, HRNetConfig, load_hrnet_weights
from hmr.models.smplpose import load_pretrained
from hmr.models.smplpose.convert import network
from hmr.models.smplpose.priors import JOINT_TEXT_PATH, TEXT_MODEL, hop_buckets, joint_descriptions
from hmr.models.smplpose.transformer import gather_windows, joint_windows, window_bias
from tests.test_models import make_body_model
from tests.test_registry import SMALL

DATA = Path(__file__).parent / "data"
TINY = SMALL["smplpose"]
GATES = ("hop_gate", "adjacency_gate", "joint_text_prior.gate")


@pytest.fixture(scope="module")
def body_model():
    return make_body_model()


def read_smpler_keys(name: str) -> dict[str, tuple[int, ...]]:
    """SMPLer key list (``name (shape) dtype`` lines) -> shapes, without the licensed ``smpl_handler.*``."""
    out = {}
    for line in (DATA / name).read_text().splitlines():
        key, shape = re.fullmatch(r"(\S+) \(([\d, ]*)\) \w+", line).groups()
        if not key.startswith("smpl_handler."):
            out[key] = tuple(int(s) for s in shape.split(",") if s.strip())
    return out


def tiny(body_model, name: str = "smplpose_w32", **overrides):
    torch.manual_seed(0)
    return create_model(name, body_model=body_model, **{**TINY, **overrides}).eval()


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------ architecture
ADDITIONS = 6 * (4 * 8 + 4 + 2 * 26 * 16 + 4) + (384 * 128 + 128 + 3)  # 6 graph biases + the text prior


@pytest.mark.parametrize(
    "name,total,backbone",
    [
        ("smplpose_w32", 37_355_950, 29_305_536),  # facts sections 0 and 2.5
        ("smplpose_w48", 73_615_150, 65_325_120),
        ("smplpose_w32_baseline", 30_939_997, 29_305_536),  # facts section 2.2
        ("smplpose_w48_baseline", 67_090_653, 65_325_120),
    ],
)
def test_parameter_counts(name, total, backbone):
    """On the meta device (no memory); the additions are 6 x (hop table 4x8, 2 gates of 4, 2 node embeddings
    26x16) + Linear(384 -> 128) + 3 gates."""
    cfg = model_config(name, graph_attention=False, language_prior=False)
    net = network(cfg)
    assert count(net) == total and count(net.backbone) == backbone
    if cfg.model_type == "smpler":
        assert count(network(model_config(name))) == total + ADDITIONS == total + 54_515


@pytest.mark.parametrize(
    "name,keys",
    [
        ("smplpose_w32", "smpler_state_dict_keys.txt"),
        ("smplpose_w32_baseline", "smpler_baseline_state_dict_keys_w32.txt"),
    ],
)
def test_state_dict_equals_reference_key_list(name, keys):
    net = network(model_config(name, graph_attention=False, language_prior=False))
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == read_smpler_keys(keys)


def test_hrnet_outputs_four_maps():
    torch.manual_seed(0)
    net = HRNet(HRNetConfig(width=8, stem_blocks=1, num_modules=(1, 1, 1), num_blocks=1)).eval()
    with torch.no_grad():
        maps = net(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [(1, 8, 56, 56), (1, 16, 28, 28), (1, 32, 14, 14), (1, 64, 7, 7)]


def test_baseline_freezes_only_the_unused_fusions(body_model):
    model = tiny(body_model, "smplpose_w32_baseline")
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(k.startswith("backbone.stage4.0.fuse_layers.") and ".fuse_layers.3." not in k for k in frozen)


# ---------------------------------------------------------------------------- hand-computed
# x.reshape(3, 2) columns a1 = (x0, x2, x4) = (0, 2, 0) and a2 = (x1, x3, x5) = (1, 1, 0): b1 = (0, 1, 0), a2 minus
# its b1 part = (1, 0, 0) = b2, b3 = b1 x b2 = (0, 0, -1).
SPIN_6D = torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0, 0.0])
SPIN_R = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
A = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # +90 degrees about z
B = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # +90 degrees about x
A_TIMES_B = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # rows of A dotted with columns of B


def spin6d(r: torch.Tensor) -> torch.Tensor:
    """The first two columns interleaved row by row: [r00, r01, r10, r11, r20, r21]."""
    return r[:, :2].reshape(6)


def constant_outputs(model) -> None:
    """Every read-out outputs its bias only: the IEF estimate is its mean parameters, each block's rotation
    residual the identity, its shape and camera residuals zero."""
    with torch.no_grad():
        reg = model.SMPL_predictor
        for lin in (reg.decpose, reg.decshape, reg.deccam):
            lin.weight.zero_()
            lin.bias.zero_()
        for block in getattr(model, "transformer", []):
            for lin in (block.theta_predictor, block.beta_predictor, block.cam_predictor):
                lin.weight.zero_()
                lin.bias.zero_()
            block.theta_predictor.bias.copy_(spin6d(torch.eye(3)))


def test_spin_6d_decode_of_a_known_vector(body_model):
    assert torch.equal(rot6d_to_matrix(SPIN_6D, "spin"), SPIN_R)
    model = tiny(body_model, "smplpose_w32_baseline")
    constant_outputs(model)
    with torch.no_grad():
        model.SMPL_predictor.init_pose[0, :6] = SPIN_6D
        out = model(torch.randn(1, 3, 224, 224))
    assert torch.allclose(out.global_orient[0, 0], SPIN_R, atol=1e-6)


def test_update_is_r_times_delta_r(body_model):
    """Joint 5 starts at A; the first block's rotation residual is B for every joint: the result is A @ B (which
    differs from B @ A); betas and camera add up the residuals."""
    model = tiny(body_model)
    constant_outputs(model)
    with torch.no_grad():
        model.SMPL_predictor.init_pose[0, 30:36] = spin6d(A)
        model.SMPL_predictor.init_shape.fill_(0.1)
        block = model.transformer[0]
        block.theta_predictor.bias.copy_(spin6d(B))
        block.beta_predictor.bias.fill_(0.2)
        block.cam_predictor.bias.copy_(torch.tensor([-0.2, 0.1, -0.05]))
        out = model(torch.randn(1, 3, 224, 224))
    assert not torch.allclose(A_TIMES_B, B @ A)
    assert torch.allclose(out.body_pose[0, 4], A_TIMES_B, atol=1e-6)
    assert torch.allclose(out.betas, torch.full((1, 10), 0.3)) and torch.allclose(
        out.pred_cam, torch.tensor([[0.8, 0.1, -0.05]])
    )


def test_camera_translation_from_known_cam(body_model):
    """pred_cam [0.8, 0.1, -0.2] on a 224 crop: t = [0.1, -0.2, 2 * 5000 / (224 * 0.8)]. Image 640x480, box centre
    (400, 300), side 200: f = 5000 / 224 * 640, b s = 160, t_full = [0.1 + 2 * 80 / 160, -0.2 + 2 * 60 / 160, 2 f / 160]."""
    model = tiny(body_model, "smplpose_w32_baseline")
    constant_outputs(model)
    with torch.no_grad():
        model.SMPL_predictor.init_cam.copy_(torch.tensor([[0.8, 0.1, -0.2]]))
        out = model(torch.randn(1, 3, 224, 224), torch.tensor([[400.0, 300.0]]), torch.tensor([200.0]),
                    torch.tensor([[640.0, 480.0]]))  # fmt: skip
    f = 5000 / 224 * 640
    assert torch.allclose(out.pred_cam_t, torch.tensor([[0.1, -0.2, 10000 / 179.2]]))
    assert torch.allclose(out.cam_t_full, torch.tensor([[1.1, 0.55, 2 * f / 160]]), atol=1e-5)
    assert torch.allclose(out.focal_length, torch.tensor([[f, f]]))
    p = out.keypoints_3d + out.pred_cam_t[:, None]
    assert torch.allclose(out.keypoints_2d, 5000 / 224 * p[..., :2] / p[..., 2:], atol=1e-6)
    far = tiny(body_model, "smplpose_w32_baseline", focal_length=1e9)  # perspective -> SMPLer's orthographic / 2
    far.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = far(torch.randn(1, 3, 224, 224))
    assert torch.allclose(out.keypoints_2d, weak_perspective_projection(out.keypoints_3d, out.pred_cam) / 2, atol=1e-6)


def test_joint_window_positions():
    """Joint (0.1, -0.5) on the 56x56 map: p = ((0.1 + 1) / 2 * 55, (-0.5 + 1) / 2 * 55) = (30.25, 13.75), window
    x 27..34, y 10..17 (floor(p) + -3..4), offsets (pixel - p) / 4."""
    joints = torch.tensor([[[0.1, -0.5], [-1.0, 1.0]]])
    pixels, offsets = joint_windows(joints, 56, 4)
    assert pixels.shape == (1, 2, 64, 2)
    grid = pixels[0, 0].reshape(8, 8, 2)
    assert grid[0, :, 0].tolist() == list(range(27, 35)) and grid[:, 0, 1].tolist() == list(range(10, 18))
    assert offsets[0, 0, 0].tolist() == [-0.8125, -0.9375] and offsets[0, 0, 63].tolist() == [0.9375, 0.8125]
    # The corner joint (0, 55): the window is clamped to the map.
    assert pixels[0, 1, :8, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4]
    assert pixels[0, 1, ::8, 1].tolist() == [52, 53, 54, 55, 55, 55, 55, 55]
    # Nearest sampling reads those pixels: a map holding 100 y + x (channel 0) and its negative (channel 1).
    ys, xs = torch.meshgrid(torch.arange(56.0), torch.arange(56.0), indexing="ij")
    fmap = torch.stack([100 * ys + xs, -(100 * ys + xs)])[None]
    window = gather_windows(fmap, pixels)
    assert window.shape == (1, 2, 64, 2)
    assert window[0, 0, 0].tolist() == [1027.0, -1027.0] and window[0, 0, 63, 0] == 1734.0


def test_relative_position_bias_reads_the_table():
    """Table value 10 row + column (+ 100 per head), read at offsets (-0.8125, -0.9375): column (offset + 1) / 2 * 8
    = 0.75, row 0.25 -> 3.25; at (0.9375, 0.8125): column 7.75, row 7.25 -> 80.25."""
    rows, cols = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    table = torch.stack([10 * rows + cols, 10 * rows + cols + 100])[None]
    offsets = torch.tensor([[[[-0.8125, -0.9375], [0.9375, 0.8125]]]])
    bias = window_bias(table, offsets)
    assert bias.shape == (1, 2, 1, 2)
    assert torch.allclose(bias[0, :, 0], torch.tensor([[3.25, 80.25], [103.25, 180.25]]))


def test_hop_distances():
    hops = hop_buckets((-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21), 6)
    assert hops.shape == (26, 26) and torch.equal(hops, hops.T) and not hops.diagonal()[:24].any()
    assert hops[0, 4] == 2 and hops[10, 7] == 1 and hops[15, 12] == 1  # pelvis-knee, foot-ankle, head-neck
    assert hops[22, 23] == 6  # hand to hand is 10 hops: capped
    assert (hops[24] == 7).all() and (hops[:, 25] == 7).all()  # shape and camera tokens: their own bucket


# ------------------------------------------------------------------------------------ additions
def _gates(model):
    return [p for k, p in model.named_parameters() if k.endswith(GATES)]


def test_closed_gates_are_exactly_smpler_and_open_gates_train(tmp_path, body_model):
    full = tiny(body_model)
    plain = tiny(body_model, graph_attention=False, language_prior=False)
    kept = load_pretrained(full, _saved(plain, tmp_path))  # SMPLer weights into the model with the additions
    assert kept and all(".graph_bias." in k or k.startswith("joint_text_prior.") for k in kept)
    crops = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b = full(crops), plain(crops)
    for field in ("global_orient", "body_pose", "betas", "pred_cam", "vertices", "keypoints_2d"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field

    full.train()
    full(crops).keypoints_2d.square().sum().backward()
    assert len(_gates(full)) == 2 * 2 + 1 and all(p.grad.abs().sum() > 0 for p in _gates(full))  # they can open
    full.zero_grad()
    with torch.no_grad():
        for p in _gates(full):
            p.fill_(0.5)
    full(crops).keypoints_2d.square().sum().backward()
    added = [(k, p) for k, p in full.named_parameters() if ".graph_bias." in k or k.startswith("joint_text_prior.")]
    assert added and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in added)
    full.eval()
    with torch.no_grad():
        assert not torch.equal(full(crops).body_pose, b.body_pose)


def test_graph_bias_values(body_model):
    bias_module = tiny(body_model).transformer[0].trans_block.trans_units[0].self_trans_layer.graph_bias
    assert torch.equal(bias_module(), torch.zeros(2, 26, 26))  # closed gates: exact zeros
    with torch.no_grad():
        bias_module.hop_gate.fill_(1.0)
    bias = bias_module()
    assert bias[0, 0, 4] == -2 and bias[1, 22, 23] == -6 and bias[0, 24, 3] == -1 and bias[0, 5, 5] == 0


def test_language_prior_asset():
    data = load_npz(JOINT_TEXT_PATH)
    emb = data["embeddings"]
    assert emb.shape == (24, 384) and emb.dtype == np.float32
    assert tuple(data["descriptions"].tolist()) == joint_descriptions() and str(data["model"]) == TEXT_MODEL
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    names = list(SMPL_JOINT_NAMES)
    twins = [(names.index(n), names.index("right_" + n[5:])) for n in names if n.startswith("left_")]
    assert len(twins) == 9
    for i, j in twins:
        assert float(emb[i] @ emb[j]) < 0.995, (names[i], names[j])
    knee = joint_descriptions()[names.index("left_knee")]
    assert "left knee" in knee and "left hip" in knee and "left ankle" in knee and "right" not in knee


def test_bad_configs(body_model):
    with pytest.raises(ValueError, match="baseline lacks"):
        model_config("smplpose_w32_baseline", graph_attention=True)
    with pytest.raises(ValueError, match="model_type"):
        model_config("smplpose_w32", model_type="hmr")
    with pytest.raises(ValueError, match="multiple of 32"):
        model_config("smplpose_w32", image_size=200)
    with pytest.raises(ValueError, match=r"expected \(B, 3, 224, 224\)"):
        tiny(body_model)(torch.randn(1, 3, 256, 256))


# ----------------------------------------------------------------------------------- checkpoints
SMPL_HANDLER = {"smpl_handler.J_regressor_h36m_correct": (17, 6890), "smpl_handler.smpl.v_template": (6890, 3),
                "smpl_handler.smpl.parents": (24,)}  # fmt: skip


def _with_smpl_handler(state: dict) -> dict:
    return {**state, **{k: torch.zeros(s) for k, s in SMPL_HANDLER.items()}}


def _saved(model, folder: Path) -> Path:
    """``model`` as SMPLer releases checkpoints: a raw state dict with the SMPL buffers."""
    path = folder / f"{model.config.name}_{id(model)}.pt"
    torch.save(_with_smpl_handler(model.state_dict()), path)
    return path


def _reference_state(keys: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Random weights for a key list, with sane BN statistics and mean parameters (SPIN identity, cam [1, 0, 0])."""
    torch.manual_seed(0)
    state = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            state[k] = torch.ones(shape)
        else:
            state[k] = torch.randn(shape) * 0.02
    state["SMPL_predictor.init_pose"] = spin6d(torch.eye(3)).repeat(24)[None]
    state["SMPL_predictor.init_cam"] = torch.tensor([[1.0, 0.0, 0.0]])
    return state


def test_released_smpler_checkpoint_loads_and_runs(tmp_path, body_model):
    """A full-size W32 file written from the reference key list alone (raw state dict + SMPL buffers)."""
    path = tmp_path / "SMPLer_h36m.pt"
    torch.save(_with_smpl_handler(_reference_state(read_smpler_keys("smpler_state_dict_keys.txt"))), path)
    model = load_model(path, body_model=body_model)
    smpler = model_config("smplpose_w32", graph_attention=False, language_prior=False)
    assert model.config == dataclasses.replace(smpler, name="smpler_w32")
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.keypoints_2d).all()


def _training_dict(model) -> dict:
    return {"model": _with_smpl_handler(model.state_dict()), "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
            "epoch": 49, "global_iter": 1000}  # fmt: skip


def test_training_checkpoint_converts(tmp_path, body_model):
    """SMPLer's trainer.py layout; the family unwraps 'model' and drops smpl_handler.*."""
    model = tiny(body_model, "smplpose_w32_baseline", transformer={})  # no transformer: its config stays default
    ckpt = _training_dict(model)
    family = FAMILIES["smplpose"]
    assert family.owns(ckpt["model"]) and not FAMILIES["hmr2"].owns(ckpt["model"])
    state, cfg, guessed = family.convert(tmp_path / "epoch_049.pt", ckpt)
    assert set(state) == set(model.state_dict()) and not guessed
    assert cfg == dataclasses.replace(model.config, name="smplpose_custom")  # the architecture, from the shapes


def test_training_checkpoint_loads_through_load_model(tmp_path, body_model):
    model = tiny(body_model)
    torch.save(_training_dict(model), tmp_path / "epoch_099.pt")
    loaded = load_model(tmp_path / "epoch_099.pt", body_model=body_model)
    with torch.no_grad():
        crops = torch.randn(1, 3, 224, 224)
        assert torch.equal(loaded(crops).vertices, model(crops).vertices)


def test_raw_checkpoint_load_and_convert(tmp_path, body_model, capsys):
    model = tiny(body_model)
    src = _saved(model, tmp_path)
    loaded = load_model(src, body_model=body_model)
    assert loaded.config == dataclasses.replace(model.config, name="smplpose_custom")
    assert cli_main(["model", "convert", str(src), str(tmp_path / "w.safetensors")]) == 0
    assert (tmp_path / "w.yaml").is_file() and "smplpose_custom" in capsys.readouterr().out
    converted = load_model(tmp_path / "w.safetensors", body_model=body_model)
    assert not any(k.startswith("smpl_handler.") for k in converted.state_dict())
    crops = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b, c = model(crops), loaded(crops), converted(crops)
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.vertices, c.vertices)


def test_hmr2_checkpoints_are_not_claimed():
    hmr2_keys = [line.split("\t")[0] for line in (DATA / "hmr2_state_dict_keys.txt").read_text().splitlines()
                 if line and not line.startswith("#")]  # fmt: skip
    assert not FAMILIES["smplpose"].owns(dict.fromkeys(hmr2_keys))
    assert not FAMILIES["hmr2"].owns(read_smpler_keys("smpler_state_dict_keys.txt"))


def test_load_pretrained_baseline_into_smpler(tmp_path, body_model):
    """SMPLer's stage 2 starts from the stage-1 checkpoint: every baseline key is an SMPLer key."""
    baseline = tiny(body_model, "smplpose_w32_baseline")
    smpler = tiny(body_model, graph_attention=False, language_prior=False)
    kept = load_pretrained(smpler, _saved(baseline, tmp_path))
    assert kept and not any(k.startswith(("backbone.", "SMPL_predictor.")) for k in kept)
    assert torch.equal(smpler.backbone.conv1.weight, baseline.backbone.conv1.weight)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys"):
        load_pretrained(baseline, _saved(smpler, tmp_path))


def test_official_hrnet_pose_weights(tmp_path):
    """A pose checkpoint: no fusions into branches 1-3 in the last module, plus a heatmap head."""
    cfg = HRNetConfig(width=8, stem_blocks=1, num_modules=(1, 1, 1), num_blocks=1)
    torch.manual_seed(0)
    src = HRNet(cfg)
    state = {k: v for k, v in src.state_dict().items() if not re.match(r"stage4\.0\.fuse_layers\.[123]\.", k)}
    torch.save({**state, "final_layer.weight": torch.zeros(17, 8, 1, 1), "final_layer.bias": torch.zeros(17)},
               tmp_path / "pose_hrnet_w8.pth")  # fmt: skip
    dst = HRNet(cfg)
    kept = load_hrnet_weights(dst, tmp_path / "pose_hrnet_w8.pth")
    assert sorted(kept) == sorted(set(src.state_dict()) - set(state))
    assert torch.equal(dst.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match="extra.weight"):
        load_hrnet_weights(dst, tmp_path / "bad.pth")
