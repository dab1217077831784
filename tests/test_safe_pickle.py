"""The restricted unpickler on pickles written as the real files are (tests/py2_pickle.py) and on hostile ones."""

import pickle

import numpy as np
import pytest
import torch

from hmr.body import BodyModel
from hmr.io.safe_pickle import UnreadableValue, UnsafePickleError, load_pickle
from tests import py2_pickle as p2
from tests.synthetic_smpl import synthetic_smpl_arrays


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("style", ["newobj", "reconstructor"])
def test_python2_smpl_pickle_loads_like_its_arrays(tmp_path, style):
    """Protocol 2 with NEWOBJ (as SMPL's files are) and protocol 1 with copy_reg._reconstructor."""
    arrays = synthetic_smpl_arrays()
    data = p2.smpl_pickle(arrays, style)
    for name in (b"__builtin__\nset", b"numpy.core.multiarray\n_reconstruct", b"chumpy.ch\nCh"):
        assert name in data  # the file really is written with Python 2's names
    assert (b"copy_reg\n_reconstructor" in data) == (style == "reconstructor")
    loaded = load_pickle(_write(tmp_path, "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl", data))
    for key in ("v_template", "shapedirs", "posedirs", "weights", "J_regressor", "f", "kintree_table"):
        np.testing.assert_array_equal(loaded[key], arrays[key], err_msg=key)
        assert loaded[key].dtype == np.asarray(arrays[key]).dtype or key == "J_regressor"
    assert loaded["f"].dtype == np.uint32 and loaded["kintree_table"][0, 0] == 4294967295
    assert loaded["bs_style"] == "lbs" and loaded["bs_type"] == "lrotmin"
    assert loaded["pose_training_info"] == {"num_subjects": 1, "weight_decay": 0.001}
    np.testing.assert_array_equal(loaded["J_regressor_prior"], arrays["J_regressor"])


