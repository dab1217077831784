"""Calibrated BlazePose landmark definitions (hmr.data.calibration, ``hmr body calibrate``,
docs/body_model_format.md "Calibrated landmark definitions")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from hmr.body import SMPL_PARENTS, BodyModel, KeypointSet, load_body_model
from hmr.body.keypoints import BLAZEPOSE33_NAMES
from hmr.cli import main
from hmr.data import calibration
from tests.py2_pickle import smpl_pickle

pytest.importorskip("mediapipe")


# ----------------------------------------------------------------------------------------------- helpers
def _swap(name: str) -> str:
    return "_".join({"left": "right", "right": "left"}.get(p, p) for p in name.split("_"))


def own_mirror(model: BodyModel) -> np.ndarray:
    """Mirror of each column of [joints; vertices], computed here (not by the code under test): joints by their
    left/right names, vertices as the nearest vertex to the reflection x -> -x of the rest template."""
    v = model.v_template.double().numpy()
    vert = cKDTree(v).query(v * [-1.0, 1.0, 1.0])[1]
    names = list(model.joint_names)
    joints = np.array([names.index(_swap(n)) for n in names])
    return np.concatenate([joints, vert + len(names)])


def dense(kp: KeypointSet, num_points: int) -> np.ndarray:
    out = np.zeros((kp.num, num_points))
    np.add.at(out, (kp.rows, kp.cols), kp.weights)
    return out


def assert_convex_and_symmetric(kp: KeypointSet, model: BodyModel, atol: float = 1e-6) -> None:
    assert kp.names == BLAZEPOSE33_NAMES
    assert (kp.weights >= 0).all()
    assert np.allclose(np.bincount(kp.rows, kp.weights, minlength=kp.num), 1.0, atol=atol)
    assert np.bincount(kp.rows, minlength=kp.num).max() <= calibration.MAX_ENTRIES
    mirror = own_mirror(model)
    d = dense(kp, model.num_joints + model.num_vertices)
    for k, name in enumerate(kp.names):
        other = kp.names.index(_swap(name)) if _swap(name) in kp.names else k
        mirrored = np.zeros_like(d[k])
        np.add.at(mirrored, mirror, d[k])  # the mirror image of keypoint k's weights
        np.testing.assert_allclose(mirrored, d[other], atol=atol, err_msg=f"{name} vs {kp.names[other]}")


def _symmetric_clusters(v: np.ndarray, f: np.ndarray, target: int) -> np.ndarray:
    """Vertex labels (V,) of a mirror-symmetric clustering of a mirror-symmetric mesh into ``target`` clusters:
    rounds of shortest-edge merges, each edge merged together with its mirror image."""
    n = len(v)
    mirror = cKDTree(v).query(v * [-1.0, 1.0, 1.0])[1]
    assert (mirror[mirror] == np.arange(n)).all()
    parent = np.arange(n)

    def roots(p):
        while not (p[p] == p).all():
            p = p[p]
        return p

    count = n
    while count > target:
        parent = roots(parent)
        pos = np.zeros((n, 3))
        np.add.at(pos, parent, v)
        pos /= np.maximum(np.bincount(parent, minlength=n), 1)[:, None]
        e = parent[np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])]
        e = np.unique(np.sort(e[e[:, 0] != e[:, 1]], 1), axis=0)
        e = e[np.argsort(np.linalg.norm(pos[e[:, 0]] - pos[e[:, 1]], axis=1), kind="stable")]
        cm = parent[mirror]
        used = np.zeros(n, bool)
        before = count
        for a, b in e:
            ma, mb = cm[a], cm[b]
            group = {a, b, ma, mb}
            joined = bool({a, b} & {ma, mb})
            reduction = len(group) - (1 if joined else 2)
            if used[list(group)].any() or count - reduction < target:
                continue
            used[list(group)] = True
            if joined:
                parent[list(group)] = min(group)
            else:
                parent[[a, b]], parent[[ma, mb]] = min(a, b), min(ma, mb)
            count -= reduction
        assert count < before
    return np.unique(roots(parent), return_inverse=True)[1]


def smpl_sized_arrays(num_vertices: int = 6890) -> dict[str, np.ndarray]:
    """A human-shaped model with SMPL's vertex count and file layout: the default mesh clustered (symmetrically)
    down to 6890 vertices, its weights, shape space and joint regressor carried over, small pose correctives.
    Not SMPL's topology, but another one, which is what calibration has to handle for a user's SMPL file."""
    m = BodyModel.default(torch.float64)
    v, f = m.v_template.numpy(), m.faces.numpy()
    lab = _symmetric_clusters(v, f, num_vertices)
    count = np.bincount(lab)

    def mean(x):
        out = np.zeros((num_vertices, *x.shape[1:]))
        np.add.at(out, lab, x)
        return out / count.reshape(-1, *([1] * (x.ndim - 1)))

    faces = lab[f]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    faces = faces[np.sort(np.unique(np.sort(faces, 1), axis=0, return_index=True)[1])]
    j_reg = np.zeros((24, num_vertices))
    np.add.at(j_reg.T, lab, m.j_regressor.numpy().T)
    kintree = np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.int64)
    kintree[0, 0] = 4294967295
    rng = np.random.default_rng(0)
    return {
        "v_template": mean(v),
        "f": faces.astype(np.uint32),
        "J_regressor": j_reg,
        "weights": mean(m.weights.numpy()),
        "shapedirs": mean(m.shapedirs.numpy()),
        "posedirs": rng.normal(scale=1e-4, size=(num_vertices, 3, 207)),
        "kintree_table": kintree,
    }


@pytest.fixture(scope="module")
def smpl_sized_pkl(tmp_path_factory):
    """An SMPL-sized model written as the official files are: a Python 2 protocol-2 pickle of chumpy objects."""
    path = tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl"
    path.write_bytes(smpl_pickle(smpl_sized_arrays()))
    return path


# -------------------------------------------------------------------------------------------- the solver
def _known_definition(model: BodyModel, start: KeypointSet) -> KeypointSet:
    """A sparse, convex, left/right-symmetric definition a few millimetres to centimetres from ``start``: each left
    (or midline) landmark mixes its 11th and 31st nearest vertices and, for body landmarks, its nearest joint (else
    its 46th nearest vertex); each
    right one takes the mirror image."""
    with torch.no_grad():
        out = model(keypoint_sets=())
    joints, verts = out.joints[0].numpy(), out.vertices[0].numpy()
    loc = start.apply(out.joints, out.vertices)[0].numpy()
    mirror = own_mirror(model)
    nj = model.num_joints
    d = np.zeros((start.num, nj + model.num_vertices))
    for k, name in enumerate(start.names):
        if name.startswith("right_") or name.endswith("_right"):
            continue
        order = np.argsort(np.linalg.norm(verts - loc[k], axis=1))
        entries = {order[10] + nj: 0.5, order[30] + nj: 0.3}
        j = int(np.argmin(np.linalg.norm(joints - loc[k], axis=1)))
        body = not any(p in name for p in ("eye", "ear", "mouth", "nose"))
        if body and np.linalg.norm(joints[j] - loc[k]) < 0.1:
            entries[j] = 0.2
        else:
            entries[order[45] + nj] = 0.2
        for c, w in entries.items():
            d[k, c] += w
        if _swap(name) == name:  # midline: half on each vertex, half on its mirror
            row = d[k].copy()
            d[k] = 0.5 * row
            np.add.at(d[k], mirror, 0.5 * row)
        else:
            np.add.at(d[start.names.index(_swap(name))], mirror, d[k])
    rows, cols = np.nonzero(d)
    return KeypointSet(start.names, rows, cols, d[rows, cols])


def test_solver_recovers_a_known_definition():
    """Detections made from a known definition (no BlazePose): the fit finds points that project where that
    definition does, on views it did not see, and its weights are convex, sparse and symmetric."""
    model = BodyModel.default(torch.float64)
    start = model.keypoint_regressors["blazepose33"].definition()
    truth = _known_definition(model, start)
    cols = np.union1d(calibration.needed_columns(model, start), truth.cols)
    views = calibration.sample_views(model, cols, 60, seed=3, detect=False)
    noise = np.random.default_rng(0).normal(scale=0.1, size=views.landmarks.shape)
    views.landmarks = calibration.project_keypoints(truth, views) + noise
    views.visible[:] = True
    kp, info = calibration.fit_landmarks(model, views, start, prior=0.0)  # the renders alone decide
    assert info["kept_start"] == [] and info["detections"] == 48 * 33
    assert_convex_and_symmetric(kp, model)

    def held_out_error(definition):  # % of the person's height, per view and landmark
        err = np.linalg.norm(calibration.project_keypoints(definition, views) - views.landmarks, axis=-1)
        return (100 * err / views.height_px[:, None])[views.held_out]

    before, after = held_out_error(start), held_out_error(kp)
    assert np.median(before) > 0.3  # the known definition is well away from the start (0.41 when written)
    # 0.1 px of noise is ~0.03% of the height: recovered to about that (0.031, at most 0.12 when written).
    assert np.median(after) < 0.06 and after.max() < 0.25, (np.median(after), after.max())
    # The same points in 3D, not only in these views: rest pose and a fresh shape.
    for betas in (torch.zeros(1, 10, dtype=torch.float64), torch.full((1, 10), 1.0, dtype=torch.float64)):
        with torch.no_grad():
            out = model(betas=betas, keypoint_sets=())
        gap = (kp.apply(out.joints, out.vertices) - truth.apply(out.joints, out.vertices)).norm(dim=-1)
        assert gap.max() < 0.003, dict(zip(kp.names, gap[0].numpy().round(4), strict=True))
    # Deterministic.
    again, _ = calibration.fit_landmarks(model, views, start, prior=0.0)
    assert np.array_equal(again.cols, kp.cols) and np.array_equal(again.weights, kp.weights)


def test_landmark_groups_pair_left_with_right():
    groups = calibration.landmark_groups(BLAZEPOSE33_NAMES)
    assert (0, None) in groups  # the nose is its own mirror image
    named = {(BLAZEPOSE33_NAMES[a], BLAZEPOSE33_NAMES[b]) for a, b in groups if b is not None}
    assert ("mouth_left", "mouth_right") in named and ("left_eye_inner", "right_eye_inner") in named
    assert len(groups) == 17 and all(a.replace("left", "right") == b for a, b in named)


# ------------------------------------------------------------------------------------------- the command
def test_calibrate_command_on_an_smpl_pickle(smpl_sized_pkl, tmp_path, capsys):
    out = tmp_path / "SMPL_calibrated.npz"
    assert main(["body", "calibrate", str(smpl_sized_pkl), "--out", str(out), "--images", "40", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "held-out error" in printed and "carried over by the joints" in printed and f"wrote {out}" in printed
    original = load_body_model(smpl_sized_pkl, dtype=torch.float64)
    calibrated = load_body_model(out, dtype=torch.float64)
    assert "blazepose33" not in original.keypoint_set_names
    # Everything else is the user's model, unchanged.
    assert calibrated.name == original.name and calibrated.parents == original.parents
    assert calibrated.joint_names == original.joint_names
    for key in ("v_template", "faces", "shapedirs", "j_regressor", "weights", "posedirs"):
        assert torch.equal(getattr(calibrated, key), getattr(original, key)), key
    assert set(calibrated.keypoint_set_names) == {*original.keypoint_set_names, "blazepose33"}
    for name in original.keypoint_set_names:
        a, b = (m.keypoint_regressors[name].definition() for m in (original, calibrated))
        assert np.array_equal(a.cols, b.cols) and np.allclose(a.weights, b.weights), name
    kp = calibrated.keypoint_regressors["blazepose33"].definition()
    assert_convex_and_symmetric(kp, calibrated)
    record = json.loads(str(np.load(out)["build_info"]))["blazepose33_calibration"]
    assert record["images"] == 40 and record["seed"] == 0 and record["source"] == smpl_sized_pkl.name
    assert record["overall"]["after_median_pct"] < record["overall"]["before_median_pct"]
    # Lower error than the starting definition on renders the calibration never saw (another seed).
    start, _ = calibration.starting_definition(original)
    views = calibration.sample_views(original, np.union1d(start.cols, kp.cols), 20, seed=11)
    assert views.visible.sum() > 300

    def error(definition):
        err = np.linalg.norm(calibration.project_keypoints(definition, views) - views.landmarks, axis=-1)
        return 100 * err[views.visible] / np.broadcast_to(views.height_px[:, None], err.shape)[views.visible]

    assert np.median(error(kp)) < np.median(error(start)), (np.median(error(kp)), np.median(error(start)))
    assert np.mean(error(kp)) < np.mean(error(start))


def test_calibrate_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    out = tmp_path / "out.npz"
    junk = tmp_path / "junk.npz"
    np.savez(junk, x=np.zeros(3))
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    for path, words in ((tmp_path / "nope.pkl", "not found"), (junk, "not a body model"), (garbage, "pickle")):
        assert main(["body", "calibrate", str(path), "--out", str(out), "--images", "5"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("hmr: error:") and "\n" not in err and str(path) in err and words in err, err
        assert not out.exists()
    assert main(["body", "calibrate", str(junk), "--out", str(tmp_path / "out.txt")]) == 2
    assert "must be a .npz" in capsys.readouterr().err


def test_calibrate_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["body", "calibrate", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(w in text for w in ("MODEL", "--out", "--images", "--seed"))


# -------------------------------------------------------------------------------------- the shipped model
def test_shipped_default_model_has_the_calibrated_set():
    model = BodyModel.default(torch.float64)
    kp = model.keypoint_regressors["blazepose33"].definition()
    assert_convex_and_symmetric(kp, model)
    with np.load(model_path()) as npz:
        record = json.loads(str(npz["build_info"]))["blazepose33_calibration"]
    assert record["images"] >= 600 and record["set_name"] == "blazepose33"
    assert record["overall"]["after_median_pct"] < record["overall"]["before_median_pct"]
    assert record["overall"]["after_bias_pct"] < 0.5 * record["overall"]["before_bias_pct"]


def model_path():
    from hmr.body.assets import default_model_path

    return default_model_path()
