"""Loading 4D-Humans / Project_HMR / ViTPose checkpoints (reference key layout, tiny random weights) and
our safetensors format."""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hmr.models import (
    CheckpointMismatchError,
    create_model,
    load_backbone_weights,
    load_model,
    save_model,
)
from hmr.models.registry import resolve_weights
from tests.test_models import make_body_model, read_key_list

# A 4D-Humans-style config for a tiny model (the decoder keys are lower case in 4D-Humans' YAML).
TINY_4DH_CFG = {
    "MODEL": {
        "IMAGE_SIZE": 256,
        "IMAGE_MEAN": [0.485, 0.456, 0.406],
        "IMAGE_STD": [0.229, 0.224, 0.225],
        "BBOX_SHAPE": [192, 256],
        "BACKBONE": {"TYPE": "vit", "PRETRAINED_WEIGHTS": "hmr2_training_data/vitpose_backbone.pth"},
        "SMPL_HEAD": {
            "TYPE": "transformer_decoder",
            "IN_CHANNELS": 2048,
            "TRANSFORMER_DECODER": {
                "depth": 2,
                "heads": 2,
                "mlp_dim": 48,
                "dim_head": 8,
                "dropout": 0.0,
                "emb_dropout": 0.0,
                "norm": "layer",
                "context_dim": 128,
            },
        },  # fmt: skip
    },
    "EXTRA": {"FOCAL_LENGTH": 5000, "PELVIS_IND": 39},
    "SMPL": {"NUM_BODY_JOINTS": 23, "GENDER": "neutral"},
    "TRAIN": {"LR": 1e-5},
}
# Backbone 128 wide with 2 heads: the width -> heads rule used when a checkpoint does not say (128 // 64).
TINY_BACKBONE = {"embed_dim": 128, "depth": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def body_model():
    return make_body_model()


def tiny_model(body_model, **head):
    spec = {"dim": 32, "depth": 2, "heads": 2, "dim_head": 8, "mlp_dim": 48, "context_dim": 128, **head}
    torch.manual_seed(0)
    model = create_model("hmr2_vit_s", body_model=body_model, backbone=TINY_BACKBONE, head=spec).eval()
    with torch.no_grad():  # non-trivial mean parameters, so that loading them is tested too
        model.smpl_head.init_betas.normal_()
    return model


def reference_extras(discriminator_names: list[str], with_initialized: bool) -> dict[str, torch.Tensor]:
    """What reference checkpoints carry besides the network: licensed SMPL buffers, the discriminator."""
    extra = {"smpl.v_template": torch.zeros(6890, 3), "smpl.joint_map": torch.arange(25)}
    extra.update({f"discriminator.{n}": torch.zeros(2) for n in discriminator_names})
    if with_initialized:
        extra["initialized"] = torch.tensor(True)
    return extra


def lightning_checkpoint(model, extras: dict, hyper_parameters=None) -> dict:
    ckpt = {
        "epoch": 35,
        "global_step": 1000000,
        "pytorch-lightning_version": "1.8.1",
        "state_dict": OrderedDict({**model.state_dict(), **extras}),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 36}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_score": torch.tensor(0.5), "dirpath": "/x"}},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-5}]}],
        "lr_schedulers": [],
        "native_amp_scaling_state": {"scale": 65536.0, "growth_factor": 2.0},
    }
    if hyper_parameters is not None:
        ckpt["hparams_name"] = "kwargs"
        ckpt["hyper_parameters"] = hyper_parameters
    return ckpt


@pytest.fixture
def fake_yacs():
    """A stand-in ``yacs.config.CfgNode`` (dict subclass with yacs' instance flags), importable only while
    the checkpoint is written; the loader must not need it."""
    yacs, yacs_config = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None):
            super().__init__({k: CfgNode(v) if isinstance(v, dict) else v for k, v in (init or {}).items()})
            self.__dict__.update(__immutable__=True, __deprecated_keys__=set(), __renamed_keys__={},
                                 __new_allowed__=False)  # fmt: skip

        def __getattr__(self, name):
            if name in self:
                return self[name]
            raise AttributeError(name)

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    yacs_config.CfgNode, yacs.config = CfgNode, yacs_config
    sys.modules.update({"yacs": yacs, "yacs.config": yacs_config})
    try:
        yield CfgNode
    finally:
        for name in ("yacs", "yacs.config"):
            sys.modules.pop(name, None)


