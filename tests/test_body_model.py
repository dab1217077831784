import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from hmr.body import BodyModel, BodyModelNotFoundError, KeypointSet, KeypointSetUnavailableError
from hmr.io.safe_pickle import UnsafePickleError
from tests.synthetic_smpl import synthetic_smpl_arrays


@pytest.fixture
def fake_chumpy(monkeypatch):
    """A stand-in ``chumpy`` module (the real one does not import on Python 3.11 + numpy 2)."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)

        @property
        def shape(self):
            return self.x.shape

        def __getitem__(self, key):
            return Ch(self.x[key])

        def __array__(self, dtype=None, copy=None):
            return self.x if dtype is None else self.x.astype(dtype)

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    monkeypatch.setitem(sys.modules, "chumpy", pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    return Ch


@pytest.fixture
def smpl_pkl(tmp_path, fake_chumpy):
    """An SMPL-format pickle as the official one is: chumpy shapedirs, sparse J_regressor, protocol 2."""
    arrays = synthetic_smpl_arrays()
    arrays["shapedirs"] = fake_chumpy(arrays["shapedirs"])
    arrays["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    return path


def _random_inputs(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        global_orient=torch.randn(n, 3, generator=g, dtype=dtype) * 0.8,
        body_pose=torch.randn(n, 69, generator=g, dtype=dtype) * 0.5,
        betas=torch.randn(n, 10, generator=g, dtype=dtype),
        transl=torch.randn(n, 3, generator=g, dtype=dtype),
    )


def test_equals_smplx_float64(smpl_pkl):
    smplx = pytest.importorskip("smplx")
    vertex_ids = {k: i for i, k in enumerate(
        ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe",
         "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring",
         "rpinky"])}  # fmt: skip
    ref = smplx.SMPL(str(smpl_pkl), vertex_ids=vertex_ids, dtype=torch.float64)
    ours = BodyModel.from_file(smpl_pkl, dtype=torch.float64)
    inp = _random_inputs(16, torch.float64)
    r = ref(**inp)
    o = ours(**inp)
    assert (o.vertices - r.vertices).abs().max() < 1e-6
    assert (o.joints - r.joints[:, :24]).abs().max() < 1e-6
    assert o.vertices.dtype == torch.float64


def test_float32_matches_float64(smpl_pkl):
    m64 = BodyModel.from_file(smpl_pkl, dtype=torch.float64)
    m32 = BodyModel.from_file(smpl_pkl)
    inp = _random_inputs(4, torch.float64)
    o64 = m64(**inp)
    o32 = m32(**{k: v.float() for k, v in inp.items()})
    assert o32.vertices.dtype == torch.float32
    assert (o32.vertices.double() - o64.vertices).abs().max() < 1e-5


def test_pose_formats_agree(smpl_pkl):
    from hmr.geometry import axis_angle_to_matrix

    model = BodyModel.from_file(smpl_pkl)
    inp = _random_inputs(3, torch.float32)
    base = model(**inp).vertices
    go, bp = inp["global_orient"], inp["body_pose"]
    variants = [
        (go[:, None], bp.reshape(3, 23, 3)),
        (axis_angle_to_matrix(go)[:, None], axis_angle_to_matrix(bp.reshape(3, 23, 3))),
    ]
    for g, b in variants:
        out = model(global_orient=g, body_pose=b, betas=inp["betas"], transl=inp["transl"])
        assert torch.allclose(out.vertices, base, atol=1e-5)
    with pytest.raises(ValueError, match="body_pose has shape"):
        model(body_pose=torch.zeros(3, 22, 3))
    # Fewer betas than the file has means the rest are zero.
    few = model(betas=inp["betas"][:, :4]).vertices
    padded = model(betas=torch.cat([inp["betas"][:, :4], torch.zeros(3, 6)], 1)).vertices
    assert torch.allclose(few, padded, atol=1e-6)


def test_gradients_reach_pose_and_shape(smpl_pkl):
    model = BodyModel.from_file(smpl_pkl)
    inp = {k: v.requires_grad_() for k, v in _random_inputs(2, torch.float32).items()}
    out = model(**inp)
    (out.vertices.square().sum() + out.joints.sum()).backward()
    for k in ("global_orient", "body_pose", "betas", "transl"):
        assert inp[k].grad is not None and inp[k].grad.abs().sum() > 0, k
    # Exactly at the zero pose too (Rodrigues is singular there without care).
    zero = torch.zeros(1, 69, requires_grad=True)
    model(body_pose=zero).vertices.sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_malicious_pickle_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(UnsafePickleError, match="refusing to load builtins.print"):
        BodyModel.from_file(path)


def test_npz_roundtrip_with_keypoint_sets(smpl_pkl, tmp_path):
    model = BodyModel.from_file(smpl_pkl)
    kp = KeypointSet(("a", "b"), np.array([0, 1, 1]), np.array([3, 24 + 5, 24 + 6]), np.array([1.0, 0.5, 0.5]))
    model.add_keypoint_set("custom", kp)
    path = tmp_path / "model.npz"
    model.save_npz(path)
    again = BodyModel.from_file(path)
    inp = _random_inputs(2, torch.float32)
    a, b = model(**inp), again(**inp)
    assert torch.allclose(a.vertices, b.vertices, atol=1e-6)
    custom = b.keypoint_set("custom")
    assert torch.allclose(custom[:, 0], b.joints[:, 3], atol=1e-6)
    assert torch.allclose(custom[:, 1], 0.5 * (b.vertices[:, 5] + b.vertices[:, 6]), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SMPL_NEUTRAL.pkl", "model.npz"]  # no temporaries


def test_other_topology_reports_openpose_unavailable(smpl_pkl):
    out = BodyModel.from_file(smpl_pkl)()
    with pytest.raises(KeypointSetUnavailableError, match="'openpose25' is not defined"):
        out.keypoint_set("openpose25")


def test_smpl_topology_gets_openpose(tmp_path):
    arrays = synthetic_smpl_arrays(num_vertices=6890)
    model = BodyModel.from_arrays(arrays, name="smpl-sized")
    out = model(betas=torch.randn(2, 10))
    op = out.keypoint_set("openpose25")
    assert op.shape == (2, 25, 3)
    assert torch.allclose(op[:, 0], out.vertices[:, 332])  # nose
    assert torch.allclose(op[:, 1], out.joints[:, 12])  # neck
    assert torch.allclose(op[:, 8], out.joints[:, 0])  # mid hip = pelvis
    assert torch.allclose(op[:, 24], out.vertices[:, 6787])  # right heel


@pytest.mark.parametrize("suffix", [".npy", ".pkl"])
def test_regressor_files(smpl_pkl, tmp_path, suffix):
    rng = np.random.default_rng(1)
    j19 = rng.random((19, 240)) * (rng.random((19, 240)) < 0.05)
    h36m = rng.random((17, 240))
    p19, ph = tmp_path / f"j19{suffix}", tmp_path / "h36m.npy"
    if suffix == ".pkl":
        p19.write_bytes(pickle.dumps(scipy.sparse.csr_matrix(j19), protocol=2))
    else:
        np.save(p19, j19)
    np.save(ph, h36m)
    model = BodyModel.from_file(smpl_pkl, joint_regressor_extra=p19, h36m_regressor=ph, dtype=torch.float64)
    out = model(**_random_inputs(2, torch.float64))
    assert torch.allclose(
        out.keypoint_set("extra19"), torch.einsum("kv,bvc->bkc", torch.tensor(j19), out.vertices), atol=1e-6
    )
    assert torch.allclose(out.keypoint_set("h36m17"), torch.einsum("kv,bvc->bkc", torch.tensor(h36m), out.vertices))
    with pytest.raises(ValueError, match=r"expected \(K, 240\)"):
        np.save(ph, h36m[:, :100])
        BodyModel.from_file(smpl_pkl, h36m_regressor=ph)


def test_missing_smpl_explains_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HMR_SMPL_PATH", raising=False)
    with pytest.raises(BodyModelNotFoundError, match=r"smpl\.is\.tue\.mpg\.de.*HMR_SMPL_PATH"):
        BodyModel.from_file(tmp_path / "SMPL_NEUTRAL.pkl")
    with pytest.raises(BodyModelNotFoundError, match="no SMPL model given"):
        BodyModel.from_file(None)
    with pytest.raises(BodyModelNotFoundError, match="SMPL_MALE.pkl"):
        BodyModel.from_file(tmp_path, gender="male")


def test_env_var_and_folder(smpl_pkl, monkeypatch):
    monkeypatch.setenv("HMR_SMPL_PATH", str(smpl_pkl.parent))
    assert BodyModel.from_file().num_vertices == 240


def test_keypoint_set_apply_equals_its_dense_matrix():
    """KeypointSet.apply (sparse joints + vertices) equals the dense (K, J+V) regressor it stands for."""
    g = torch.Generator().manual_seed(0)
    joints, vertices = torch.randn(2, 3, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    kp = KeypointSet(("a", "b"), np.array([0, 0, 1]), np.array([1, 3 + 4, 3 + 0]), np.array([1.0, 0.5, 2.0]))
    dense = torch.zeros(2, 8)
    dense[0, 1], dense[0, 7], dense[1, 3] = 1.0, 0.5, 2.0
    torch.testing.assert_close(kp.apply(joints, vertices), dense @ torch.cat([joints, vertices], 1))


def test_errors_name_the_array_or_argument(smpl_pkl):
    arrays = synthetic_smpl_arrays()
    with pytest.raises(ValueError, match=r"v_template has shape \(240, 2\)"):
        BodyModel.from_arrays({**arrays, "v_template": arrays["v_template"][:, :2]}, "bad")
    model = BodyModel.from_file(smpl_pkl)
    with pytest.raises(ValueError, match=r"global_orient has shape \(1, 5\)"):
        model(global_orient=torch.zeros(1, 5), body_pose=torch.zeros(1, 23, 3, 3))


def test_skinning_has_first_derivatives_only(smpl_pkl):
    """Second derivatives are refused with a clear message (both hand-written backward passes)."""
    from hmr.body.lbs import _Linear

    model = BodyModel.from_file(smpl_pkl)
    betas = torch.zeros(1, 10, requires_grad=True)
    verts = model(betas=betas).vertices
    seed = torch.ones_like(verts, requires_grad=True)  # a grad that itself requires grad: double backward
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(verts, betas, seed, create_graph=True)
    x, w = torch.randn(2, 4, requires_grad=True), torch.randn(3, 4)
    y = _Linear.apply(x, w, None, None)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(y, x, torch.ones_like(y, requires_grad=True), create_graph=True)


def test_load_body_model_finds_the_neutral_model_in_a_folder(smpl_pkl, monkeypatch):
    from hmr.body import load_body_model

    monkeypatch.delenv("HMR_SMPL_PATH", raising=False)
    assert load_body_model(smpl_pkl.parent).num_vertices == 240  # SMPL_NEUTRAL.pkl by default


def test_body_command_help(capsys):
    from hmr.cli import main

    with pytest.raises(SystemExit):
        main(["body", "--help"])
    assert "load a body model and print its structure" in capsys.readouterr().out


def test_only_the_keypoint_sets_asked_for_are_computed():
    model = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), name="smpl-sized")
    inputs = _random_inputs(3, torch.float32)
    full = model(**inputs)
    assert set(full.keypoints) == set(model.keypoint_set_names) == {"openpose25"}
    none = model(**inputs, keypoint_sets=())
    assert none.keypoints == {} and torch.equal(none.vertices, full.vertices)
    with pytest.raises(KeypointSetUnavailableError, match="'openpose25' was not computed.*keypoint_sets"):
        none.keypoint_set("openpose25")
    assert torch.equal(model(**inputs, keypoint_sets=["openpose25"]).keypoint_set("openpose25"), full.keypoints["openpose25"])
    with pytest.raises(KeypointSetUnavailableError, match="'h36m17' is not defined"):
        model(**inputs, keypoint_sets=["h36m17"])
