"""Every registered model, as timm tests every model: forward and backward at reduced size, save/load round trip,
and the full size built on the meta device (names and shapes only, so the suite stays within CI's time)."""

from __future__ import annotations

import pytest
import torch

from hmr.models import FAMILIES, MODELS, create_model, list_models, load_model, save_model
from hmr.models.registry import check_network_state
from hmr.outputs import MeshOutput
from tests.test_models import make_body_model

# Per family: the overrides that make a registered model small enough for CPU tests. A new family must add
# its own; the test fails for one without.
SMALL = {
    "hmr2": {"backbone": {"depth": 1}, "head": {"depth": 1}},
    # HRNet at its registered width, one module of one block per stage; a 16-wide, 2-block transformer.
    "smplpose": {
        "backbone": {"stem_blocks": 1, "num_modules": (1, 1, 1), "num_blocks": 1},
        "regressor": {"hidden": 64},
        "transformer": {"dim": 16, "heads": 2, "mlp_dim": 32, "num_blocks": 2, "units_per_block": 1},
    },
}


@pytest.fixture(scope="module")
def body_model():
    return make_body_model()


def test_every_family_has_small_overrides():
    assert sorted(SMALL) == sorted(FAMILIES)
    assert list_models() == list(MODELS) and all(MODELS[n].family in FAMILIES for n in MODELS)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_and_round_trip(name, body_model, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, body_model=body_model, **SMALL[MODELS[name].family])
    cfg = model.config
    assert cfg.architecture == MODELS[name].family and cfg.name == name
    s = cfg.image_size
    crops = model.normalize(torch.randint(0, 256, (2, 3, s, s)))
    out = model(crops, torch.tensor([[320.0, 240.0]] * 2), torch.tensor([200.0, 150.0]), torch.tensor([[640, 480]] * 2))
    assert isinstance(out, MeshOutput) and out.vertices.shape == (2, body_model.num_vertices, 3)
    assert out.cam_t_full.shape == (2, 3) and out.keypoints_2d_full.shape[-1] == 2
    loss = out.vertices.square().mean() + out.keypoints_2d.square().mean() + out.cam_t_full.square().mean()
    loss.backward()
    trainable = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    no_grad = [k for k, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"
    # The camera must depend on the network (not a constant): its gradient reaches the head.
    model.zero_grad()
    model(crops).pred_cam.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in trainable)

    model.eval()
    path = save_model(model, tmp_path / f"{name}.safetensors")
    loaded = load_model(path, body_model=body_model)
    assert loaded.config == cfg
    with torch.no_grad():
        a, b = model(crops), loaded(crops)
    for field in ("vertices", "keypoints_2d", "pred_cam", "betas"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)


@pytest.mark.parametrize("name", list_models())
def test_full_size_on_meta_device(name, body_model):
    """The full architecture builds (no memory: meta tensors) and its keys extend the small model's."""
    family = FAMILIES[MODELS[name].family]
    cfg = MODELS[name].config
    full = family.network(cfg)
    keys = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    check_network_state({k: torch.empty(s, device="meta") for k, s in keys.items()}, cfg, name)
    small = create_model(name, body_model=body_model, **SMALL[family.name]).state_dict()
    assert set(small) <= set(keys)
    assert sum(torch.Size(s).numel() for s in keys.values()) > sum(v.numel() for v in small.values())