def same_outputs(a, b, x) -> bool:
    with torch.no_grad():
        oa, ob = a(x), b(x)
    return all(torch.allclose(getattr(oa, f), getattr(ob, f), atol=1e-6) for f in ("vertices", "keypoints_2d", "betas"))


def test_4d_humans_lightning_checkpoint_with_cfgnode(tmp_path, body_model, fake_yacs):
    model = tiny_model(body_model)
    discriminator = [line.split("\t")[0][len("discriminator.") :] for line in
                     (Path(__file__).parent / "data/hmr2_state_dict_keys.txt").read_text().splitlines()
                     if line.startswith("discriminator.")]  # fmt: skip
    ckpt = lightning_checkpoint(model, reference_extras(discriminator, True), {"cfg": fake_yacs(TINY_4DH_CFG)})
    # Foreign objects in parts of the file the loader does not use: numpy values in callback state.
    ckpt["callbacks"]["EarlyStopping"] = {"wait": np.int64(3), "history": np.arange(4.0)}
    path = tmp_path / "epoch=35-step=1000000.ckpt"
    torch.save(ckpt, path)
    sys.modules["yacs"] = sys.modules["yacs.config"] = None  # from here on, importing yacs fails
    loaded = load_model(path, body_model=body_model)
    cfg = loaded.config
    assert (cfg.head.heads, cfg.head.dim_head, cfg.head.mlp_dim, cfg.head.depth) == (2, 8, 48, 2)
    assert (cfg.backbone.embed_dim, cfg.backbone.depth, cfg.backbone.num_heads) == (128, 2, 2)
    assert not loaded.training and not any(p.is_meta for p in loaded.parameters())
    assert same_outputs(model, loaded, torch.randn(2, 3, 256, 256))


def test_project_hmr_checkpoint_shapes_only(tmp_path, body_model):
    """No hyper-parameters, renamed discriminator keys: the architecture comes from the tensor shapes
    (head count: the registry's 8 heads of the decoder)."""
    model = tiny_model(body_model, heads=8, dim_head=4)
    discriminator = ["discriminator_pose_conv1.weight", "discriminator_betas_fc1.weight", "discriminator_body_out.bias"]
    torch.save(lightning_checkpoint(model, reference_extras(discriminator, False)), tmp_path / "last.ckpt")
    loaded = load_model(tmp_path / "last.ckpt", body_model=body_model)
    assert (loaded.config.head.heads, loaded.config.head.dim_head) == (8, 4)
    assert same_outputs(model, loaded, torch.randn(1, 3, 256, 256))


def test_4d_humans_model_config_yaml_two_folders_up(tmp_path, body_model):
    model = tiny_model(body_model)  # 2 heads: shapes alone would say 8, so the YAML must be read
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "model_config.yaml").write_text(yaml.safe_dump(TINY_4DH_CFG))
    torch.save(lightning_checkpoint(model, reference_extras([], True)), tmp_path / "checkpoints" / "last.ckpt")
    loaded = load_model(tmp_path / "checkpoints" / "last.ckpt", body_model=body_model)
    assert loaded.config.head.heads == 2
    assert same_outputs(model, loaded, torch.randn(1, 3, 256, 256))


