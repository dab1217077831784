"""Hostile files given to the loaders (body models, regressors, mean parameters, checkpoints, keypoint JSON):
each gives one line naming the file and the problem, runs nothing and changes nothing."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
import yaml

from hmr.body import BodyModel
from hmr.io.keypoints import read_openpose_json
from hmr.models import GuessedConfigWarning, create_model, load_model
from hmr.models.mean_params import MeanParams
from tests import py2_pickle as p2
from tests.synthetic_smpl import synthetic_smpl_arrays
from tests.test_models import make_body_model

LOADER_ERRORS = (ValueError, OSError, pickle.UnpicklingError)


def one_line(info, path) -> str:
    msg = str(info.value)
    assert str(path) in msg, msg
    assert "\n" not in msg and "Traceback" not in msg and "Errno" not in msg, msg
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------- body files
def _body_case(tmp_path, case):
    arrays = synthetic_smpl_arrays()
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    if case == "directory":
        path = tmp_path / "SMPL_NEUTRAL.npz"
        path.mkdir()  # a folder named like a file: searched for SMPL_NEUTRAL.pkl inside, which is absent
    elif case == "truncated_npz":
        path = tmp_path / "m.npz"
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "garbage_npz":
        path = tmp_path / "m.npz"
        path.write_bytes(os.urandom(4000))
    elif case == "empty_npz":
        path = tmp_path / "m.npz"
        path.write_bytes(b"")
    elif case == "object_npz":
        path = tmp_path / "m.npz"
        np.savez(path, **{**arrays, "v_template": np.array([{"a": 1}], dtype=object)})
    elif case == "missing_keys":
        path = tmp_path / "m.npz"
        np.savez(path, **{k: v for k, v in arrays.items() if k not in ("weights", "J_regressor")})
    elif case == "nan_template":
        bad = dict(arrays, v_template=arrays["v_template"].copy())
        bad["v_template"][3, 1] = np.nan
        path = tmp_path / "m.pkl"
        path.write_bytes(p2.smpl_pickle(bad))
    elif case == "wrong_shapes":
        path = tmp_path / "m.npz"
        np.savez(path, **{**arrays, "weights": arrays["weights"][:, :10]})
    elif case == "truncated_pkl":
        path = tmp_path / "m.pkl"
        data = p2.smpl_pickle(arrays)
        path.write_bytes(data[: len(data) // 3])
    elif case == "list_pkl":
        path = tmp_path / "m.pkl"
        path.write_bytes(p2.dumps([1, 2, 3]))
    elif case == "wrong_suffix":
        path = tmp_path / "m.obj"
        path.write_text("v 0 0 0\n")
    return path


BODY_CASES = {
    "directory": "no SMPL model",
    "truncated_npz": "damaged or truncated",
    "garbage_npz": "not a .npz file",
    "empty_npz": "empty file",
    "object_npz": "holds Python objects",
    "missing_keys": "missing arrays",
    "nan_template": "'v_template' holds NaN",
    "wrong_shapes": "weights has shape",
    "truncated_pkl": "not a readable pickle",
    "list_pkl": "expected a dict of arrays",
    "wrong_suffix": "unsupported body model format",
}


@pytest.mark.parametrize("case", list(BODY_CASES))
def test_bad_body_files(tmp_path, case):
    path = _body_case(tmp_path, case)
    with pytest.raises(LOADER_ERRORS) as info:
        BodyModel.from_file(path)
    assert BODY_CASES[case] in one_line(info, path)


REGRESSOR_CASES = {
    "directory": "is a folder",
    "object_npy": "holds Python objects",
    "truncated_npy": "damaged",
    "wrong_width": "expected (K, 240)",
    "nan": "NaN",
    "pickled_string": "not a joint regressor",
    "malicious_pkl": "refusing to load posix.system",
}


@pytest.mark.parametrize("case", list(REGRESSOR_CASES))
def test_bad_joint_regressors(tmp_path, case):
    """``--smpl-j19`` / ``J_regressor_h36m.npy`` / ``J_regressor_extra.npy`` as users hand them."""
    body = tmp_path / "SMPL_NEUTRAL.npz"
    np.savez(body, **synthetic_smpl_arrays())
    good = np.full((17, 240), 1 / 240)
    path = tmp_path / ("J_regressor_h36m.npy" if "npy" in case or case in ("wrong_width", "nan") else "SMPL_to_J19.pkl")
    if case == "directory":
        path.mkdir()
    elif case == "object_npy":
        np.save(path, np.array([good], dtype=object), allow_pickle=True)
    elif case == "truncated_npy":
        np.save(path, good)
        path.write_bytes(path.read_bytes()[:500])
    elif case == "wrong_width":
        np.save(path, good[:, :100])
    elif case == "nan":
        np.save(path, np.where(np.eye(17, 240) > 0, np.nan, good))
    elif case == "pickled_string":
        path.write_bytes(p2.dumps(p2.s("not a matrix")))
    elif case == "malicious_pkl":
        path.write_bytes(p2.dumps(p2.Reduce(p2.Global("posix", "system"), (p2.s(f"touch {tmp_path}/owned"),))))
    with pytest.raises(LOADER_ERRORS) as info:
        BodyModel.from_file(body, h36m_regressor=path)
    assert REGRESSOR_CASES[case] in one_line(info, path)
    assert not (tmp_path / "owned").exists()


@pytest.mark.parametrize("case", ["garbage", "object", "nan", "missing"])
def test_bad_mean_params(tmp_path, case):
    path = tmp_path / "smpl_mean_params.npz"
    arrays = {"pose": np.zeros(144), "shape": np.zeros(10), "cam": np.array([0.9, 0, 0])}
    if case == "garbage":
        path.write_bytes(b"PK" + os.urandom(300))
    elif case == "object":
        np.savez(path, **{**arrays, "pose": np.array([{}], dtype=object)})
    elif case == "nan":
        np.savez(path, **{**arrays, "cam": np.array([np.nan, 0, 0])})
    else:
        np.savez(path, pose=arrays["pose"])
    with pytest.raises(ValueError) as info:
        MeanParams.from_npz(path)
    one_line(info, path)


# --------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def body_model():
    return make_body_model()


def tiny(body_model, num_heads: int, embed_dim: int = 64):
    torch.manual_seed(0)
    return create_model("hmr2_vit_s", body_model=body_model, backbone={"embed_dim": embed_dim, "depth": 2,
                        "num_heads": num_heads}, head={"dim": 32, "depth": 1, "heads": 2, "dim_head": 8,
                        "mlp_dim": 48, "context_dim": embed_dim}).eval()  # fmt: skip


def outputs(model, x):
    with torch.no_grad():
        return model(x).vertices


CHECKPOINT_CASES = {
    "empty": "empty file",
    "garbage": "not a PyTorch checkpoint",
    "text": "not a PyTorch checkpoint",
    "truncated": "damaged or truncated zip archive",
    "plain_pickle": "not a PyTorch checkpoint",
    "malicious": "refused (a pickle can run code)",
    "directory": "is a folder",
    "other_model": "no state_dict of tensors",
    "backbone_only": "has no smpl_head weights",
    "nan": "holds 1 NaN or infinite values of 96 (a corrupt checkpoint or a diverged training run)",
    "inf": "holds 3 NaN or infinite values",
    "mismatch": "does not fit",
    "garbage_safetensors": "not a readable safetensors file",
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoints(tmp_path, body_model, case):
    model = tiny(body_model, 1)
    state = model.state_dict()
    path = tmp_path / "epoch=1.ckpt"
    torch.save({"state_dict": state}, tmp_path / "good.ckpt")
    if case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(os.urandom(10000))
    elif case == "text":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 2\n")  # an LFS pointer
    elif case == "truncated":
        data = (tmp_path / "good.ckpt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "plain_pickle":
        path.write_bytes(pickle.dumps({"state_dict": {"a": np.zeros(3)}}))
    elif case == "malicious":

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path}/owned",))

        torch.save({"state_dict": state, "x": Evil()}, path)
    elif case == "directory":
        path.mkdir()
    elif case == "other_model":
        torch.save({"model": "resnet", "epoch": 3}, path)
    elif case == "backbone_only":
        torch.save({"state_dict": {k: v for k, v in state.items() if k.startswith("backbone.")}}, path)
    elif case in ("nan", "inf"):
        bad = dict(state)
        key = "smpl_head.deccam.weight" if case == "nan" else "backbone.blocks.1.attn.qkv.weight"
        bad[key] = bad[key].clone()
        bad[key].view(-1)[: 1 if case == "nan" else 3] = float("nan") if case == "nan" else float("inf")
        torch.save({"state_dict": bad}, path)
    elif case == "mismatch":
        bad = dict(state)
        bad["backbone.last_norm.weight"] = torch.zeros(5)
        torch.save({"state_dict": bad}, path)
    elif case == "garbage_safetensors":
        path = tmp_path / "m.safetensors"
        path.write_bytes(os.urandom(100))
        path.with_suffix(".yaml").write_text("name: x\n")
    with pytest.raises(LOADER_ERRORS) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", GuessedConfigWarning)
        load_model(path, body_model=body_model)
    msg = one_line(info, path)
    assert CHECKPOINT_CASES[case] in msg
    if case in ("nan", "inf"):
        assert key in msg
    assert not (tmp_path / "owned").exists()


def test_guessed_head_count_warns_and_overrides_fix_it(tmp_path, body_model):
    """A width-64 ViT trained with 4 heads: the shapes say nothing, 64 // 64 = 1 head is a guess (warned,
    and wrong); ``load_model(..., backbone={"num_heads": 4})`` gives the trained model back."""
    model = tiny(body_model, 4)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "last.ckpt")
    x = torch.randn(1, 3, 256, 256)
    with pytest.warns(GuessedConfigWarning, match=r"last\.ckpt.*backbone\.num_heads=1.*backbone=\{'num_heads': N\}"):
        guessed = load_model(tmp_path / "last.ckpt", body_model=body_model)
    assert guessed.config.backbone.num_heads == 1
    assert (outputs(guessed, x) - outputs(model, x)).abs().max() > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", GuessedConfigWarning)
        fixed = load_model(tmp_path / "last.ckpt", body_model=body_model, backbone={"num_heads": 4}, head={"heads": 2})
    torch.testing.assert_close(outputs(fixed, x), outputs(model, x))


def test_head_count_read_from_4d_humans_config(tmp_path, body_model):
    model = tiny(body_model, 4)
    cfg = {"MODEL": {"BACKBONE": {"TYPE": "vit", "NUM_HEADS": 4},
                     "SMPL_HEAD": {"TRANSFORMER_DECODER": {"heads": 2, "dim_head": 8}}}}  # fmt: skip
    (tmp_path / "model_config.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "last.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GuessedConfigWarning)
        loaded = load_model(tmp_path / "last.ckpt", body_model=body_model)
    x = torch.randn(1, 3, 256, 256)
    torch.testing.assert_close(outputs(loaded, x), outputs(model, x))


def test_registered_width_is_not_a_guess(tmp_path, body_model):
    """A checkpoint as wide as a registered ViT (384: ViT-S, 12 heads) follows that entry, without a warning."""
    model = tiny(body_model, 12, embed_dim=384)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ph.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GuessedConfigWarning)
        loaded = load_model(tmp_path / "ph.ckpt", body_model=body_model, head={"heads": 2})
    assert loaded.config.backbone.num_heads == 12


# --------------------------------------------------------------------------------- keypoint JSON
JSON_CASES = {
    "missing": "cannot read",
    "directory": "cannot read",
    "binary": "not a UTF-8 text file",
    "strings": "not numbers",
    "nan": "finite numbers",
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_bad_openpose_json(tmp_path, case):
    path = tmp_path / "frame_000001_keypoints.json"
    if case == "directory":
        path.mkdir()
    elif case == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    elif case == "strings":
        path.write_text(json.dumps({"people": [{"pose_keypoints_2d": ["a"] * 75}]}))
    elif case == "nan":
        path.write_text('{"people": [{"pose_keypoints_2d": [' + ", ".join(["NaN"] * 75) + "]}]}")
    with pytest.raises(LOADER_ERRORS) as info:
        read_openpose_json(path)
    assert JSON_CASES[case] in one_line(info, path)