def test_python2_smpl_pickle_gives_the_same_body_as_its_arrays(tmp_path):
    arrays = synthetic_smpl_arrays()
    path = _write(tmp_path, "SMPL_NEUTRAL.pkl", p2.smpl_pickle(arrays))
    model = BodyModel.from_file(path, dtype=torch.float64)
    ref = BodyModel.from_arrays(arrays, "reference", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    pose = dict(global_orient=torch.randn(2, 3, generator=g, dtype=torch.float64),
                body_pose=torch.randn(2, 69, generator=g, dtype=torch.float64) * 0.4,
                betas=torch.randn(2, 10, generator=g, dtype=torch.float64))  # fmt: skip
    torch.testing.assert_close(model(**pose).vertices, ref(**pose).vertices, rtol=0, atol=0)


def test_smpl_with_cocoplus_and_300_betas(tmp_path):
    """SMPLify's neutral model adds a sparse cocoplus_regressor; SMPL 1.1 files have 300 shape components."""
    arrays = synthetic_smpl_arrays(num_betas=300)
    reg = np.zeros((19, len(arrays["v_template"])))
    reg[np.arange(19), np.arange(19) * 7] = 1.0
    path = _write(tmp_path, "neutral_smpl_with_cocoplus_reg.pkl",
                  p2.smpl_pickle(arrays, extra={p2.s("cocoplus_regressor"): p2.csc(reg)}))  # fmt: skip
    np.testing.assert_array_equal(load_pickle(path)["cocoplus_regressor"], reg)
    assert BodyModel.from_file(path).num_betas == 300


def test_smplh_pickle_loads_with_52_joints(tmp_path):
    """SMPL-H's pickle: 52 joints (hands), hand PCA arrays, otherwise SMPL's layout."""
    arrays = synthetic_smpl_arrays()
    nv, nj = len(arrays["v_template"]), 52
    parents = list(range(-1, nj - 1))
    kintree = np.stack([np.array(parents), np.arange(nj)]).astype(np.int64)
    kintree[0, 0] = 4294967295
    weights = np.zeros((nv, nj))
    weights[np.arange(nv), np.arange(nv) % nj] = 1.0
    reg = np.zeros((nj, nv))
    reg[np.arange(nv) % nj, np.arange(nv)] = 1.0
    reg /= reg.sum(1, keepdims=True)
    arrays.update(kintree_table=kintree, weights=weights, J_regressor=reg,
                  posedirs=np.zeros((nv, 3, 9 * (nj - 1))))  # fmt: skip
    extra = {p2.s("hands_componentsl"): np.eye(45), p2.s("hands_meanl"): np.zeros(45)}
    model = BodyModel.from_file(_write(tmp_path, "SMPLH_male.pkl", p2.smpl_pickle(arrays, extra=extra)))
    assert model.num_joints == 52


def test_chumpy_expression_without_value_is_unreadable_not_fatal(tmp_path):
    """A chumpy op (no ``x`` in its state) needs chumpy's code; the rest of the file still loads."""
    op = p2.Py2Object(p2.Global("chumpy.ch_ops", "add"), {p2.s("a"): p2.ch(np.ones(3)), p2.s("b"): 2.0})
    loaded = load_pickle(_write(tmp_path, "m.pkl", p2.dumps({p2.s("J"): op, p2.s("v"): p2.ch(np.ones(2))})))
    assert isinstance(loaded["J"], UnreadableValue)
    np.testing.assert_array_equal(loaded["v"], np.ones(2))


def test_body_file_with_unreadable_required_array_names_it(tmp_path):
    arrays = synthetic_smpl_arrays()
    data = p2.smpl_pickle(arrays, extra={p2.s("v_template"): p2.Py2Object(p2.Global("chumpy.ch_ops", "add"), {})})
    with pytest.raises(ValueError, match=r"m\.pkl: array 'v_template' is a chumpy expression"):
        BodyModel.from_file(_write(tmp_path, "m.pkl", data))


def test_joint_regressor_pickle_from_python2(tmp_path):
    """SMPL_to_J19.pkl-style regressor written by Python 2 (dense, and as a csc_matrix)."""
    arrays = synthetic_smpl_arrays()
    reg = np.random.default_rng(0).random((19, len(arrays["v_template"])))
    reg[reg < 0.9] = 0
    for i, obj in enumerate((reg, p2.csc(reg))):
        path = _write(tmp_path, f"SMPL_to_J19_{i}.pkl", p2.dumps(obj))
        np.testing.assert_array_equal(load_pickle(path), reg)
        smpl = BodyModel.from_file(_write(tmp_path, "SMPL_NEUTRAL.pkl", p2.smpl_pickle(arrays)),
                                   joint_regressor_extra=path)  # fmt: skip
        out = smpl(body_pose=torch.zeros(1, 69))
        torch.testing.assert_close(out.keypoint_set("extra19")[0], torch.from_numpy(reg).float() @ out.vertices[0])


def test_4d_humans_data_pyd(tmp_path):
    """data.pyd: a Python 3 pickle of a list of per-person dicts of float32 arrays, with np.array(dict)."""
    person = {
        "keypoints_2d": np.random.rand(44, 3).astype(np.float32),
        "keypoints_3d": np.random.rand(44, 4).astype(np.float32),
        "center": np.array([120.0, 80.0], np.float32),
        "scale": np.array([1.2, 1.2], np.float32),
        "body_pose": np.zeros(72, np.float32),
        "betas": np.zeros(10, np.float32),
        "has_body_pose": np.float32(1.0),
        "has_betas": 1,
        "extra_info": {"fitting_loss": np.array({"reprojection_loss": 12.5}), "detection_npz_idx": 0},
    }
    for protocol in (2, 4, 5):
        out = load_pickle(_write(tmp_path, f"data{protocol}.pyd", pickle.dumps([person], protocol=protocol)))
        np.testing.assert_array_equal(out[0]["keypoints_2d"], person["keypoints_2d"])
        assert out[0]["keypoints_2d"].dtype == np.float32
        assert out[0]["extra_info"]["fitting_loss"].item() == {"reprojection_loss": 12.5}


# ------------------------------------------------------------------------------------------- hostile
def _marker_payloads(marker):
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w')"
    return {
        "py2_eval": p2.Reduce(p2.Global("__builtin__", "eval"), (p2.s(code),)),
        "py2_posix_system": p2.Reduce(p2.Global("posix", "system"), (p2.s(cmd),)),
        "py3_os_system": p2.Reduce(p2.Global("os", "system"), (cmd,)),
        "py3_builtins_exec": p2.Reduce(p2.Global("builtins", "exec"), (code,)),
        "py2_getattr": p2.Reduce(p2.Global("__builtin__", "getattr"), (p2.Global("os", "system"), p2.s("x"))),
        "py2_apply": p2.Reduce(p2.Global("__builtin__", "apply"), (p2.Global("posix", "system"), (cmd,))),
        "reconstructor_of_system": p2.Reduce(p2.Global("copy_reg", "_reconstructor"),
                                             (p2.Global("posix", "system"), p2.Global("__builtin__", "object"), cmd)),
        "subprocess_in_chumpy_state": p2.ch(p2.Reduce(p2.Global("subprocess", "call"), ((cmd,),))),
        "numpy_load_pickle": p2.Reduce(p2.Global("numpy", "load"), (str(marker),)),
        "torch_load": p2.Reduce(p2.Global("torch", "load"), (str(marker),)),
    }  # fmt: skip


@pytest.mark.parametrize("kind", list(_marker_payloads("x")))
@pytest.mark.parametrize("protocol", [1, 2])
def test_malicious_pickle_refused_and_nothing_runs(tmp_path, kind, protocol):
    marker = tmp_path / "owned"
    payload = {p2.s("v_template"): _marker_payloads(marker)[kind]}
    path = _write(tmp_path, "SMPL_NEUTRAL.pkl", p2.dumps(payload, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"SMPL_NEUTRAL\.pkl: refusing to load"):
        BodyModel.from_file(path)
    assert not marker.exists()


def test_python3_names_not_mapped_as_python2_for_protocol_3_plus(tmp_path):
    """Only protocol 0-2 pickles get the Python 2 name table; a protocol 4 file naming __builtin__ is refused."""
    path = _write(tmp_path, "a.pkl", p2.dumps({"s": p2.Reduce(p2.Global("__builtin__", "set"), ([1],))}, protocol=4))
    with pytest.raises(UnsafePickleError, match="__builtin__.set"):
        load_pickle(path)
    assert load_pickle(_write(tmp_path, "b.pkl", p2.dumps({"s": {1, 2}}, protocol=2))) == {"s": {1, 2}}


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "directory", "missing", "huge_sparse", "bad_sparse"])
def test_unreadable_pickles_give_one_line_naming_the_file(tmp_path, case):
    good = p2.smpl_pickle(synthetic_smpl_arrays())
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "text":
        path.write_text("this is not a pickle\n")
    elif case == "directory":
        path.mkdir()
    elif case == "huge_sparse":
        path.write_bytes(p2.dumps({p2.s("J"): p2.Py2Object(p2.Global("scipy.sparse.csc", "csc_matrix"), {
            p2.s("_shape"): (10**6, 10**6), p2.s("data"): np.ones(1), p2.s("indices"): np.zeros(1, np.int32),
            p2.s("indptr"): np.zeros(10**6 + 1, np.int32)})}))  # fmt: skip
    elif case == "bad_sparse":
        path.write_bytes(p2.dumps({p2.s("J"): p2.Py2Object(p2.Global("scipy.sparse.csc", "csc_matrix"), {})}))
    expected = (FileNotFoundError, IsADirectoryError, pickle.UnpicklingError)
    with pytest.raises(expected) as info:
        load_pickle(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg and "Errno" not in msg
    if case == "huge_sparse":  # refused by its declared size, before any allocation
        assert "at most" in msg