def test_architecture_checked_against_tensors(tmp_path, body_model, fake_yacs):
    model = tiny_model(body_model)
    cfg = yaml.safe_load(yaml.safe_dump(TINY_4DH_CFG))
    cfg["MODEL"]["SMPL_HEAD"]["TRANSFORMER_DECODER"]["mlp_dim"] = 1024
    torch.save(lightning_checkpoint(model, {}, {"cfg": fake_yacs(cfg)}), tmp_path / "a.ckpt")
    with pytest.raises(
        CheckpointMismatchError, match=r"shape mismatches \(6\).*net\.0\.weight \(48, 32\) \(model \(1024, 32\)\)"
    ):
        load_model(tmp_path / "a.ckpt", body_model=body_model)
    cfg["MODEL"]["SMPL_HEAD"]["TRANSFORMER_INPUT"] = "mean_shape"
    torch.save(lightning_checkpoint(model, {}, {"cfg": fake_yacs(cfg)}), tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match="TRANSFORMER_INPUT = 'mean_shape' is not supported"):
        load_model(tmp_path / "b.ckpt", body_model=body_model)


def test_strict_keys_one_message(tmp_path, body_model):
    model = tiny_model(body_model, heads=8, dim_head=4)
    state = model.state_dict()
    del state["smpl_head.deccam.bias"]
    state["smpl_head.extra.weight"] = torch.zeros(1)
    state["backbone.last_norm.bias"] = torch.zeros(7)
    torch.save({"state_dict": state}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointMismatchError) as err:
        load_model(tmp_path / "x.ckpt", body_model=body_model)
    msg = str(err.value)
    assert "missing keys (1): smpl_head.deccam.bias" in msg and "unexpected keys (1): smpl_head.extra.weight" in msg
    assert "backbone.last_norm.bias (7,) (model (128,))" in msg and str(tmp_path / "x.ckpt") in msg


def test_refuses_code_in_pickles(tmp_path, body_model):
    marker = tmp_path / "ran"

    class Sneaky:
        def __reduce__(self):
            return eval, (f"open({str(marker)!r}, 'w')",)

    class Blocked:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    model = tiny_model(body_model, heads=8, dim_head=4)
    ckpt = lightning_checkpoint(model, {})
    ckpt["callbacks"]["x"] = Sneaky()  # an unknown function becomes an inert stand-in; nothing runs
    torch.save(ckpt, tmp_path / "a.ckpt")
    load_model(tmp_path / "a.ckpt", body_model=body_model)
    ckpt["callbacks"]["x"] = Blocked()  # torch refuses os.* outright
    torch.save(ckpt, tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match="cannot read this checkpoint safely"):
        load_model(tmp_path / "b.ckpt", body_model=body_model)
    assert not marker.exists()


def test_own_checkpoint_round_trip(tmp_path, body_model):
    model = tiny_model(body_model)
    path = save_model(model, tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.yaml"]
    loaded = load_model(path, body_model=body_model)
    assert loaded.config == model.config
    assert same_outputs(model, loaded, torch.randn(1, 3, 256, 256))
    # The YAML beside the file wins over the metadata copy (editable settings such as IEF iterations)...
    text = (tmp_path / "m.yaml").read_text().replace("ief_iters: 1", "ief_iters: 2")
    (tmp_path / "m.yaml").write_text(text)
    assert load_model(path, body_model=body_model).config.head.ief_iters == 2
    # ...and without it the metadata copy is used.
    (tmp_path / "m.yaml").unlink()
    assert load_model(path, body_model=body_model).config == model.config
    with pytest.raises(ValueError, match="safetensors"):
        save_model(model, tmp_path / "m.pt")


def test_vitpose_backbone_weights(tmp_path, body_model):
    source = tiny_model(body_model).backbone.state_dict()
    target = create_model("hmr2_vit_s", body_model=body_model, backbone=TINY_BACKBONE,
                          head={"dim": 32, "depth": 1, "context_dim": 128})  # fmt: skip
    torch.save({"state_dict": source}, tmp_path / "vitpose_backbone.pth")  # 4D-Humans' file layout
    load_backbone_weights(target.backbone, tmp_path / "vitpose_backbone.pth")
    assert all(torch.equal(v, target.backbone.state_dict()[k]) for k, v in source.items())
    full = {f"backbone.{k}": torch.zeros_like(v) for k, v in source.items()}  # a ViTPose pose-model checkpoint
    full["keypoint_head.final_layer.weight"] = torch.zeros(17, 256, 1, 1)
    torch.save(full, tmp_path / "vitpose_full.pth")
    load_backbone_weights(target.backbone, tmp_path / "vitpose_full.pth")
    assert not target.backbone.pos_embed.any()
    del source["pos_embed"]
    torch.save(source, tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError, match="missing keys \\(1\\): pos_embed"):
        load_backbone_weights(target.backbone, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="backbone-only"):
        load_model(tmp_path / "vitpose_backbone.pth", body_model=body_model)


def test_registry_name_without_weights(tmp_path, monkeypatch, body_model):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HMR_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(FileNotFoundError, match=r"epoch=35-step=1000000\.ckpt.*4D-Humans"):
        load_model("hmr2_vit_h", body_model=body_model)
    with pytest.raises(FileNotFoundError, match=r"epoch_0086-step_000086130\.ckpt.*Project_HMR"):
        load_model("hmr2_vit_s", body_model=body_model)
    with pytest.raises(FileNotFoundError, match="No weights are published"):
        load_model("hmr2_vit_b", body_model=body_model)
    with pytest.raises(FileNotFoundError, match="not a registered model"):
        load_model(tmp_path / "missing.ckpt", body_model=body_model)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "hmr2_vit_s.safetensors").touch()
    assert resolve_weights("hmr2_vit_s") == tmp_path / "models" / "hmr2_vit_s.safetensors"
    cache = tmp_path / ".cache/4DHumans/logs/train/multiruns/hmr2/0/checkpoints"
    cache.mkdir(parents=True)
    (cache / "epoch=35-step=1000000.ckpt").touch()
    assert resolve_weights("hmr2_vit_h") == cache / "epoch=35-step=1000000.ckpt"


def test_reference_key_list_loads_into_registry_shapes(tmp_path, body_model):
    """A checkpoint with exactly the reference ViT-S layout (zeros; written from the key list) is accepted
    and its architecture recognised as Project_HMR's."""
    state = {k: torch.zeros(shape) for k, shape in read_key_list("project_hmr_state_dict_keys.txt").items()}
    state["smpl_head.init_cam"] = torch.tensor([[0.9, 0.0, 0.0]])
    torch.save({"state_dict": state}, tmp_path / "ph.ckpt")
    loaded = load_model(tmp_path / "ph.ckpt", body_model=body_model)
    assert loaded.config.name == "hmr2_vit_s" and loaded.config.head.mlp_dim == 512


def test_cli_list_info_convert(tmp_path, monkeypatch, capsys, body_model):
    from hmr.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HMR_MODEL_DIR", str(tmp_path / "models"))
    assert main(["model", "list"]) == 0
    listing = capsys.readouterr().out
    assert "hmr2_vit_h" in listing and "weights: not found" in listing and "no weights" in listing
    model = tiny_model(body_model, heads=8, dim_head=4)
    torch.save(lightning_checkpoint(model, reference_extras(["D_conv1.weight"], True)), tmp_path / "ph.ckpt")
    assert main(["model", "info", str(tmp_path / "ph.ckpt")]) == 0
    info = capsys.readouterr().out
    assert "ViT 128/2/2" in info and "ignored: discriminator, initialized, smpl" in info
    backbone = sum(v.numel() for k, v in model.state_dict().items() if k.startswith("backbone."))
    assert f"backbone {backbone:,}" in info
    assert main(["model", "convert", str(tmp_path / "ph.ckpt"), str(tmp_path / "ph.safetensors")]) == 0
    converted = load_model(tmp_path / "ph.safetensors", body_model=body_model)
    assert same_outputs(model, converted, torch.randn(1, 3, 256, 256))
    (tmp_path / "models").mkdir()
    (tmp_path / "ph.safetensors").rename(tmp_path / "models" / "hmr2_vit_s.safetensors")
    assert main(["model", "list"]) == 0
    assert f"weights: {tmp_path / 'models' / 'hmr2_vit_s.safetensors'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["model", "--help"])
    assert "registered architectures and whether their weights are found" in capsys.readouterr().out
    assert main(["model", "info", "hmr2_vit_l"]) == 2
    assert "No weights are published" in capsys.readouterr().err
